"""Occlusion maps (Zeiler & Fergus 2014, §4.2, Fig. 7), exact and fast.

Slide a square occluder of side ``w`` with stride ``t`` over the image; at each position record
``p(target | x_occluded)`` (softmax), the most probable class, and optionally the total activation
of one feature map of one layer: Zeiler's panels (d), (e) and (b).

Three ways to get the maps (`mode`):

* ``"exact"`` (alias ``"naive"``): one full forward pass per occluded copy, ``batch_size`` copies
  per pass. The reference.
* ``"incremental"`` (default): Krypton's incremental inference (Nakandala, Kumar & Papakonstantinou,
  "Incremental and Approximate Inference for Faster Occlusion-based Deep CNN Explanations",
  SIGMOD 2019, https://arxiv.org/abs/1904.03356). The clean image's output of every node of the
  model's graph is kept; for a batch of occluded copies only the region each copy changes is
  recomputed, layer by layer, and the rest is read from the clean outputs. Same maps as
  ``"exact"`` (to float rounding), far fewer operations.
* ``"approximate"``: Krypton's two approximations on top of the incremental engine: the
  projective-field threshold ``tau`` (the recomputed region of a conv/pool output is capped at
  ``ceil(tau * side)``; changes outside the cap are ignored) and adaptive drill-down (a coarse
  grid first, then the fine grid only at the ``drill`` fraction of positions where the coarse map
  says the class probability changes most). With ``reference=True`` the exact map is also
  computed and the SSIM of the approximate map against it is reported.

The engine of the incremental modes is `convlens.incremental`; evaluating positions (full
passes, incremental passes, the drill-down) is `convlens.techniques.occlusion.occluders`; the
result, `OcclusionResult`, is in `convlens.techniques.occlusion.results`.
"""

import math
import time
import warnings
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ...errors import ConvlensError, unknown
from ...hooks import capture, find_module, preserved
from ...incremental import IncrementalEngine
from ...lens import as_batch, as_lens
from .occluders import (
    drill_down,
    evaluate,
    incremental_runner,
    interp_matrix,
    naive_runner,
    ssim,
)
from .results import OcclusionResult

MODES = ("incremental", "exact", "approximate")
FILLS = ("zero", "gray", "mean", "blur")


# ==========================================================================================
# The technique
# ==========================================================================================
def occlusion(lens, x: torch.Tensor,
              target: int | str | Sequence[int | str] | torch.Tensor = "auto",
              window: int | tuple[int, int] = 16, stride: int | tuple[int, int] = 8,
              fill: str | float = "zero", batch_size: int = 64, mode: str = "incremental",
              layer: str | None = None, channel: int | None = None, tau: float = 0.8,
              drill: float = 0.5, coarse_stride: int | tuple[int, int] | None = None,
              reference: bool = True, blur_sigma: float | None = None) -> OcclusionResult:
    """Occlusion maps: p(target), the most probable class and a feature map's total activation
    for every position of a square occluder (Zeiler & Fergus 2014, §4.2, Fig. 7).

    For occluder positions ``(i, j)`` with top-left corner ``(i t_y, j t_x)``::

        x_ij = x  with  x_ij[:, i t_y : i t_y + w_y, j t_x : j t_x + w_x] = fill
        prob[i, j] = softmax(f(x_ij))[target],   top_class[i, j] = argmax f(x_ij)
        activation[i, j] = sum_{u, v} A_layer(x_ij)[channel, u, v]

    Positions run ``0, t, 2t, ...`` while the occluder fits in the image, plus one last position
    flush with the border (``H - w``) when ``(H - w) % t != 0``, so every pixel is occluded at
    least once (Captum's ``Occlusion`` clips a window at the border instead; here every window
    has the full size, so every position removes the same area).

    Args:
        lens: a `Lens`; its model runs in eval mode (flags restored afterwards).
        x: ``(N, C, H, W)`` or ``(C, H, W)`` normalised images.
        target: ``"auto"`` (the predicted class of each clean image), a class index or label
            name, or one per image.
        window, stride: occluder side ``w`` and step ``t`` in pixels (an int or ``(y, x)``).
        fill: what the occluder shows, in normalised input units: ``"zero"`` (x = 0, i.e. the
            dataset mean pixel, the seed's choice), ``"gray"`` (the middle of the raw pixel range,
            normalised: Zeiler's grey square), ``"mean"`` (each image's own per-channel mean),
            a number (a raw pixel value in ``lens.value_range``, normalised per channel), or
            ``"blur"`` (the same pixels Gaussian-blurred with sigma ``blur_sigma``, default
            ``w / 4``).
        batch_size: occluded copies per forward pass.
        mode: ``"incremental"`` (exact, fast; default), ``"exact"`` (alias ``"naive"``: a full
            forward pass per copy) or ``"approximate"`` (see below).
        layer, channel: also record the total activation of feature map `channel` of `layer`
            (default channel: the one with the largest activation in the clean image, as Zeiler).
        tau: approximate mode: projective-field threshold, the recomputed region of each
            conv/pool output is at most ``ceil(tau * side)`` per axis (Krypton's τ; 1 = off).
            Small maps suffer most (a 7x7 map keeps 5 rows at 0.7).
        drill: approximate mode: fraction of fine positions computed after the coarse pass
            (Krypton's adaptive drill-down; 1 = all); the others are interpolated from the
            coarse map. The defaults (0.8, 0.5) kept SSIM >= 0.93 on 7 of 8 images of the
            trained built-ins (BENCHMARKS.md has VGG16 / ResNet-18 figures).
        coarse_stride: approximate mode: stride of the coarse pass, a multiple of `stride`
            (default ``2 * stride``).
        reference: approximate mode: also compute the exact map and report ``ssim`` against it.
        blur_sigma: Gaussian sigma in pixels for ``fill="blur"``.

    Returns:
        `OcclusionResult` (maps at position resolution and at image resolution; ``stats``
        holds ``seconds`` (without the approximate mode's reference), ``forwards`` (occluded
        copies evaluated) and, for the incremental engine, ``mac_fraction``: the conv and
        linear multiply-adds it did over those of the naive method for the whole map, the
        inverse of the speed-up to expect; ``full_from`` lists the ops from which it computed
        full tensors).

    Example::

        r = occlusion(lens, x, target="auto", window=16, stride=8)
        r.prob.shape      # (N, 27, 27) for 224x224 images
    """
    lens = as_lens(lens, x)
    model = lens.model
    x = as_batch(lens, x)
    n, c, h, w = x.shape
    wy, wx = _pair(window, "window")
    ty, tx = _pair(stride, "stride")
    if wy > h or wx > w:
        raise ConvlensError(f"window {wy}x{wx} is larger than the image {h}x{w}")
    if batch_size < 1:
        raise ConvlensError(f"batch_size must be at least 1, got {batch_size}")
    mode = {"naive": "exact"}.get(mode, mode)
    if mode not in MODES:
        raise unknown("occlusion mode", mode, MODES + ("naive",))
    fill_name = _check_fill(fill)
    if mode == "approximate":
        if not 0 < tau <= 1:
            raise ConvlensError(f"tau must be in (0, 1], got {tau}")
        if not 0 <= drill <= 1:
            raise ConvlensError(f"drill must be in [0, 1], got {drill}")
        cy, cx = ((2 * ty, 2 * tx) if coarse_stride is None
                  else _pair(coarse_stride, "coarse_stride"))
        if cy % ty or cx % tx:
            raise ConvlensError(f"coarse_stride {cy}x{cx} must be a multiple of stride {ty}x{tx}")
        coarse = (cy // ty, cx // tx)
    pos_y, pos_x = positions(h, wy, ty), positions(w, wx, tx)
    if layer is not None:
        find_module(model, layer)  # fail early, naming close matches

    stats: dict[str, Any] = {"seconds": 0.0, "forwards": 0, "engine": mode}
    t_start = time.perf_counter()
    with torch.no_grad(), preserved(model):
        model.eval()
        clean_logits = lens(x)
        if clean_logits.dim() != 2:
            raise ConvlensError(f"the model must return class scores (N, K); got shape "
                                f"{tuple(clean_logits.shape)}")
        targets = _targets(lens, target, clean_logits)
        channels: list[int] = []
        engine = None
        if mode != "exact":
            engine, why = IncrementalEngine.build(model, x[:1], layer)
            if engine is None:
                warnings.warn(f"occlusion: incremental inference unavailable ({why}); "
                              "recomputing every occluded copy in full")
                stats["fallback"] = why
                if mode == "incremental":
                    stats["engine"] = "exact"

        maps: list[dict[str, torch.Tensor]] = []
        exact_maps: list[torch.Tensor] = []
        ssims: list[float | None] = []
        for k in range(n):
            xk = x[k:k + 1]
            fill_img = _fill_image(lens, xk, fill, (wy, wx), blur_sigma)
            ch = None
            if layer is not None:
                ch = _pick_channel(model, layer, xk, channel)
                channels.append(ch)
            grid = [(y, xx) for y in pos_y for xx in pos_x]

            def one_image(engine):
                if engine is not None:
                    if k > 0:  # `build` prepared the first image
                        engine.prepare(xk)
                    run = incremental_runner(engine, fill_img, (wy, wx), ch)
                else:
                    run = naive_runner(lens, xk, fill_img, (wy, wx), layer, ch)
                if mode != "approximate":
                    m = evaluate(run, grid, targets[k], batch_size, stats)
                    return {key: v.view(len(pos_y), len(pos_x)) for key, v in m.items()}, None
                approx_run = (incremental_runner(engine, fill_img, (wy, wx), ch, tau=tau)
                              if engine is not None else run)
                m = drill_down(approx_run, pos_y, pos_x, coarse, drill, targets[k],
                                clean_logits[k], batch_size, stats)
                if not reference:
                    return m, None
                t0 = time.perf_counter()
                macs = (engine.macs_done, engine.macs_full) if engine is not None else None
                ref = evaluate(run, grid, targets[k], batch_size, stats, count=False)
                if engine is not None:  # the work of the reference is not the mode's
                    engine.macs_done, engine.macs_full = macs
                stats["reference_seconds"] = stats.get("reference_seconds", 0.0) + \
                    time.perf_counter() - t0
                return m, ref["prob"].view(len(pos_y), len(pos_x))

            counts = stats["forwards"], stats.get("approximate_positions", 0)
            try:
                m, ex = one_image(engine)
            except ConvlensError:
                raise
            except Exception as e:  # an engine bug must cost speed, not the answer
                if engine is None:
                    raise
                why = f"the incremental engine failed: {type(e).__name__}: {e}"
                warnings.warn(f"occlusion: {why}; recomputing every occluded copy in full")
                stats.update(fallback=why, engine="exact" if mode == "incremental" else mode,
                             forwards=counts[0], approximate_positions=counts[1])
                engine = None
                m, ex = one_image(None)
            if ex is not None:
                exact_maps.append(ex)
                ssims.append(ssim(m["prob"], ex))
            maps.append(m)
        if engine is not None and engine.macs_full:
            # conv + linear multiply-adds done, over the naive method's for the whole map
            per_copy = engine.macs_full / max(stats["forwards"], 1)
            stats["mac_fraction"] = engine.macs_done / (per_copy * n * len(pos_y) * len(pos_x))
            stats["incremental_nodes"] = engine.incremental_nodes
            if engine.full_ops:
                stats["full_from"] = sorted(engine.full_ops)
    stats["seconds"] = time.perf_counter() - t_start - stats.get("reference_seconds", 0.0)

    stack = {key: torch.stack([m[key] for m in maps]).cpu() for key in maps[0]}
    my, mx = interp_matrix(h, pos_y, wy), interp_matrix(w, pos_x, wx)
    to_image = lambda a: torch.einsum("hp,npq,wq->nhw", my, a.double(), mx).float()  # noqa: E731
    clean_p = torch.softmax(clean_logits.double(), 1)
    return OcclusionResult(
        prob=stack["prob"], logit=stack["logit"], top_class=stack["top_class"],
        top_prob=stack["top_prob"], prob_image=to_image(stack["prob"]),
        top_class_image=stack["top_class"][:, my.argmax(1)][:, :, mx.argmax(1)],
        targets=targets.cpu(), predicted=clean_logits.argmax(1).cpu(),
        clean_prob=clean_p.gather(1, targets[:, None].to(clean_p.device))[:, 0].float().cpu(),
        clean_logit=clean_logits.gather(1, targets[:, None].to(clean_logits.device))[:, 0].cpu(),
        images=lens.to_unit(x).cpu(), pos_y=pos_y, pos_x=pos_x, window=(wy, wx), stride=(ty, tx),
        fill=fill_name, mode=mode, labels=lens.labels,
        activation=stack.get("activation"),
        activation_image=to_image(stack["activation"]) if "activation" in stack else None,
        layer=layer, channel=channels or None, ssim=ssims or None,
        exact_prob=torch.stack(exact_maps).cpu() if exact_maps else None, stats=stats)


# -- arguments -------------------------------------------------------------------------------
def positions(size: int, window: int, stride: int) -> list[int]:
    """Occluder starts along one axis: ``0, t, 2t, ...`` and, if that misses the border, a last
    one at ``size - window``."""
    out = list(range(0, size - window + 1, stride))
    if out[-1] != size - window:
        out.append(size - window)
    return out


def _pair(v, what: str) -> tuple[int, int]:
    a = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(a) != 2 or any(int(u) != u or u < 1 for u in a):
        raise ConvlensError(f"{what} must be a positive integer or a pair of them, got {v!r}")
    return int(a[0]), int(a[1])


def _check_fill(fill) -> str:
    if isinstance(fill, bool) or not isinstance(fill, (str, int, float)):
        raise ConvlensError(f"fill must be one of {FILLS} or a number, got {fill!r}")
    if isinstance(fill, str):
        if fill in FILLS:
            return fill
        try:
            return str(float(fill))
        except ValueError:
            raise unknown("fill", fill, FILLS, hint="or a raw pixel value") from None
    return str(float(fill))


def _fill_image(lens, xk: torch.Tensor, fill, window: tuple[int, int],
                sigma: float | None) -> torch.Tensor:
    """``(1, C, H, W)``: what the occluder shows at every pixel (normalised units)."""
    if isinstance(fill, str) and fill not in FILLS:
        fill = float(fill)
    if fill == "zero":
        return torch.zeros_like(xk)
    if fill == "mean":
        return xk.mean(dim=(2, 3), keepdim=True).expand_as(xk).contiguous()
    if fill == "blur":
        from torchvision.transforms.functional import gaussian_blur
        s = float(sigma) if sigma is not None else max(window) / 4.0
        if s <= 0:
            return xk.clone()
        k = 2 * math.ceil(3 * s) + 1
        k = min(k, 2 * ((min(xk.shape[-2:]) - 1) // 2) + 1)  # reflect padding needs k <= side
        return gaussian_blur(xk, [k, k], [s, s])
    value = sum(lens.value_range) / 2 if fill == "gray" else float(fill)
    raw = torch.full_like(xk, value)
    return lens.normalize(raw)


def _targets(lens, target, logits: torch.Tensor) -> torch.Tensor:
    n, k = logits.shape
    if isinstance(target, torch.Tensor):
        target = target.tolist()
    if isinstance(target, (list, tuple)):
        if len(target) != n:
            raise ConvlensError(f"{len(target)} targets for {n} images")
        items = list(target)
    else:
        items = [target] * n
    out = []
    for i, t in enumerate(items):
        if isinstance(t, str) and t == "auto":
            out.append(int(logits[i].argmax()))
            continue
        out.append(resolve_class(lens, t, k))
    return torch.tensor(out, dtype=torch.long, device=logits.device)


def resolve_class(lens, t, k: int | None = None) -> int:
    """A class given by index (int or digits) or label name, as an index; errors name the
    close matches."""
    k = k if k is not None else lens.num_classes
    if isinstance(t, str):
        if lens.labels is not None and t in lens.labels:
            return lens.labels.index(t)
        if t.lstrip("-").isdigit():
            t = int(t)
        else:
            raise unknown("class", t, lens.labels or [], hint="give a label name or an index")
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
        raise ConvlensError(f"a class must be an index or a label name, got {t!r}")
    if k is not None and not 0 <= int(t) < k:
        raise ConvlensError(f"class index {t} is out of range: the model has {k} classes")
    return int(t)


def _pick_channel(model: nn.Module, layer: str, xk: torch.Tensor, channel: int | None) -> int:
    with capture(model, layer) as cap:
        model(xk)
    a = cap[layer]
    nch = a.shape[1] if a.dim() >= 2 else 1
    if channel is None:  # Zeiler: the feature map with the strongest response
        return int(a[0].reshape(nch, -1).amax(1).argmax())
    if not 0 <= channel < nch:
        raise ConvlensError(f"channel {channel} is out of range: layer {layer!r} has {nch}")
    return int(channel)
