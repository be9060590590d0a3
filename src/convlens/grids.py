"""Token-shaped outputs back on the image's spatial grid.

A vision transformer's tokens ``(N, k + h*w, C)`` (ViT, DeiT: `k` class, distillation or
register tokens before the patch tokens) and a Swin block's channels-last maps
``(N, h, w, C)`` are maps of the image like a conv's ``(N, C, h, w)``; `grid_layout` tells
which a per-image output is from its shape and the input's size, `to_grid` reshapes it (the
``reshape_transform`` users of pytorch-grad-cam write by hand).
"""
from __future__ import annotations

from typing import Sequence

import torch

MAX_PREFIX_TOKENS = 8  # class, distillation and register tokens before the patch tokens
MAX_PATCH = 64  # pixels per token side: ViT-B/32's 32, a Swin's last stage 32


def _on_grid(h: int, w: int, image_hw: tuple[int, int]) -> bool:
    """Whether an ``h x w`` grid tiles an image of `image_hw` with one integer stride ``s`` on
    both axes, rounded down on both or up on both, as strided convs and patch embeddings do:
    ``(h, w)`` is ``(H // s, W // s)`` or ``(ceil(H / s), ceil(W / s))``."""
    H, W = image_hw
    if not (1 <= h <= H and 1 <= w <= W):
        return False
    return any((h, w) in ((H // s, W // s), (-(-H // s), -(-W // s)))
               for s in range(max(1, H // (h + 1)), H // h + 2))


def grid_layout(shape: Sequence[int], image_hw: tuple[int, int]
                ) -> tuple[str, int, tuple[int, int]] | None:
    """How a per-image output of `shape` (without batch) lies on the image's grid:
    ``("map", 0, (h, w))`` for ``(C, h, w)``; ``("channels_last", 0, (h, w))`` for
    ``(h, w, C)`` (Swin's blocks); ``("tokens", k, (h, w))`` for ``(k + h*w, C)``, `k` class,
    distillation or register tokens first (ViT). None: not a map of the image (a vector, a
    window partition, a sequence that makes no grid)."""
    shape = tuple(int(v) for v in shape)
    if len(shape) == 3:
        if not _on_grid(shape[1], shape[2], image_hw) and _on_grid(shape[0], shape[1], image_hw):
            return ("channels_last", 0, (shape[0], shape[1]))
        return ("map", 0, (shape[1], shape[2]))
    if len(shape) == 2:
        H, W = image_hw
        for k in range(MAX_PREFIX_TOKENS + 1):
            n = shape[0] - k
            if n < 2:
                break
            h = max(1, round((n * H / W) ** 0.5))
            if n % h == 0 and _on_grid(h, n // h, image_hw) and H / h <= MAX_PATCH:
                return ("tokens", k, (h, n // h))
    return None


def to_grid(t: torch.Tensor, layout: tuple[str, int, tuple[int, int]] | None) -> torch.Tensor:
    """A batch `t` as ``(N, C, h, w)`` maps by its `grid_layout` (a view: gradients flow);
    prefix tokens are dropped. `t` unchanged for a ``"map"`` or None layout."""
    if layout is None or layout[0] == "map":
        return t
    kind, k, (h, w) = layout
    if kind == "channels_last":
        return t.permute(0, 3, 1, 2)
    return t[:, k:].reshape(t.shape[0], h, w, t.shape[-1]).permute(0, 3, 1, 2)


def from_grid(maps: torch.Tensor, native: torch.Tensor,
              layout: tuple[str, int, tuple[int, int]] | None) -> torch.Tensor:
    """The inverse of `to_grid`: maps ``(N, C, h, w)`` in the layout of `native` (an output of
    that `layout`, batch 1 or N), whose prefix tokens are kept as they are."""
    if layout is None or layout[0] == "map":
        return maps
    kind, k, _ = layout
    if kind == "channels_last":
        return maps.permute(0, 2, 3, 1)
    grid = maps.flatten(2).transpose(1, 2)
    return torch.cat([native[:, :k].expand(len(maps), -1, -1).to(grid), grid], 1)


def layout_of(t: torch.Tensor, image: tuple[int, int, int] | None
              ) -> tuple[str, int, tuple[int, int]] | None:
    """`grid_layout` of a batch `t`, given the model input's ``(N, H, W)``; None when its batch
    is not the input's (a table shared by the batch) or it has no spatial axes."""
    if image is None or t.dim() < 3 or t.shape[0] != image[0]:
        return None
    return grid_layout(t.shape[1:], image[1:])


def grid_of(t: torch.Tensor, image: tuple[int, int, int] | None) -> torch.Tensor:
    """`t` (a batch) on the image grid, given the model input's ``(N, H, W)``; as it is when
    its batch is not the input's or it is no map of the image."""
    return to_grid(t, layout_of(t, image))
