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

The incremental region of a conv/pool layer (kernel ``k``, stride ``s``, padding ``p``, dilation
``d``) whose input changed in rows ``[a, a + h)`` is, per axis::

    lo = ceil((a + p - d (k - 1)) / s),   hi = floor((a + h - 1 + p) / s)

clipped to the output; all copies of a batch share one rectangle size (the largest, shifted
inside the map at the borders). It is recomputed by running the layer with ``padding=0`` on the
input crop rows ``[lo s - p, hi s - p + d (k - 1)]`` read from the zero- (max-pool: -inf-) padded
clean input with the changed region pasted in. Pointwise layers (ReLU and friends, batch norm and dropout in
eval mode, arithmetic with constants) keep the region; an elementwise sum of two changed tensors
(a residual connection) and a channel concatenation take the union of their regions. Any other
operation (flatten, linear, adaptive pooling, anything unknown) gets the full tensors and runs as
usual from there on, so an unknown op costs speed, never correctness.
"""
from __future__ import annotations

import math
import operator
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConvlensError, unknown
from ..hooks import capture, find_module, preserved
from ..lens import as_batch
from ..results import Result, as_numpy

MODES = ("incremental", "exact", "approximate")
FILLS = ("zero", "gray", "mean", "blur")


# ==========================================================================================
# The result
# ==========================================================================================
@dataclass
class OcclusionResult(Result):
    """Occlusion maps of ``N`` images at ``(Py, Px)`` occluder positions.

    Arrays (``P = (Py, Px)`` positions, top-left corners ``pos_y[i], pos_x[j]``):

    * ``prob`` ``(N, Py, Px)``: ``p(target | x with the occluder at (i, j))``, softmax.
    * ``logit`` ``(N, Py, Px)``: the target's score before softmax.
    * ``top_class`` / ``top_prob`` ``(N, Py, Px)``: the most probable class there, and its p;
      ``top_class_image`` ``(N, H, W)``: the class of the nearest occluder centre.
    * ``activation`` ``(N, Py, Px)`` or None: ``sum_{u,v} A_layer(x_occ)[channel, u, v]``.
    * ``prob_image`` ``(N, H, W)``: ``prob`` at image resolution (each value at its occluder's
      centre, bilinear in between, constant beyond the outermost centres); likewise
      ``activation_image``.
    * ``clean_prob``, ``clean_logit``, ``predicted``, ``target`` ``(N,)``: the unoccluded image.
    * ``image`` ``(N, C, H, W)``: the input in [0, 1] for overlays.
    """

    prob: torch.Tensor
    logit: torch.Tensor
    top_class: torch.Tensor
    top_prob: torch.Tensor
    prob_image: torch.Tensor
    top_class_image: torch.Tensor
    target: torch.Tensor
    predicted: torch.Tensor
    clean_prob: torch.Tensor
    clean_logit: torch.Tensor
    image: torch.Tensor
    pos_y: list[int]
    pos_x: list[int]
    window: tuple[int, int]
    stride: tuple[int, int]
    fill: str
    mode: str
    labels: list[str] | None = None
    activation: torch.Tensor | None = None
    activation_image: torch.Tensor | None = None
    layer: str | None = None
    channel: list[int] | None = None
    ssim: list[float | None] | None = None
    exact_prob: torch.Tensor | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    kind = "occlusion"

    def label(self, k: int) -> str:
        return self.labels[k] if self.labels is not None and 0 <= k < len(self.labels) else str(k)

    def arrays(self) -> dict[str, Any]:
        out = {"prob": self.prob, "logit": self.logit, "top_class": self.top_class,
               "top_prob": self.top_prob, "prob_image": self.prob_image,
               "top_class_image": self.top_class_image,
               "target": self.target, "predicted": self.predicted,
               "clean_prob": self.clean_prob, "clean_logit": self.clean_logit,
               "pos_y": np.asarray(self.pos_y), "pos_x": np.asarray(self.pos_x)}
        if self.activation is not None:
            out["activation"] = self.activation
            out["activation_image"] = self.activation_image
        if self.exact_prob is not None:
            out["exact_prob"] = self.exact_prob
        return out

    def tables(self) -> dict[str, Any]:
        import pandas as pd

        rows = []
        prob, logit, top, top_p = (as_numpy(a) for a in
                                   (self.prob, self.logit, self.top_class, self.top_prob))
        act = None if self.activation is None else as_numpy(self.activation)
        for n in range(prob.shape[0]):
            for i, y in enumerate(self.pos_y):
                for j, x in enumerate(self.pos_x):
                    r = {"image": n, "y": y, "x": x, "prob": float(prob[n, i, j]),
                         "logit": float(logit[n, i, j]), "top_class": int(top[n, i, j]),
                         "top_label": self.label(int(top[n, i, j])),
                         "top_prob": float(top_p[n, i, j])}
                    if act is not None:
                        r["activation"] = float(act[n, i, j])
                    rows.append(r)
        return {"positions": pd.DataFrame(rows)}

    def pictures(self) -> dict[str, np.ndarray]:
        import matplotlib

        from .. import draw

        pics: dict[str, np.ndarray] = {}
        images = as_numpy(self.image)
        prob_image, top = as_numpy(self.prob_image), as_numpy(self.top_class_image)
        lut = (matplotlib.colormaps["tab20"](np.arange(20))[:, :3] * 255).astype(np.uint8)
        n = images.shape[0]
        for k in range(n):
            pre = f"{k}_" if n > 1 else ""
            img = draw.image_hwc(images[k])
            pics[pre + "image"] = img
            # Low probability = where the occluder hurts the class: shown hot.
            pics[pre + "prob_overlay"] = draw.overlay(img, -prob_image[k], alpha=0.5, cmap="jet")
            pics[pre + "prob"] = draw.colormap(prob_image[k], "viridis", 0.0, None)
            # Categorical colours for the most probable class (tab20 wraps after 20 classes).
            pics[pre + "top_class"] = lut[top[k].astype(np.int64) % 20]
            if self.activation_image is not None:
                a = as_numpy(self.activation_image)[k]
                pics[pre + "activation"] = draw.colormap(a, "inferno")
                pics[pre + "activation_overlay"] = draw.overlay(img, a, alpha=0.5, cmap="jet")
        return pics

    def info(self) -> dict[str, Any]:
        return {
            "window": list(self.window), "stride": list(self.stride), "fill": self.fill,
            "mode": self.mode, "positions": [len(self.pos_y), len(self.pos_x)],
            "target": [int(t) for t in self.target],
            "target_label": [self.label(int(t)) for t in self.target],
            "predicted": [int(t) for t in self.predicted],
            "predicted_label": [self.label(int(t)) for t in self.predicted],
            "clean_prob": [float(p) for p in self.clean_prob],
            "layer": self.layer, "channel": self.channel, "ssim": self.ssim,
            "stats": self.stats,
        }


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

    Positions run ``0, t, 2t, ...`` while the occluder fits in the image (as Captum's
    ``Occlusion``); pixels beyond the last position are never occluded when ``(H - w) % t != 0``.

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
    pos_y = list(range(0, h - wy + 1, ty))
    pos_x = list(range(0, w - wx + 1, tx))
    if layer is not None:
        find_module(model, layer)  # fail early, naming close matches

    stats: dict[str, Any] = {"seconds": 0.0, "forwards": 0, "engine": mode}
    t_start = time.perf_counter()
    with torch.no_grad(), preserved(model):
        model.eval()
        clean_logits = model(x)
        if clean_logits.dim() != 2:
            raise ConvlensError(f"the model must return class scores (N, K); got shape "
                                f"{tuple(clean_logits.shape)}")
        targets = _targets(lens, target, clean_logits)
        channels: list[int] = []
        engine = None
        if mode != "exact":
            engine, why = _Engine.build(model, x[:1], layer)
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
                    run = _incremental_runner(engine, fill_img, (wy, wx), ch)
                else:
                    run = _naive_runner(lens, xk, fill_img, (wy, wx), layer, ch)
                if mode != "approximate":
                    m = _evaluate(run, grid, targets[k], batch_size, stats)
                    return {key: v.view(len(pos_y), len(pos_x)) for key, v in m.items()}, None
                approx_run = (_incremental_runner(engine, fill_img, (wy, wx), ch, tau=tau)
                              if engine is not None else run)
                m = _drill_down(approx_run, pos_y, pos_x, coarse, drill, targets[k],
                                clean_logits[k], batch_size, stats)
                if not reference:
                    return m, None
                t0 = time.perf_counter()
                macs = (engine.macs_done, engine.macs_full) if engine is not None else None
                ref = _evaluate(run, grid, targets[k], batch_size, stats, count=False)
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
    my, mx = _interp_matrix(h, pos_y, wy), _interp_matrix(w, pos_x, wx)
    to_image = lambda a: torch.einsum("hp,npq,wq->nhw", my, a.double(), mx).float()  # noqa: E731
    clean_p = torch.softmax(clean_logits.double(), 1)
    return OcclusionResult(
        prob=stack["prob"], logit=stack["logit"], top_class=stack["top_class"],
        top_prob=stack["top_prob"], prob_image=to_image(stack["prob"]),
        top_class_image=stack["top_class"][:, my.argmax(1)][:, :, mx.argmax(1)],
        target=targets.cpu(), predicted=clean_logits.argmax(1).cpu(),
        clean_prob=clean_p.gather(1, targets[:, None].to(clean_p.device))[:, 0].float().cpu(),
        clean_logit=clean_logits.gather(1, targets[:, None].to(clean_logits.device))[:, 0].cpu(),
        image=lens.to_unit(x).cpu(), pos_y=pos_y, pos_x=pos_x, window=(wy, wx), stride=(ty, tx),
        fill=fill_name, mode=mode, labels=lens.labels,
        activation=stack.get("activation"),
        activation_image=to_image(stack["activation"]) if "activation" in stack else None,
        layer=layer, channel=channels or None, ssim=ssims or None,
        exact_prob=torch.stack(exact_maps).cpu() if exact_maps else None, stats=stats)


# -- arguments -------------------------------------------------------------------------------
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


def _interp_matrix(n: int, starts: list[int], window: int) -> torch.Tensor:
    """``(n, P)``: linear interpolation from occluder centres to pixel centres, clamped."""
    centres = np.asarray(starts, dtype=np.float64) + (window - 1) / 2.0
    pix = np.arange(n, dtype=np.float64)
    eye = np.eye(len(starts))
    return torch.from_numpy(np.stack([np.interp(pix, centres, eye[j])
                                      for j in range(len(starts))], 1))


# -- evaluating positions --------------------------------------------------------------------
Runner = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]


def _evaluate(run: Runner, grid: list[tuple[int, int]], target: torch.Tensor, batch_size: int,
              stats: dict, count: bool = True) -> dict[str, torch.Tensor]:
    """Maps over `grid` positions (flat, in order): prob, logit, top class/prob, activation."""
    out: dict[str, list[torch.Tensor]] = {"prob": [], "logit": [], "top_class": [], "top_prob": []}
    acts = []
    for b in range(0, len(grid), batch_size):
        chunk = grid[b:b + batch_size]
        ys = torch.tensor([p[0] for p in chunk], dtype=torch.long)
        xs = torch.tensor([p[1] for p in chunk], dtype=torch.long)
        logits, act = run(ys, xs)
        if count:
            stats["forwards"] += len(chunk)
        p = torch.softmax(logits.double(), 1)
        out["prob"].append(p[:, target].float())
        out["logit"].append(logits[:, target])
        top_p, top_c = p.max(1)
        out["top_class"].append(top_c)
        out["top_prob"].append(top_p.float())
        if act is not None:
            acts.append(act)
    res = {key: torch.cat(v) for key, v in out.items()}
    if acts:
        res["activation"] = torch.cat(acts)
    return res


def _naive_runner(lens, xk, fill_img, window, layer, ch) -> Runner:
    """Full forward passes of occluded copies (and the layer's activation via `capture`)."""
    model = lens.model
    wy, wx = window

    def run(ys: torch.Tensor, xs: torch.Tensor):
        xb = xk.expand(len(ys), -1, -1, -1).clone()
        for b, (y, x) in enumerate(zip(ys.tolist(), xs.tolist())):
            xb[b, :, y:y + wy, x:x + wx] = fill_img[0, :, y:y + wy, x:x + wx]
        if layer is None:
            return model(xb), None
        with capture(model, layer) as cap:
            logits = model(xb)
        return logits, _total(cap[layer], ch)
    return run


def _total(a: torch.Tensor, ch: int) -> torch.Tensor:
    a = a[:, ch]
    return a.reshape(a.shape[0], -1).sum(1) if a.dim() > 1 else a


def _incremental_runner(engine: "_Engine", fill_img, window, ch,
                        tau: float | None = None) -> Runner:
    wy, wx = window
    rows, cols = torch.arange(wy), torch.arange(wx)
    fill_hwc = fill_img[0].permute(1, 2, 0)

    def run(ys: torch.Tensor, xs: torch.Tensor):
        dev = fill_img.device
        r = (ys[:, None] + rows).to(dev)
        c = (xs[:, None] + cols).to(dev)
        patch = fill_hwc[r[:, :, None], c[:, None, :]].permute(0, 3, 1, 2)  # (B, C, wy, wx)
        return engine.run(patch, ys.to(dev), xs.to(dev), tau=tau, channel=ch)
    return run


def _drill_down(run: Runner, pos_y: list[int], pos_x: list[int], coarse: tuple[int, int],
                drill: float, target: torch.Tensor, clean_logits: torch.Tensor, batch_size: int,
                stats: dict) -> dict[str, torch.Tensor]:
    """Krypton's adaptive drill-down: a coarse grid (every `coarse`-th position, and the last),
    interpolated to the fine grid; then the `drill` fraction of the other fine positions with
    the largest interpolated change ``|p_clean - p|`` computed too. The rest stays
    interpolated (bilinear; the top class from the nearest coarse position)."""
    py, px = len(pos_y), len(pos_x)
    iy = sorted(set(range(0, py, coarse[0])) | {py - 1})
    ix = sorted(set(range(0, px, coarse[1])) | {px - 1})
    grid = [(pos_y[i], pos_x[j]) for i in iy for j in ix]
    m = _evaluate(run, grid, target, batch_size, stats)
    m = {k: v.view(len(iy), len(ix)) for k, v in m.items()}
    my = _interp_matrix(py, iy, 1).to(m["prob"].device)  # fine index -> coarse index
    mx = _interp_matrix(px, ix, 1).to(m["prob"].device)
    full = {k: (my @ v.double() @ mx.T).to(v.dtype) for k, v in m.items()
            if k in ("prob", "logit", "top_prob", "activation")}
    ny = my.argmax(1)
    nx = mx.argmax(1)
    full["top_class"] = m["top_class"][ny][:, nx]
    known = torch.zeros(py, px, dtype=torch.bool)
    known[torch.tensor(iy)[:, None], torch.tensor(ix)[None, :]] = True
    for k in m:  # coarse positions keep their computed values (interpolation is exact there)
        full[k][torch.tensor(iy)[:, None], torch.tensor(ix)[None, :]] = m[k]
    p_clean = torch.softmax(clean_logits.double(), 0)[target].item()
    # "Most sensitive" = largest change either way (occluding a distractor can raise p).
    change = (p_clean - full["prob"].double().cpu()).abs().masked_fill(known, -math.inf).flatten()
    todo = int(round(drill * (py * px - int(known.sum()))))
    if todo > 0:
        pick = torch.topk(change, todo).indices.sort().values
        fine = [(pos_y[int(i) // px], pos_x[int(i) % px]) for i in pick]
        f = _evaluate(run, fine, target, batch_size, stats)
        for k in full:
            full[k].view(-1)[pick.to(full[k].device)] = f[k].to(full[k].dtype)
    stats["approximate_positions"] = stats.get("approximate_positions", 0) + len(grid) + todo
    return full


def ssim(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """SSIM (Wang et al. 2004, scikit-image) of map `a` against reference map `b`, with the
    reference's range as data range; None for maps too small for a 3x3 window."""
    from skimage.metrics import structural_similarity

    a = as_numpy(a).astype(np.float64)
    b = as_numpy(b).astype(np.float64)
    side = min(a.shape)
    if side < 3:
        return None
    rng = float(b.max() - b.min())
    if rng == 0:
        return 1.0 if np.array_equal(a, b) else 0.0
    win = min(7, side if side % 2 else side - 1)
    return float(structural_similarity(a, b, data_range=rng, win_size=win))


# ==========================================================================================
# Incremental inference over the model's torch.fx graph
# ==========================================================================================
class _Clean:
    """An x-dependent value equal to the clean image's (nothing changed it)."""


CLEAN = _Clean()


@dataclass
class _Dirty:
    """A (B, C, H, W) value equal to the clean one except in one rectangle per copy: rows
    ``y[b] : y[b] + h`` and columns ``x[b] : x[b] + w`` hold ``patch[b]`` (one size for the
    batch). The values really changed only in rows ``lo_y[b] ..= hi_y[b]`` and columns
    ``lo_x[b] ..= hi_x[b]`` (inside the rectangle); the rest of the patch was recomputed
    because the batch shares one size, and equals the clean values (to rounding). The next
    layer's region grows from these bounds, not from the patch, so that one copy's larger
    region does not spread to the others layer after layer."""

    patch: torch.Tensor
    y: torch.Tensor
    x: torch.Tensor
    lo_y: torch.Tensor
    hi_y: torch.Tensor
    lo_x: torch.Tensor
    hi_x: torch.Tensor

    def like(self, patch: torch.Tensor) -> "_Dirty":
        """The same region holding another patch (after a pointwise op)."""
        return _Dirty(patch, self.y, self.x, self.lo_y, self.hi_y, self.lo_x, self.hi_x)


@dataclass
class _Full:
    """A value computed in full for every sample (a tensor, or anything else)."""

    value: Any


_POINTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus,
    nn.Softsign, nn.Tanhshrink, nn.Identity, nn.LocalResponseNorm,
)
_DROPOUT = (nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_POINTWISE_FUNCTIONS = {
    F.relu, torch.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, F.elu, F.selu, F.mish,
    F.hardtanh, F.hardswish, F.hardsigmoid, F.softplus, torch.sigmoid, torch.tanh, F.sigmoid,
    F.tanh, torch.abs, torch.exp, torch.neg, operator.neg, torch.clamp, torch.clip,
}
_POINTWISE_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp",
                      "clamp_", "clip", "contiguous", "abs", "neg", "exp"}
_BINARY_FUNCTIONS = {operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd,
                     operator.isub, operator.imul, operator.itruediv, torch.add, torch.sub,
                     torch.mul, torch.div, torch.maximum, torch.minimum}
_BINARY_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
_INPLACE_FUNCTIONS = {operator.iadd, operator.isub, operator.imul, operator.itruediv}


def _axis(v, i: int) -> int:
    return int(v[i]) if isinstance(v, (tuple, list)) else int(v)


class _Engine:
    """Krypton-style incremental inference over a torch.fx trace of the model.

    ``prepare(x1)`` runs the clean image once and keeps every node's output;
    ``run(patch, y, x)`` evaluates a batch of copies of it whose input differs only in the
    rectangles ``patch[b]`` at ``(y[b], x[b])``, recomputing only what changed (see the module
    docstring); returns the logits ``(B, K)`` and the watched layer's total activation.
    """

    def __init__(self, gm, nodes, layer_node):
        self.gm = gm
        self.nodes = nodes
        self.modules = dict(gm.named_modules())
        self.layer_node = layer_node
        self.clean: dict[Any, Any] = {}
        self.xdep: set = set()
        self.aliasing: set = set()
        self._padded: dict = {}
        self.macs_done = 0.0
        self.macs_full = 0.0
        self.incremental_nodes = 0
        self.full_ops: set[str] = set()

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def build(cls, model: nn.Module, x1: torch.Tensor, layer: str | None):
        """An engine for `model`, or ``(None, reason)`` when it cannot be traced or checked."""
        import torch.fx as fx

        try:
            gm = fx.symbolic_trace(model)
        except Exception as e:  # anything fx cannot trace: data-dependent control flow, ...
            return None, f"torch.fx cannot trace {type(model).__name__}: " \
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        nodes = list(gm.graph.nodes)
        if sum(nd.op == "placeholder" for nd in nodes) != 1:
            return None, "the model takes more than one input"
        layer_node = None
        if layer is not None:
            layer_node = cls._find_layer(nodes, layer)
            if layer_node is None:
                return None, f"layer {layer!r} is not a node of the traced graph"
        eng = cls(gm, nodes, layer_node)
        try:
            eng.prepare(x1)
        except Exception as e:  # an op that runs in the model but not node by node
            return None, f"the traced graph fails to run: {type(e).__name__}: {e}"
        ok, why = eng.check(model, x1, layer)
        return (eng, None) if ok else (None, why)

    @staticmethod
    def _find_layer(nodes, layer: str):
        """The node whose output is `layer`'s: its last call, or for a container the last call
        of any module inside it (checked against a hook in `prepare`)."""
        found = None
        for nd in nodes:
            if nd.op == "call_module" and (nd.target == layer or nd.target.startswith(layer + ".")):
                found = nd
        return found

    # -- the clean pass --------------------------------------------------------------------
    def prepare(self, x1: torch.Tensor) -> None:
        """Run the clean image ``(1, C, H, W)`` through the graph, keeping every node's output."""
        self._padded.clear()
        self.xdep.clear()
        self.aliasing.clear()
        env: dict = {}
        for nd in self.nodes:
            if nd.op == "placeholder":
                env[nd] = x1
                self.xdep.add(nd)
                continue
            if nd.op == "output":
                env[nd] = _map(nd.args[0], env)
                break
            args = _map(nd.args, env, clone=True)  # no op may change a kept value in place
            kwargs = _map(nd.kwargs, env, clone=True)
            val = self._call(nd, args, kwargs)
            if _shares_storage(val, args, kwargs):
                self.aliasing.add(nd)  # in place or a view: feed it private copies later
            env[nd] = val
            if any(a in self.xdep for a in nd.all_input_nodes):
                self.xdep.add(nd)
        self.clean = env

    def check(self, model: nn.Module, x1: torch.Tensor,
              layer: str | None) -> tuple[bool, str | None]:
        """The traced graph must compute what the model computes (and what a hook on `layer`
        sees); otherwise the engine is not used."""
        out = self.clean[self.nodes[-1]]
        if layer is not None:
            with capture(model, layer) as cap:
                ref = model(x1)
            want = cap[layer]
            got = self.clean[self.layer_node]
            if not (isinstance(got, torch.Tensor) and got.shape == want.shape
                    and torch.allclose(got, want, rtol=1e-4, atol=1e-5)):
                return False, f"layer {layer!r} does not match a node of the traced graph"
        else:
            ref = model(x1)
        if not (isinstance(out, torch.Tensor) and out.shape == ref.shape
                and torch.allclose(out, ref, rtol=1e-4, atol=1e-5)):
            return False, "the traced graph does not reproduce the model's output"
        return True, None

    def _call(self, nd, args, kwargs):
        if nd.op == "call_module":
            return self.modules[nd.target](*args, **kwargs)
        if nd.op == "call_function":
            return nd.target(*args, **kwargs)
        if nd.op == "call_method":
            return getattr(args[0], nd.target)(*args[1:], **kwargs)
        if nd.op == "get_attr":
            obj = self.gm
            for part in nd.target.split("."):
                obj = getattr(obj, part)
            return obj
        raise RuntimeError(f"unexpected fx node {nd.op}")

    # -- a batch of occluded copies --------------------------------------------------------
    def run(self, patch: torch.Tensor, y: torch.Tensor, x: torch.Tensor, tau: float | None = None,
            channel: int | None = None):
        bsz = patch.shape[0]
        env: dict = {}
        result = None
        for nd in self.nodes:
            if nd.op == "placeholder":
                h, w = patch.shape[2:]
                env[nd] = _Dirty(patch, y, x, y, y + h - 1, x, x + w - 1)
                continue
            if nd.op == "output":
                result = self._full(nd.args[0], env, bsz)
                break
            if nd not in self.xdep:
                env[nd] = CLEAN
                continue
            ins = nd.all_input_nodes
            if all(isinstance(env.get(a, CLEAN), _Clean) for a in ins):
                env[nd] = CLEAN
                continue
            val = self._step(nd, env, bsz, tau)
            if isinstance(val, _Dirty) and val.patch.numel() == 0:
                val = CLEAN
            env[nd] = val
        act = None
        if self.layer_node is not None and channel is not None:
            act = self._total(self.layer_node, env[self.layer_node], channel, bsz)
        return result, act

    def _total(self, nd, val, ch, bsz):
        clean = self.clean[nd]
        base = _total(clean, ch)  # (1,)
        if isinstance(val, _Clean):
            return base.expand(bsz).clone()
        if isinstance(val, _Full):
            return _total(val.value, ch)
        # clean sum - clean values under the patch + patch values
        h, w = val.patch.shape[2:]
        under = self._gather(nd, None, val.y[:, None] + torch.arange(h, device=val.y.device),
                             val.x[:, None] + torch.arange(w, device=val.x.device), (0, 0), 0.0)
        return (base - under[:, ch].reshape(bsz, -1).sum(1)
                + val.patch[:, ch].reshape(bsz, -1).sum(1))

    def _step(self, nd, env, bsz: int, tau: float | None):
        """One node with at least one changed input."""
        op = nd.op
        if op == "call_module":
            mod = self.modules[nd.target]
            src = nd.args[0] if nd.args else None
            if len(nd.args) == 1 and not nd.kwargs and isinstance(env.get(src), _Dirty):
                spatial = _spatial(mod)
                if spatial is not None:
                    return self._spatial_step(nd, src, env[src], mod, spatial, bsz, tau)
                if _pointwise_module(mod, self.clean[src]):
                    d = env[src]
                    patch = d.patch.clone() if self._must_copy(nd, src) else d.patch
                    self.incremental_nodes += 1
                    return d.like(mod(patch))
        elif op in ("call_function", "call_method"):
            target = nd.target
            if (op == "call_function" and target in _POINTWISE_FUNCTIONS) or \
                    (op == "call_method" and target in _POINTWISE_METHODS):
                out = self._pointwise(nd, env)
                if out is not None:
                    return out
            if (op == "call_function" and target in _BINARY_FUNCTIONS) or \
                    (op == "call_method" and target in _BINARY_METHODS):
                out = self._pointwise(nd, env)
                if out is None:
                    out = self._union(nd, env, list(nd.args), bsz, tau)
                if out is not None:
                    return out
            if op == "call_function" and target is torch.cat:
                out = self._cat(nd, env, bsz, tau)
                if out is not None:
                    return out
        return self._run_full(nd, env, bsz)

    def _must_copy(self, nd, src) -> bool:
        """An op that may write into its input must get a copy when the input is read again."""
        return nd in self.aliasing or _inplace(nd, self.modules) or len(src.users) > 1

    # -- kinds of nodes --------------------------------------------------------------------
    def _run_full(self, nd, env, bsz):
        """Unknown op (or a full-size region): full tensors in, full value out."""
        copy = nd in self.aliasing or _inplace(nd, self.modules)
        args = tuple(self._full_arg(a, env, bsz, copy) for a in nd.args)
        kwargs = {k: self._full_arg(v, env, bsz, copy) for k, v in nd.kwargs.items()}
        val = self._call(nd, args, kwargs)
        label = nd.target if isinstance(nd.target, str) else \
            getattr(nd.target, "__name__", str(nd.target))
        if nd.op == "call_module":
            label = f"{nd.target} ({type(self.modules[nd.target]).__name__})"
            self._count_full(self.modules[nd.target], nd, bsz)
        if any(isinstance(env.get(a), _Dirty) for a in nd.all_input_nodes):
            self.full_ops.add(str(label))
        return _Full(val)

    def _full_arg(self, a, env, bsz, copy):
        import torch.fx as fx
        if isinstance(a, fx.Node):
            return self._full(a, env, bsz, copy)
        if isinstance(a, (list, tuple)):
            return type(a)(self._full_arg(v, env, bsz, copy) for v in a)
        if isinstance(a, dict):
            return {k: self._full_arg(v, env, bsz, copy) for k, v in a.items()}
        return a

    def _full(self, a, env, bsz, copy: bool = False):
        """The full value of node `a` for the batch."""
        import torch.fx as fx
        if not isinstance(a, fx.Node):
            return self._full_arg(a, env, bsz, copy)
        v = env.get(a, CLEAN)
        if isinstance(v, _Full):
            val = v.value
            return val.clone() if copy and isinstance(val, torch.Tensor) else val
        clean = self.clean[a]
        if a not in self.xdep or not isinstance(clean, torch.Tensor):
            return clean.clone() if copy and isinstance(clean, torch.Tensor) else clean
        full = clean.expand(bsz, *clean.shape[1:]).clone()
        if isinstance(v, _Dirty):
            h, w = v.patch.shape[2:]
            dev = v.y.device
            rows = v.y[:, None] + torch.arange(h, device=dev)
            cols = v.x[:, None] + torch.arange(w, device=dev)
            b = torch.arange(bsz, device=dev)
            full.permute(0, 2, 3, 1)[b[:, None, None], rows[:, :, None], cols[:, None, :]] = \
                v.patch.permute(0, 2, 3, 1).to(full.dtype)
        return full

    def _pointwise(self, nd, env):
        """f(changed tensor, constants...) with f elementwise: the same rectangle."""
        import torch.fx as fx
        ins = nd.all_input_nodes
        dirty = [a for a in ins if isinstance(env.get(a), _Dirty)]
        if len(dirty) != 1 or dirty[0] not in nd.args:
            return None
        for a in ins:
            if a is not dirty[0] and (a in self.xdep or not _spatially_constant(self.clean[a])):
                return None
        if any(isinstance(v, (list, tuple, dict, slice)) for v in nd.args) or \
                any(isinstance(v, (fx.Node, list, tuple, dict)) for v in nd.kwargs.values()):
            return None
        d = env[dirty[0]]
        patch = d.patch.clone() if self._must_copy(nd, dirty[0]) else d.patch
        args = tuple(patch if a is dirty[0] else self.clean[a] if isinstance(a, fx.Node) else a
                     for a in nd.args)
        self.incremental_nodes += 1
        return d.like(self._call(nd, args, dict(nd.kwargs)))

    def _operand_rects(self, nodes, env, shape4):
        """Changed bounds ``(lo_y, hi_y, lo_x, hi_x)`` per copy of the changed operands; None
        if one is full or not a map of the same size."""
        rects = []
        for a in nodes:
            v = env.get(a, CLEAN)
            if isinstance(v, _Full):
                return None
            c = self.clean[a]
            if not isinstance(c, torch.Tensor) or c.dim() != 4:
                return None
            if shape4 is not None and c.shape[2:] != shape4:
                return None
            if isinstance(v, _Dirty):
                rects.append((v.lo_y, v.hi_y, v.lo_x, v.hi_x))
        return rects

    def _union(self, nd, env, args, bsz, tau):
        """Elementwise op of changed tensors (a residual sum): over the union of their
        rectangles, reading each operand there (clean values with its patch pasted in)."""
        import torch.fx as fx
        if len(args) != 2 or nd.kwargs and set(nd.kwargs) - {"alpha"}:
            return None
        xnodes = [a for a in args if isinstance(a, fx.Node) and a in self.xdep]
        for a in args:
            if not isinstance(a, (fx.Node, int, float)):
                return None
            if isinstance(a, fx.Node) and a not in self.xdep and \
                    not _spatially_constant(self.clean[a]):
                return None
        shapes = {tuple(self.clean[a].shape) if isinstance(self.clean[a], torch.Tensor) else None
                  for a in xnodes}
        if len(shapes) != 1 or None in shapes:
            return None  # broadcasting between changed tensors: run in full
        shape4 = self.clean[xnodes[0]].shape[2:]
        rects = self._operand_rects(xnodes, env, shape4)
        if not rects:
            return None
        box = self._fit_union(rects, shape4, tau)
        if box is None:
            return None  # covers the whole map: run in full
        (ys, hh), (xs, ww), bounds = box
        rows = ys[:, None] + torch.arange(hh, device=ys.device)
        cols = xs[:, None] + torch.arange(ww, device=xs.device)
        vals = []
        for a in args:
            if isinstance(a, fx.Node) and a in self.xdep:
                vals.append(self._gather(a, _dirty_or_none(env, a), rows, cols, (0, 0), 0.0))
            elif isinstance(a, fx.Node):
                vals.append(self.clean[a])
            else:
                vals.append(a)
        self.incremental_nodes += 1
        return _Dirty(self._call(nd, tuple(vals), dict(nd.kwargs)), ys, xs, *bounds)

    def _cat(self, nd, env, bsz, tau):
        import torch.fx as fx
        tensors = nd.args[0] if nd.args else nd.kwargs.get("tensors")
        dim = nd.args[1] if len(nd.args) > 1 else nd.kwargs.get("dim", 0)
        if not isinstance(tensors, (list, tuple)) or \
                not all(isinstance(t, fx.Node) for t in tensors):
            return None
        if any(t not in self.xdep for t in tensors):
            return None
        c0 = self.clean[tensors[0]]
        if not isinstance(c0, torch.Tensor) or c0.dim() != 4 or dim not in (1, -3):
            return None
        shape4 = c0.shape[2:]
        rects = self._operand_rects(tensors, env, shape4)
        if not rects:
            return None
        box = self._fit_union(rects, shape4, tau)
        if box is None:
            return None
        (ys, hh), (xs, ww), bounds = box
        rows = ys[:, None] + torch.arange(hh, device=ys.device)
        cols = xs[:, None] + torch.arange(ww, device=xs.device)
        vals = [self._gather(t, _dirty_or_none(env, t), rows, cols, (0, 0), 0.0) for t in tensors]
        self.incremental_nodes += 1
        return _Dirty(torch.cat(vals, 1), ys, xs, *bounds)

    def _fit_union(self, rects, shape4, tau):
        """The batch rectangle holding every copy's union of changed bounds (capped by tau),
        and those bounds; None when it is the whole map."""
        h, w = shape4
        lo_y, hi_y = _cap(torch.stack([r[0] for r in rects]).amin(0),
                          torch.stack([r[1] for r in rects]).amax(0), h, tau)
        lo_x, hi_x = _cap(torch.stack([r[2] for r in rects]).amin(0),
                          torch.stack([r[3] for r in rects]).amax(0), w, tau)
        ry, rx = _fit(lo_y, hi_y, h), _fit(lo_x, hi_x, w)
        if ry[1] >= h and rx[1] >= w:
            return None
        return ry, rx, (lo_y, hi_y, lo_x, hi_x)

    def _spatial_step(self, nd, src, d: _Dirty, mod, spatial, bsz, tau):
        """Conv / pool: the output rectangle the patch can change, computed from an input crop."""
        (ky, sy, py, dy), (kx, sx, px, dx), pad_value, fn = spatial
        clean_in = self.clean[src]
        clean_out = self.clean[nd]
        if clean_in.dim() != 4 or clean_out.dim() != 4:
            return self._run_full_node(nd, src, d, bsz)
        hin, win = clean_in.shape[2:]
        hout, wout = clean_out.shape[2:]
        # Outputs whose window meets the changed inputs, capped by tau (approximate mode).
        loy, hiy = _cap(*_out_range(d.lo_y, d.hi_y - d.lo_y + 1, ky, sy, py, dy, hout), hout, tau)
        lox, hix = _cap(*_out_range(d.lo_x, d.hi_x - d.lo_x + 1, kx, sx, px, dx, wout), wout, tau)
        ys, sh = _fit(loy, hiy, hout)
        xs, sw = _fit(lox, hix, wout)
        macs_per_out = _macs_per_output(mod)
        self.macs_full += macs_per_out * hout * wout * bsz
        if sh >= hout and sw >= wout:  # the whole map changes: run the layer as usual
            return self._run_full_node(nd, src, d, bsz, counted=True)
        self.macs_done += macs_per_out * sh * sw * bsz
        ly = (sh - 1) * sy + dy * (ky - 1) + 1
        lx = (sw - 1) * sx + dx * (kx - 1) + 1
        dev = d.y.device
        rows = ys[:, None] * sy - py + torch.arange(ly, device=dev)
        cols = xs[:, None] * sx - px + torch.arange(lx, device=dev)
        crop = self._gather(src, d, rows, cols, (py, px), pad_value)
        out = fn(crop)
        self.incremental_nodes += 1
        return _Dirty(out, ys, xs, loy, hiy, lox, hix)

    def _run_full_node(self, nd, src, d, bsz, counted: bool = False):
        mod = self.modules[nd.target]
        self.full_ops.add(f"{nd.target} ({type(mod).__name__}, whole map)")
        full_in = self._full(src, {src: d}, bsz)
        if not counted:
            self._count_full(mod, nd, bsz)
        else:
            self.macs_done += _macs_per_output(mod) * _spatial_numel(self.clean[nd]) * bsz
        return _Full(mod(full_in))

    def _count_full(self, mod, nd, bsz):
        m = _macs_per_output(mod)
        if m:
            n = _spatial_numel(self.clean[nd]) if isinstance(mod, nn.Conv2d) else 1
            self.macs_full += m * n * bsz
            self.macs_done += m * n * bsz

    def _gather(self, nd, d: _Dirty | None, rows, cols, pad, pad_value) -> torch.Tensor:
        """``(B, C, L, L')``: node `nd`'s value at rows ``rows[b]`` and columns ``cols[b]``
        (``(B, L)``, ``(B, L')``, may reach ``pad`` beyond the border, read as `pad_value`):
        the clean output with sample ``b``'s patch pasted in."""
        key = (nd, pad, pad_value)
        padded = self._padded.get(key)
        if padded is None:
            c = self.clean[nd]
            py, px = pad
            if py or px:
                c = F.pad(c, (px, px, py, py), value=pad_value)
            padded = c[0].permute(1, 2, 0).contiguous()  # (H + 2py, W + 2px, C): rows gather fast
            self._padded[key] = padded
        py, px = pad
        base = padded[(rows + py)[:, :, None], (cols + px)[:, None, :]]  # (B, L, L', C)
        if d is not None:
            h, w = d.patch.shape[2:]
            b = torch.arange(rows.shape[0], device=rows.device)
            oy, ox = d.y - rows[:, 0], d.x - cols[:, 0]  # patch corner inside the crop
            holds = (oy >= 0) & (oy + h <= rows.shape[1]) & (ox >= 0) & (ox + w <= cols.shape[1])
            if bool(holds.all()):
                # The usual case, the crop holds the whole patch: paste it.
                ar_y = oy[:, None] + torch.arange(h, device=rows.device)
                ar_x = ox[:, None] + torch.arange(w, device=rows.device)
                base[b[:, None, None], ar_y[:, :, None], ar_x[:, None, :]] = \
                    d.patch.permute(0, 2, 3, 1).to(base.dtype)
            else:  # the crop holds part of the patch: read element by element
                pr = rows - d.y[:, None]
                pc = cols - d.x[:, None]
                inside = ((pr >= 0) & (pr < h))[:, :, None] & ((pc >= 0) & (pc < w))[:, None, :]
                got = d.patch.permute(0, 2, 3, 1)[b[:, None, None], pr.clamp(0, h - 1)[:, :, None],
                                                   pc.clamp(0, w - 1)[:, None, :]]
                base = torch.where(inside[..., None], got.to(base.dtype), base)
        return base.permute(0, 3, 1, 2)


def _map(a, env, clone: bool = False):
    import torch.fx as fx

    if isinstance(a, fx.Node):
        v = env[a]
        return v.clone() if clone and isinstance(v, torch.Tensor) else v
    if isinstance(a, (list, tuple)):
        return type(a)(_map(v, env, clone) for v in a)
    if isinstance(a, dict):
        return {k: _map(v, env, clone) for k, v in a.items()}
    if isinstance(a, slice):
        return slice(_map(a.start, env), _map(a.stop, env), _map(a.step, env))
    return a


def _shares_storage(val, args, kwargs) -> bool:
    if not isinstance(val, torch.Tensor):
        return False
    ptr = val.untyped_storage().data_ptr()
    found = []

    def walk(a):
        if isinstance(a, torch.Tensor):
            found.append(a.untyped_storage().data_ptr() == ptr)
        elif isinstance(a, (list, tuple)):
            for v in a:
                walk(v)
        elif isinstance(a, dict):
            for v in a.values():
                walk(v)
    walk(args)
    walk(kwargs)
    return any(found)


def _inplace(nd, modules) -> bool:
    if nd.op == "call_module":
        return bool(getattr(modules[nd.target], "inplace", False))
    if nd.op == "call_method":
        return nd.target.endswith("_") and not nd.target.endswith("__")
    if nd.op == "call_function":
        return nd.target in _INPLACE_FUNCTIONS or nd.kwargs.get("inplace") is True
    return False


def _dirty_or_none(env, nd) -> _Dirty | None:
    v = env.get(nd)
    return v if isinstance(v, _Dirty) else None


def _pointwise_module(mod: nn.Module, clean_in) -> bool:
    """Layers that act on each position alone (in eval mode): the changed region stays."""
    if isinstance(mod, _POINTWISE_MODULES):
        return True
    if isinstance(mod, _DROPOUT):
        return not mod.training
    if isinstance(mod, nn.modules.batchnorm._BatchNorm):  # eval mode: a per-channel affine map
        return (not mod.training and mod.running_mean is not None
                and isinstance(clean_in, torch.Tensor) and clean_in.dim() == 4)
    return False


def _spatially_constant(v) -> bool:
    """A constant operand that broadcasts the same value to every position (a scalar or a
    per-channel vector), so that an elementwise op with it keeps the changed region."""
    if not isinstance(v, torch.Tensor):
        return isinstance(v, (int, float, bool)) or v is None
    return v.numel() == 1 or (v.dim() >= 2 and v.shape[-1] == 1 and v.shape[-2] == 1
                              and (v.dim() < 4 or v.shape[0] == 1))


def _spatial(mod: nn.Module):
    """((k, s, p, d) for y, the same for x, padding value, f(crop)) for conv/pool layers that
    the incremental engine computes on crops; None for anything else."""
    if type(mod) is nn.Conv2d:
        if mod.padding_mode != "zeros" or isinstance(mod.padding, str):
            return None
        k, s, p, d = mod.kernel_size, mod.stride, mod.padding, mod.dilation
        fn = lambda crop: F.conv2d(crop, mod.weight, mod.bias, s, 0, d, mod.groups)  # noqa: E731
        pad_value = 0.0
    elif type(mod) is nn.MaxPool2d:
        if mod.ceil_mode or mod.return_indices:
            return None
        k, p, d = mod.kernel_size, mod.padding, mod.dilation
        s = mod.stride if mod.stride is not None else k
        fn = lambda crop: F.max_pool2d(crop, k, s, 0, d)  # noqa: E731
        pad_value = -math.inf
    elif type(mod) is nn.AvgPool2d:
        padded = _axis(mod.padding, 0) + _axis(mod.padding, 1) > 0
        if mod.ceil_mode or (padded and not mod.count_include_pad):
            return None  # the divisor would depend on the position
        k, p = mod.kernel_size, mod.padding
        s = mod.stride if mod.stride is not None else k
        d = 1
        fn = lambda crop: F.avg_pool2d(  # noqa: E731
            crop, k, s, 0, ceil_mode=False, count_include_pad=True,
            divisor_override=mod.divisor_override)
        pad_value = 0.0
    else:
        return None
    return ((_axis(k, 0), _axis(s, 0), _axis(p, 0), _axis(d, 0)),
            (_axis(k, 1), _axis(s, 1), _axis(p, 1), _axis(d, 1)), pad_value, fn)


def _macs_per_output(mod: nn.Module) -> float:
    if isinstance(mod, nn.Conv2d):
        kh, kw = mod.kernel_size
        return float(mod.out_channels * (mod.in_channels // mod.groups) * kh * kw)
    if isinstance(mod, nn.Linear):
        return float(mod.in_features * mod.out_features)
    return 0.0


def _spatial_numel(t) -> int:
    return int(t.shape[-1] * t.shape[-2]) if isinstance(t, torch.Tensor) and t.dim() == 4 else 1


def _floordiv(a: torch.Tensor, b: int) -> torch.Tensor:
    return torch.div(a, b, rounding_mode="floor")


def _out_range(a: torch.Tensor, h: int, k: int, s: int, p: int, d: int, n_out: int):
    """Outputs ``[lo, hi]`` (per sample) whose window meets input rows ``[a, a + h)``."""
    lo = -_floordiv(-(a + p - d * (k - 1)), s)
    hi = _floordiv(a + h - 1 + p, s)
    return lo.clamp(min=0), hi.clamp(max=n_out - 1)


def _cap(lo: torch.Tensor, hi: torch.Tensor, n: int,
         tau: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per copy, the changed rows ``[lo, hi]`` (at least one), with `tau` at most
    ``ceil(tau * n)`` of them centred on the changed ones: Krypton's projective-field
    threshold, which ignores the changes outside."""
    hi = torch.maximum(hi, lo)
    if tau is not None:
        cap = max(1, math.ceil(tau * n))
        over = hi - lo + 1 > cap
        start = torch.round((lo + hi).double() / 2 - (cap - 1) / 2).long().clamp(0, n - cap)
        lo = torch.where(over, start, lo)
        hi = torch.where(over, start + cap - 1, hi)
    return lo, hi


def _fit(lo: torch.Tensor, hi: torch.Tensor, n: int) -> tuple[torch.Tensor, int]:
    """One rectangle size for the whole batch: starts ``(B,)`` and a size such that
    ``[start, start + size)`` holds every copy's ``[lo, hi]`` inside ``[0, n)``."""
    size = min(max(int((hi - lo + 1).max()), 1), n)
    start = torch.minimum(lo, torch.full_like(lo, n - size)).clamp(min=0)
    return start, size
