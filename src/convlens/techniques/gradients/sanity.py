"""Sanity checks for saliency maps (Adebayo et al. 2018, https://arxiv.org/abs/1810.03292):
randomise the model's weights layer by layer, from the top down, and measure how much each
method's maps change. A map that explains the model should change; guided backprop barely
does (a known finding, reproduced in docs/sanity_checks.md).
"""
from __future__ import annotations

import copy
import math
import warnings
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ...hooks import find_module, forward_hooks, model_of, preserved
from ...lens import as_lens
from ...results import as_numpy
from .cam import default_cam_layer, grad_cam, guided_grad_cam
from .gradients import concrete_targets, display_images, grad_input
from .results import SanityCheck
from .smoothing import _method
from .targets import TargetLike


def randomizable_layers(lens) -> list[str]:
    """Layers with a weight of 2 or more dims (conv, linear), from the output down, in reverse
    execution order: the order in which `cascading_randomization` re-initialises them."""
    model = model_of(lens)
    named = {n: m for n, m in model.named_modules()
             if n and isinstance(getattr(m, "weight", None), nn.Parameter) and m.weight.dim() >= 2}
    order: list[str] = []
    with preserved(model), torch.no_grad(), forward_hooks(
            model, list(named), lambda n, m, t: order.append(n) if n not in order else None):
        model.eval()
        model(lens.example_input())
    return list(reversed(order))


def _reinit(module: nn.Module, gen: torch.Generator) -> None:
    """He-normal weights (std sqrt(2 / fan_in)), zero biases, drawn from `gen`."""
    with torch.no_grad():
        w = module.weight
        std = math.sqrt(2.0 / max(1, w[0].numel()))
        w.copy_(torch.randn(w.shape, generator=gen, dtype=w.dtype) * std)
        if getattr(module, "bias", None) is not None:
            module.bias.zero_()


def _unit_range(m: np.ndarray) -> np.ndarray:
    hi = m.max()
    return m / hi if hi > 0 else np.zeros_like(m)


def map_similarity(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Spearman rank correlation and SSIM of two ``(H, W)`` maps (each scaled to [0, 1] by its
    maximum for SSIM, ``data_range=1``). A constant map has no rank order: correlation 0."""
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        rho = 0.0
    else:
        rho = float(spearmanr(a.ravel(), b.ravel()).statistic)
    win = min(7, min(a.shape) - (1 - min(a.shape) % 2))
    ssim = float(structural_similarity(_unit_range(a), _unit_range(b), data_range=1.0,
                                       win_size=win))
    return rho, ssim


def cascading_randomization(lens, x: torch.Tensor, target: TargetLike = "auto",
                            methods: Sequence[str] = ("saliency", "guided_backprop", "deconvnet",
                                                      "grad_cam", "guided_grad_cam",
                                                      "integrated_gradients", "smoothgrad"),
                            layers: Sequence[str] | None = None, seed: int = 0, keep: int = 4,
                            method_kwargs: dict[str, dict] | None = None) -> SanityCheck:
    """Model-parameter randomisation test (Adebayo et al. 2018, "Sanity Checks for Saliency
    Maps", https://arxiv.org/abs/1810.03292), cascading from the top layer down.

    On a *copy* of the model (the lens given is never changed), the layers are re-initialised
    one after another from the output down (He-normal weights from a generator seeded with
    `seed`, zero biases); after each, every method's maps are compared with those of the
    trained model by Spearman rank correlation and SSIM, per image. A method that explains
    the model should change as its weights are destroyed; Adebayo et al. found guided
    backprop (and guided Grad-CAM) barely does. The target of each image is fixed on the
    trained model first (``auto``: its predicted class).

    Args:
        methods: names from `METHODS` (``"smoothgrad"`` wraps saliency unless
            ``method_kwargs["smoothgrad"]["method"]`` says otherwise).
        layers: layer names to randomise, top first; default `randomizable_layers`.
        keep: keep the maps of this many images in the result (for figures).
        method_kwargs: per method, extra arguments (e.g. ``{"smoothgrad": {"samples": 16}}``).

    Example::

        sc = cascading_randomization(lens, x[:16])
        sc.table()       # stage, method, Spearman and SSIM (mean, std)
    """
    lens = as_lens(lens, x)
    method_kwargs = {k: dict(v) for k, v in (method_kwargs or {}).items()}
    fns = [_method(m) for m in methods]
    xb = grad_input(lens, x).detach()
    specs = concrete_targets(lens, xb, target)
    layers = list(layers) if layers is not None else randomizable_layers(lens)
    cam_layer = None
    for m, fn in zip(methods, fns):
        if fn in (grad_cam, guided_grad_cam) or method_kwargs.get(m, {}).get("method") in (
                "grad_cam", "guided_grad_cam"):
            cam_layer = cam_layer or default_cam_layer(lens)
            method_kwargs.setdefault(m, {}).setdefault("layer", cam_layer)
    work = copy.deepcopy(lens)  # the lens passed in is never modified
    gen = torch.Generator().manual_seed(int(seed))

    def all_maps() -> np.ndarray:
        out = []
        for m, fn in zip(methods, fns):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a random net may have no active ReLU at all
                out.append(as_numpy(fn(work, xb, target=specs, **method_kwargs.get(m, {})).map))
        return np.stack(out)  # (methods, N, H, W)

    stages, maps = ["original"], [all_maps()]
    for name in layers:
        _reinit(find_module(model_of(work), name), gen)
        stages.append(name)
        maps.append(all_maps())
    maps_a = np.stack(maps)  # (S, M, N, H, W)
    s_n, m_n, n = maps_a.shape[:3]
    rho = np.zeros((s_n, m_n, n))
    ssim = np.zeros((s_n, m_n, n))
    for s in range(s_n):
        for m in range(m_n):
            for i in range(n):
                rho[s, m, i], ssim[s, m, i] = map_similarity(maps_a[0, m, i], maps_a[s, m, i])
    return SanityCheck(list(methods), stages, rho, ssim, maps_a[:, :, :keep],
                       as_numpy(display_images(lens, xb[:keep])),
                       {"seed": seed, "n": n, "targets": [str(s) for s in specs],
                        "method_kwargs": {k: {a: str(b) for a, b in v.items()}
                                          for k, v in method_kwargs.items()}})
