"""Averaging gradients: integrated gradients (Sundararajan et al. 2017) along a path from a
baseline, and SmoothGrad (Smilkov et al. 2017) over noisy copies of the image.

`METHODS` names every gradient method (for SmoothGrad's ``method``, the sanity checks and the
command line).
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import torch

from ...errors import ConvlensError, unknown
from ...lens import as_lens
from .cam import default_cam_layer, grad_cam, guided_grad_cam
from .gradients import (
    TargetPass,
    concrete_targets,
    deconvnet,
    grad_input,
    guided_backprop,
    maps_result,
    saliency,
    target_pass,
)
from .results import GradientMaps
from .targets import TargetLike, target_param

METHODS: dict[str, Callable[..., GradientMaps]] = {}


def integrated_gradients(lens, x: torch.Tensor, target: TargetLike = "auto",
                         baseline: str | float | torch.Tensor = "mean", steps: int = 50,
                         method: str = "gausslegendre",
                         internal_batch_size: int = 64) -> GradientMaps:
    """Integrated gradients (Sundararajan, Taly & Yan 2017, https://arxiv.org/abs/1703.01365).

    ``IG_i(x) = (x_i - x'_i) * int_0^1 dS_c(x' + a (x - x'))/dx_i da``, the integral taken with
    `steps` points of `method`: ``"gausslegendre"`` (default, as Captum), ``"riemann_left"``,
    ``"riemann_right"``, ``"riemann_middle"`` or ``"riemann_trapezoid"``. At most
    `internal_batch_size` images go through the model at once, so memory stays bounded.
    Completeness (``sum_i IG_i = S_c(x) - S_c(x')``) is checked: ``params["delta"]`` holds
    ``sum IG - (S(x) - S(x'))`` per image. ``attribution`` is IG ``(N, C, H, W)``; ``map`` is
    ``|sum_c IG_c|``. The target (``auto``: the class predicted at ``x``) is fixed first.

    Args:
        baseline: ``"mean"`` (zeros after normalisation: the mean image, default),
            ``"black"``, ``"white"``, a number (raw pixel value, e.g. 0.5), or a tensor
            ``(C, H, W)`` / ``(N, C, H, W)`` in model-input units.

    Example::

        res = integrated_gradients(lens, x, baseline="black", steps=64)
        res.params["delta"]      # completeness error per image
    """
    lens = as_lens(lens, x)
    if steps < 1:
        raise ConvlensError(f"steps must be at least 1, got {steps}")
    if internal_batch_size < 1:
        raise ConvlensError(f"internal_batch_size must be at least 1, got {internal_batch_size}")
    xb = grad_input(lens, x).detach()
    base = _baseline(lens, xb, baseline)
    specs = concrete_targets(lens, xb, target)
    alphas, weights = path_points(steps, method)
    n = len(xb)
    total = torch.zeros_like(xb)
    # (image, step) pairs, image-major, in chunks of at most internal_batch_size
    pairs = [(i, k) for i in range(n) for k in range(steps)]
    for start in range(0, len(pairs), internal_batch_size):
        chunk = pairs[start:start + internal_batch_size]
        idx = torch.tensor([i for i, _ in chunk], device=xb.device)
        a = torch.tensor([alphas[k] for _, k in chunk], dtype=xb.dtype, device=xb.device)
        w = torch.tensor([weights[k] for _, k in chunk], dtype=xb.dtype, device=xb.device)
        a4 = a.view(-1, 1, 1, 1)
        pts = base[idx] + a4 * (xb[idx] - base[idx])
        p = target_pass(lens, pts.requires_grad_(True), [specs[i] for i in idx.tolist()])
        total.index_add_(0, idx, p.grad * w.view(-1, 1, 1, 1))
    att = (xb - base) * total
    with torch.no_grad():
        end = target_pass(lens, torch.cat([xb, base]), specs + specs, backward=False)
    s_x, s_b = end.scores[:n], end.scores[n:]
    delta = att.flatten(1).sum(1) - (s_x - s_b)
    p_x = TargetPass(None, end.logits[:n], end.specs[:n], end.positions[:n], s_x)
    base_param = "tensor" if isinstance(baseline, torch.Tensor) else target_param(baseline)
    return maps_result("integrated_gradients", lens, xb, p_x, att.sum(1).abs(), att,
                       {"target": target_param(target), "baseline": base_param, "steps": steps,
                        "method": method, "internal_batch_size": internal_batch_size,
                        "delta": delta.cpu().tolist()})


def path_points(steps: int, method: str = "gausslegendre") -> tuple[list[float], list[float]]:
    """Points ``a_k`` in [0, 1] and weights ``w_k`` with ``int_0^1 f ~ sum_k w_k f(a_k)``."""
    n = steps
    if method == "gausslegendre":
        nodes, w = np.polynomial.legendre.leggauss(n)
        return list(0.5 * (nodes + 1)), list(0.5 * w)
    if method == "riemann_trapezoid":
        if n < 2:
            raise ConvlensError("riemann_trapezoid needs at least 2 steps")
        return (list(np.linspace(0, 1, n)),
                [1 / (2 * (n - 1))] + [1 / (n - 1)] * (n - 2) + [1 / (2 * (n - 1))])
    grids = {"riemann_left": np.linspace(0, 1 - 1 / n, n),
             "riemann_right": np.linspace(1 / n, 1, n),
             "riemann_middle": np.linspace(1 / (2 * n), 1 - 1 / (2 * n), n)}
    if method not in grids:
        raise unknown("integration method", method, ["gausslegendre", "riemann_trapezoid", *grids])
    return list(grids[method]), [1 / n] * n


def _baseline(lens, xb: torch.Tensor, baseline) -> torch.Tensor:
    if isinstance(baseline, torch.Tensor):
        b = baseline.detach().to(xb)
        if b.dim() == 3:
            b = b.unsqueeze(0)
        try:
            return b.expand_as(xb).clone()
        except RuntimeError:
            raise ConvlensError(f"baseline of shape {tuple(baseline.shape)} does not fit "
                                f"x of shape {tuple(xb.shape)}") from None
    if baseline == "mean":
        return torch.zeros_like(xb)
    if not hasattr(lens, "normalize"):
        raise ConvlensError(f"baseline {baseline!r} needs a Lens (its mean and std)")
    lo, hi = getattr(lens, "value_range", (0.0, 1.0))
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        raw = float(baseline)
    elif baseline in ("black", "white"):
        raw = lo if baseline == "black" else hi
    else:
        raise unknown("baseline", str(baseline), ["mean", "black", "white"],
                      hint="or a number (raw pixel value) or a tensor")
    return lens.normalize(torch.full_like(xb, raw))


def smoothgrad(lens, x: torch.Tensor, target: TargetLike = "auto",
               method: str | Callable = "saliency", samples: int = 50, noise_level: float = 0.15,
               sigma: float | None = None,
               batch_size: int = 64, seed: int = 0, **method_kwargs) -> GradientMaps:
    """SmoothGrad (Smilkov, Thorat, Kim, Viégas & Wattenberg 2017,
    https://arxiv.org/abs/1706.03825): average a method's maps over noisy copies of ``x``.

    ``M_hat(x) = 1/n sum_k M(x + N(0, sigma^2))`` with ``sigma = noise_level * (max(x) -
    min(x))`` per image (the paper's 10-20 %), or the given absolute `sigma` (model-input
    units). Both ``map`` and ``attribution`` are averages of the per-sample ones (so the
    saliency map is the mean of ``max_c |grad|``, the paper's choice). The target (``auto``:
    the class predicted on the clean image) is fixed first. Noise is drawn image by image,
    sample by sample from a generator seeded with `seed` (the same draw order as Captum's
    ``NoiseTunnel``).

    Args:
        method: ``"saliency"``, ``"guided_backprop"``, ``"deconvnet"``, ``"grad_cam"``,
            ``"guided_grad_cam"``, ``"integrated_gradients"`` or such a function.
        batch_size: noisy images per forward pass.
        method_kwargs: passed on (e.g. ``layer=`` for Grad-CAM, ``steps=`` for IG).

    Example::

        res = smoothgrad(lens, x, method="guided_backprop", samples=25)
    """
    lens = as_lens(lens, x)
    fn = _method(method)
    if fn is smoothgrad:
        raise ConvlensError("smoothgrad cannot wrap itself: give another method")
    if samples < 1 or batch_size < 1:
        raise ConvlensError("samples and batch_size must be at least 1")
    xb = grad_input(lens, x).detach()
    n = len(xb)
    specs = concrete_targets(lens, xb, target)
    if fn in (grad_cam, guided_grad_cam) and method_kwargs.get("layer") is None:
        method_kwargs["layer"] = default_cam_layer(lens)
    if sigma is None:
        rng = (xb.flatten(1).amax(1) - xb.flatten(1).amin(1))
        sig = noise_level * rng
    else:
        sig = torch.full((n,), float(sigma), dtype=xb.dtype, device=xb.device)
    gen = torch.Generator(device=xb.device).manual_seed(int(seed))
    pairs = [i for i in range(n) for _ in range(samples)]
    sums: dict[str, torch.Tensor] = {}
    seen: dict[str, warnings.WarningMessage] = {}
    last = None
    for start in range(0, len(pairs), batch_size):
        idx = torch.tensor(pairs[start:start + batch_size], device=xb.device)
        noise = torch.randn((len(idx), *xb.shape[1:]), generator=gen, device=xb.device,
                            dtype=xb.dtype)
        noisy = xb[idx] + noise * sig[idx].view(-1, 1, 1, 1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = fn(lens, noisy, target=[specs[i] for i in idx.tolist()], **method_kwargs)
        for key in ("map", "attribution", "cam"):
            v = getattr(r, key)
            if v is not None:
                acc = sums.setdefault(key, torch.zeros((n, *v.shape[1:]), dtype=v.dtype))
                acc.index_add_(0, idx.cpu(), v)
        last = r
        seen.update((str(c.message), c) for c in caught)
    for w in seen.values():  # the method's warnings, once each
        warnings.warn(w.message, w.category, stacklevel=2)
    mean = {k: v / samples for k, v in sums.items()}
    with torch.no_grad():
        clean = target_pass(lens, xb, specs, backward=False)
    params = {"method": fn.__name__, "samples": samples, "noise_level": noise_level,
              "sigma": sig.cpu().tolist(), "seed": seed, "target": target_param(target),
              **{k: v for k, v in last.params.items() if k != "target"}}
    return maps_result(f"smoothgrad_{fn.__name__}", lens, xb, clean, mean["map"],
                   mean.get("attribution"), params, cam=mean.get("cam"))


def _method(method: str | Callable) -> Callable[..., GradientMaps]:
    if callable(method):
        return method
    name = method.replace("-", "_")
    if name not in METHODS:
        raise unknown("method", method, list(METHODS))
    return METHODS[name]


METHODS.update(saliency=saliency, deconvnet=deconvnet, guided_backprop=guided_backprop,
               grad_cam=grad_cam, guided_grad_cam=guided_grad_cam,
               integrated_gradients=integrated_gradients, smoothgrad=smoothgrad)
