"""Do the maps point at the object? Two scores on ground-truth masks (docs/localisation.md).

`pointing_game` (Zhang et al. 2016): is the map's maximum on the object; `energy_in_mask`
(Wang et al. 2020, Score-CAM): what share of the map lies on it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """Pointing game (Zhang et al. 2016, "Top-down neural attention by excitation backprop"):
    a hit when the map's maximum lies on the object mask (grown by `tolerance` pixels).

    ``maps (N, H, W)``, ``masks (N, H, W)`` bool -> ``(N,)`` bool. Ties: the first maximum in
    row-major order; an all-zero map is a miss.
    """
    maps = torch.as_tensor(maps).float()
    masks = torch.as_tensor(masks).bool()
    if tolerance > 0:
        k = 2 * tolerance + 1
        masks = F.max_pool2d(masks[:, None].float(), k, 1, tolerance)[:, 0] > 0
    flat = maps.flatten(1)
    best = flat.argmax(1)
    hit = masks.flatten(1).gather(1, best[:, None])[:, 0]
    return hit & (flat.amax(1) > 0)


def energy_in_mask(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of a non-negative map's total inside the mask (the "energy-based pointing game",
    Wang et al. 2020, Score-CAM): ``sum(M * mask) / sum(M)``; 0 for an all-zero map."""
    maps = torch.as_tensor(maps).float().clamp_min(0)
    masks = torch.as_tensor(masks).bool()
    total = maps.flatten(1).sum(1)
    inside = (maps * masks).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-30), torch.zeros_like(total))
