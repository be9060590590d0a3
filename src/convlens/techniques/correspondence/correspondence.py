"""How much spatial information a layer keeps: keypoint transfer by nearest neighbour in its
feature space (Long, Zhang & Darrell, "Do Convnets Learn Correspondence?", NIPS 2014;
METHODS.md §7).

For a keypoint ``p`` of image A and a layer ``l`` with receptive field ``(size, stride,
center)`` (`convlens.receptive`), the feature at ``p`` is ``A_l`` interpolated (bilinear) at
the cell coordinate ``u = (p - 0.5 - center) / stride``; the most similar cell ``j*`` of
``B_l`` (cosine similarity by default) maps back to pixels at ``center + j* stride + 0.5``.
The transfer is correct when ``||p_B - p*|| <= alpha * max(h, w)`` (PCK). Every layer is read
from one forward pass of each image, and the search is one batched matrix product per chunk of
pairs. The same procedure scores two baselines at each layer's receptive-field size: raw pixels
(the ``size x size`` patch around the point) and SIFT (OpenCV, the descriptor's 4x4 cells
spanning ``size`` pixels), both searched on a dense grid of B.

Cosine, not the raw Euclidean distance, is the default: a ReLU feature's length grows with
the local contrast, so with L2 a strong edge anywhere in B can be nearer than a weaker copy of
the right part; cosine is L2 on unit-length features (``metric="l2"`` gives the raw distance).
The paper matched conv4 features inside SIFT Flow (a smoothness prior on top of the descriptor
distance); METHODS.md asks for the plain nearest neighbour, which is what this measures.
"""
from __future__ import annotations

import sys
import warnings
from collections import Counter
from dataclasses import replace
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ...engine.settings import RunSettings, as_run
from ...errors import ConvlensError, unknown
from ...hooks import capture, preserved
from ...lens import as_batch, as_lens, lens_and_data
from ...receptive import Field
from .pairs import Pair, Pairs, inside, make_pairs
from .results import CorrespondenceResult

METRICS = ("cosine", "l2")
BASELINES = ("pixels", "sift")
SEARCHES = ("cells", "grid")


# ------------------------------------------------------------------------------------------
# geometry: pixels <-> cells of a layer
# ------------------------------------------------------------------------------------------
def to_cells(points: torch.Tensor, field: Field) -> torch.Tensor:
    """Continuous pixel points ``(..., 2)`` as ``(x, y)`` to fractional cell coordinates
    ``(u_x, u_y)`` of a layer: ``u = (p - 0.5 - center) / stride`` per axis."""
    c = points.new_tensor([field.center[1], field.center[0]])
    s = points.new_tensor([field.stride[1], field.stride[0]])
    return (points - 0.5 - c) / s


def to_pixels(index: torch.Tensor, width: int, field: Field) -> torch.Tensor:
    """Flat cell indices ``(...)`` of a map `width` cells wide to the continuous pixel point
    ``(x, y)`` at each cell's centre."""
    j, i = (index % width).double(), (index // width).double()
    return torch.stack([field.center[1] + j * field.stride[1] + 0.5,
                        field.center[0] + i * field.stride[0] + 0.5], -1)


def sample(maps: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Bilinear values of ``maps (P, C, H, W)`` at fractional cells ``(P, K, 2)`` (clamped to
    the map's edge); returns ``(P, K, C)``."""
    h, w = maps.shape[-2:]
    gx = 2 * cells[..., 0] / (w - 1) - 1 if w > 1 else torch.zeros_like(cells[..., 0])
    gy = 2 * cells[..., 1] / (h - 1) - 1 if h > 1 else torch.zeros_like(cells[..., 1])
    grid = torch.stack([gx, gy], -1).unsqueeze(2).to(maps.dtype)
    out = F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[..., 0].transpose(1, 2)


def squared_norms(keys: torch.Tensor) -> torch.Tensor:
    """``|k|^2`` of every key of ``keys (P, D, M)`` as ``(P, 1, M)``. Summing over the strided
    middle axis is memory-bound: for large maps a running ``addcmul_`` over the D rows reads the
    keys once without a temporary (several times faster than ``(k*k).sum(1)`` or
    ``vector_norm`` on CPU); small maps take the one-call form."""
    if keys.shape[2] < 512:
        return (keys * keys).sum(1, keepdim=True)
    acc = torch.zeros(keys.shape[0], keys.shape[2], dtype=keys.dtype, device=keys.device)
    for d in range(keys.shape[1]):
        acc.addcmul_(keys[:, d], keys[:, d])
    return acc.unsqueeze(1)


def nearest(queries: torch.Tensor, keys: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """Index of the nearest key for every query: ``queries (P, K, D)``, ``keys (P, D, M)``
    -> ``(P, K)``; one batched matrix product. Cosine: ``argmax q.k / |k|`` (``|q|`` is the
    same for every key, and the keys are not copied to normalise them); L2:
    ``argmin |k|^2 - 2 q.k`` (``|q|^2`` is the same for every key)."""
    dots = torch.bmm(queries, keys)
    sq = squared_norms(keys)
    if metric == "cosine":
        return (dots / sq.sqrt().clamp_min(1e-12)).argmax(2)
    return (sq - 2 * dots).argmin(2)


def grid_points(hw: tuple[int, int], step: int) -> np.ndarray:
    """Pixel centres `step` apart, from pixel 0: ``(M, 2)`` continuous ``(x, y)``, row-major."""
    ys, xs = np.mgrid[0:hw[0]:step, 0:hw[1]:step]
    return np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], 1)


def transfer_features(maps_a: torch.Tensor, maps_b: torch.Tensor, points: torch.Tensor,
                      field: Field, metric: str = "cosine",
                      grid: np.ndarray | None = None) -> torch.Tensor:
    """Keypoint transfer at one layer: ``maps_a, maps_b (P, C, H, W)``, points of A ``(P, K,
    2)`` -> predicted points of B ``(P, K, 2)`` (float64, continuous pixels). The candidates
    are B's cells; with `grid` (pixel points ``(M, 2)``), B's features interpolated there."""
    q = sample(maps_a, to_cells(points.to(maps_a.device, torch.float64), field))
    if grid is None:
        idx = nearest(q, maps_b.flatten(2), metric)
        return to_pixels(idx, maps_b.shape[-1], field).cpu()
    g = torch.from_numpy(grid).to(maps_b.device)
    keys = sample(maps_b, to_cells(g, field).expand(len(maps_b), -1, -1)).transpose(1, 2)
    return g[nearest(q, keys, metric)].cpu()


def transfer_patches(img_a: torch.Tensor, img_b: torch.Tensor, points: torch.Tensor, size: int,
                     step: int, metric: str = "cosine") -> torch.Tensor:
    """The pixel baseline: the ``size x size`` patch of A centred on each point (bilinear,
    zero outside), searched at every `step`-th position of B. ``img (P, C, H, W)``, points
    ``(P, K, 2)`` -> ``(P, K, 2)``. The dot products with every window of B are one grouped
    convolution (a batched matrix product without unfolding the windows)."""
    p, c, h, w = img_a.shape
    k = points.shape[1]
    off = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    sx = points[..., 0, None, None] + off[None, None, None, :]          # (P, K, 1, size)
    sy = points[..., 1, None, None] + off[None, None, :, None]          # (P, K, size, 1)
    grid = torch.stack([(2 * sx / w - 1).expand(-1, -1, size, size),
                        (2 * sy / h - 1).expand(-1, -1, size, size)], -1)
    grid = grid.reshape(p, k * size, size, 2).to(img_a)
    patches = F.grid_sample(img_a, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    q = patches.reshape(p, c, k, size, size).transpose(1, 2)           # (P, K, C, s, s)
    pad = size // 2
    dots = _window_dots(img_b, q, step, pad).reshape(p, k, -1)
    sq = F.avg_pool2d((img_b * img_b).sum(1, keepdim=True), size, step, pad,
                      count_include_pad=True) * (size * size)
    gw = sq.shape[-1]
    sq = sq.reshape(p, 1, -1)
    if metric == "cosine":
        qn = q.flatten(2).norm(dim=2, keepdim=True)
        idx = (dots / (qn * sq.clamp_min(0).sqrt()).clamp_min(1e-12)).argmax(2)
    else:
        idx = (sq - 2 * dots).argmin(2)
    first = -pad + (size - 1) / 2 + 0.5  # centre of window 0, continuous pixels
    j, i = (idx % gw).double(), (idx // gw).double()
    return torch.stack([first + j * step, first + i * step], -1).cpu()


def _window_dots(img_b: torch.Tensor, q: torch.Tensor, step: int, pad: int) -> torch.Tensor:
    """Dot products of each query patch ``q (P, K, C, s, s)`` with every `step`-th window of
    its image ``img_b (P, C, H, W)``, zero-padded by `pad`: ``(P, K, oh, ow)``. A grouped
    convolution; where the patch is larger than the image (a deep layer's receptive field),
    CPU convolution slows down by two orders of magnitude (435 px on 224 px: 270 s against
    6 s for 211 px), so there the same sums are taken by FFT cross-correlation, in float64."""
    p, k, c, s, _ = q.shape
    h, w = img_b.shape[-2:]
    if s <= min(h, w):
        return F.conv2d(img_b.reshape(1, p * c, h, w), q.reshape(p * k, c, s, s),
                        stride=step, padding=pad, groups=p).reshape(p, k, -1)
    oh, ow = (h + 2 * pad - s) // step + 1, (w + 2 * pad - s) // step + 1
    fh, fw = h + s - 1, w + s - 1
    # full[t] = sum_i q[i] B[t - (s - 1) + i]; window o starts at B row o * step - pad
    ys = torch.arange(oh) * step - pad + s - 1
    xs = torch.arange(ow) * step - pad + s - 1
    out = []
    for i in range(p):  # one pair at a time bounds the memory to K * C spectra
        fb = torch.fft.rfft2(img_b[i].double(), s=(fh, fw))
        fq = torch.fft.rfft2(q[i].double().flip(-1, -2), s=(fh, fw))
        full = torch.fft.irfft2((fb * fq).sum(1), s=(fh, fw))
        out.append(full[:, ys][:, :, xs].to(img_b.dtype))
    return torch.stack(out)


def _sift():
    try:
        import cv2
        return cv2.SIFT_create()
    except (ImportError, AttributeError) as e:
        warnings.warn(f"the SIFT baseline needs OpenCV (pip install opencv-python-headless): {e}; "
                      "scoring without it", stacklevel=3)
        return None


def _sift_descriptors(sift, grey: np.ndarray, points: np.ndarray, size: float) -> np.ndarray | None:
    """SIFT descriptors ``(K, 128)`` at continuous points (OpenCV's pixel centres are integer:
    ``x - 0.5``), upright (angle 0), keypoint size `size`; None if OpenCV drops any."""
    import cv2
    kps = [cv2.KeyPoint(float(x) - 0.5, float(y) - 0.5, float(size), 0.0) for x, y in points]
    kps_out, desc = sift.compute(grey, kps)
    if desc is None or len(kps_out) != len(kps):
        return None
    return desc.astype(np.float32)


def transfer_sift(sift, grey_a: list[np.ndarray], grey_b: list[np.ndarray], points: np.ndarray,
                  mask: np.ndarray, size: int, step: int, metric: str = "cosine") -> torch.Tensor:
    """The SIFT baseline: descriptors at A's points and on B's grid of pixel centres `step`
    apart, keypoint size ``size / 6`` so that the descriptor's 4x4 cells (3 sigma each, OpenCV)
    span the receptive field; nearest neighbour as for features. NaN where OpenCV failed."""
    grid = grid_points(grey_b[0].shape, step)
    out = torch.full(points.shape, float("nan"), dtype=torch.float64)
    kp_size = max(size / 6.0, 0.5)
    for p in range(len(grey_a)):
        da = _sift_descriptors(sift, grey_a[p], points[p][mask[p]], kp_size)
        db = _sift_descriptors(sift, grey_b[p], grid, kp_size)
        if da is None or db is None:
            continue
        idx = nearest(torch.from_numpy(da)[None], torch.from_numpy(db).T[None], metric)[0]
        out[p, torch.from_numpy(mask[p])] = torch.from_numpy(grid[idx.numpy()])
    return out


# ------------------------------------------------------------------------------------------
# the technique
# ------------------------------------------------------------------------------------------
def spatial_layers(lens, layers: str | Sequence[str] | None) -> list:
    """`LayerInfo` of each layer asked for (default: every ReLU with a spatial map whose cells
    can be placed in the image), checked: an unknown name, a layer without a spatial map or
    without a local receptive field is a one-line error. A cell is placed by its **local**
    field: after a squeeze-excitation gate or global attention that is the field of the spatial
    path (`Field.global_context` says the cell also depends on the whole image). The default
    leaves out the layers that have none: quietly a map pooled to one cell (a squeeze-excitation
    gate's), with a warning any other."""
    from ...lens import default_layers

    if layers is None:
        names = default_layers(lens, spatial_only=True)
        infos = {i.name: i for i in lens.layers(fields=names)}
        placed = [n for n in names if infos.get(n) is not None and _placeable(infos[n].field)]
        if names and not placed:
            raise ConvlensError(f"none of the {len(names)} default layers has a local receptive "
                                "field (`convlens layers` shows 'global' or '?'), so no cell can "
                                "be placed in the image: name layers with layers=[...] / --layers")
        odd = [n for n in names if n not in placed and not _pooled(infos.get(n))]
        if odd:
            warnings.warn(f"correspondence: {len(odd)} of the {len(names)} default layers have "
                          f"no local receptive field (`convlens layers` shows 'global' or '?': "
                          f"{', '.join(odd[:3])}{' ...' if len(odd) > 3 else ''}) and are left "
                          f"out; scoring {', '.join(placed[:4])}"
                          + (" ..." if len(placed) > 4 else ""), RuntimeWarning, stacklevel=3)
        names = placed
    else:
        names = [layers] if isinstance(layers, str) else list(dict.fromkeys(layers))
        infos = {i.name: i for i in lens.layers(fields=names)}
    out = []
    for name in names:
        lens.layer(name)  # unknown name: error naming the close matches
        info = infos.get(name)
        if info is None or info.shape is None or info.grid is None:
            raise ConvlensError(f"layer {name!r} has no spatial map (output "
                                f"{'?' if info is None else info.shape}): correspondence needs "
                                "a (C, H, W) layer, or tokens on the image's grid")
        f = info.field
        if not _placeable(f):
            shown = "global" if f is not None and f.is_global else "?"
            raise ConvlensError(f"layer {name!r} has no local receptive field (`convlens layers` "
                                f"shows {shown!r}: it sees the image only through a global "
                                "pooling), so its cells cannot be placed in the image")
        out.append(info)
    if not out:
        raise ConvlensError("no spatial layer to score: name some with layers=[...]")
    return out


def _placeable(f: Field | None) -> bool:
    """Whether cells with field `f` have a place in the image: a local field with a stride."""
    return f is not None and not f.is_global and f.stride is not None and f.center is not None


def _pooled(info) -> bool:
    """A map of one cell that sees the image only through a global pooling (an SE gate's)."""
    return (info is not None and info.field is not None and info.field.is_global
            and info.grid is not None and info.grid[1] * info.grid[2] == 1)


def _pad_points(pairs: list[Pair]) -> tuple[torch.Tensor, np.ndarray]:
    """Points of A ``(P, Kmax, 2)`` (padded with the first point) and the mask of real ones."""
    k = max(len(p.points_a) for p in pairs)
    pts = np.zeros((len(pairs), k, 2))
    mask = np.zeros((len(pairs), k), dtype=bool)
    for i, p in enumerate(pairs):
        n = len(p.points_a)
        pts[i, :n], pts[i, n:], mask[i, :n] = p.points_a, p.points_a[0], True
    return torch.from_numpy(pts), mask


def _clean(pair: Pair | str, shape) -> Pair | str:
    """Re-check a pair (hand-made pairs too): same image size as the rest, points inside."""
    if isinstance(pair, str):
        return pair
    if tuple(pair.image_a.shape) != shape or tuple(pair.image_b.shape) != shape:
        return "image of another size than the model's input"
    ok = inside(pair.points_a, shape[-2:]) & inside(pair.points_b, shape[-2:])
    if not ok.any():
        return "no keypoint inside both images"
    if not ok.all():  # a trimmed copy: the caller's pair stays as it was
        dropped = Counter(pair.dropped)
        dropped["keypoint outside the image"] += int((~ok).sum())
        pair = replace(pair, points_a=pair.points_a[ok], points_b=pair.points_b[ok],
                       names=[n for n, k in zip(pair.names, ok) if k], dropped=dropped)
    return pair


def correspondence(lens, pairs: str | Pairs | Sequence[Pair] = "warp",
                   layers: str | Sequence[str] | None = None, alpha: float = 0.1, *,
                   data=None, n: int = 100, metric: str = "cosine",
                   baselines: Sequence[str] = BASELINES, step: int | None = None,
                   search: str = "cells", warp: str = "affine", close: dict | None = None,
                   points: int = 8, seed: int = 0, chunk: int = 32, examples: int = 4,
                   run: RunSettings | None = None) -> CorrespondenceResult:
    """Keypoint transfer by nearest neighbour at each layer, scored by PCK against pixels and
    SIFT (Long, Zhang & Darrell 2014).

    Args:
        lens: a `Lens` or an ``nn.Module``.
        pairs: ``"warp"`` (items of `data` and random warps), ``"intraclass"`` (two items of a
            class with the same keypoint names), a pairs file (columns ``a``, ``b``), or a
            `Pairs` or list of `Pair` (used whole; `data` and `n` are then not needed).
        layers: layer names (default: every ReLU with a spatial map).
        alpha: a transfer is correct within ``alpha * max(h, w)`` pixels of the true point.
        data: a dataset or data spec, for the string forms of `pairs`; `n` pairs from it.
        metric: ``"cosine"`` (default) or ``"l2"``, for features and both baselines.
        baselines: any of ``"pixels"``, ``"sift"``; step: their grid in B (default
            ``max(1, round(max(h, w) / 32))`` px).
        search: where features are looked for in B: ``"cells"`` (the layer's own grid, as the
            method defines it; its stride bounds the precision) or ``"grid"`` (B's features
            interpolated on the baselines' grid, to compare descriptors at one precision).
        warp, points, close, seed: passed to `warp_pairs` / `intraclass_pairs`.
        chunk: pairs per pass (memory); examples: pairs drawn.
        run: how to run (`RunSettings`): its ``batch_size`` (images per forward call, default
            64) and ``progress`` (a progress bar) are used.

    Returns a `CorrespondenceResult`: ``.pck`` (per method and layer, with bootstrap 95 %
    intervals over pairs), ``.transfers`` (every keypoint), the PCK-by-depth plot and example
    pairs.

    Example::

        res = correspondence(lens, "intraclass", data="builtin:shapes", n=200)
        res.pck[["method", "layer", "pck", "ci_low", "ci_high"]]
    """
    run = as_run(run)
    if metric not in METRICS:
        raise unknown("metric", metric, METRICS)
    if search not in SEARCHES:
        raise unknown("search", search, SEARCHES)
    if not 0 < alpha:
        raise ConvlensError(f"alpha must be positive, got {alpha}")
    for b in baselines:
        if b not in BASELINES:
            raise unknown("baseline", b, BASELINES)
    if isinstance(pairs, (Pairs, list, tuple)):
        pairs = pairs if isinstance(pairs, Pairs) else Pairs.of(pairs)
        if not len(pairs):
            raise ConvlensError("no pairs given")
        first = next((p for p in (pairs[i] for i in range(len(pairs))) if isinstance(p, Pair)),
                     None)
        if first is None:
            raise ConvlensError("none of the given pairs is usable")
        lens = as_lens(lens, first.image_a)
    else:
        if data is None:
            raise ConvlensError(f"pairs={pairs!r} needs data (a dataset or a data spec)")
        lens, data = lens_and_data(lens, data)
        pairs = make_pairs(pairs, data, n=n, seed=seed, warp=warp, close=close, points=points)
    infos = spatial_layers(lens, layers)
    sift = _sift() if "sift" in baselines else None
    feat = "features" if search == "cells" else "features_grid"
    methods = [feat] + [b for b in baselines if b != "sift" or sift is not None]
    shape = tuple(lens.input_size)
    step = step or max(1, round(max(shape[-2:]) / 32))
    grid = grid_points(shape[-2:], step) if search == "grid" else None

    rows: list[dict[str, np.ndarray]] = []
    skipped, dropped = Counter(pairs.skipped), Counter()
    shown: list[tuple[int, np.ndarray, np.ndarray, str]] = []
    model = lens.model
    bar = range(0, len(pairs), chunk)
    if run.progress:
        from tqdm.auto import tqdm
        bar = tqdm(bar, desc="correspondence", unit="chunk", file=sys.stderr, leave=False)
    with preserved(model), torch.no_grad():
        model.eval()
        for start in bar:
            ids, good = [], []
            for i in range(start, min(start + chunk, len(pairs))):
                pr = _clean(pairs[i], shape)
                if isinstance(pr, str):
                    skipped[pr] += 1
                    continue
                dropped.update(pr.dropped)
                ids.append(i)
                good.append(pr)
            if not good:
                continue
            maps, ia, ib, xs = _forward(lens, good, [i.name for i in infos], run.batch_size)
            pts, mask = _pad_points(good)
            preds: dict[tuple[str, str], torch.Tensor] = {}
            for info in infos:
                m = maps[info.name]
                preds[feat, info.name] = transfer_features(m[ia], m[ib], pts, info.field, metric,
                                                           grid)
            size_of = {info.name: int(max(info.field.size)) for info in infos}
            # a baseline depends on the layer only through its field size: once per size
            done: dict[tuple[str, int], torch.Tensor] = {}
            grey = None
            for info in infos:
                size = size_of[info.name]
                if "pixels" in methods:
                    if ("pixels", size) not in done:
                        done["pixels", size] = transfer_patches(xs[ia], xs[ib], pts, size, step,
                                                                metric)
                    preds["pixels", info.name] = done["pixels", size]
                if "sift" in methods:
                    if grey is None:
                        grey = (lens.to_unit(xs).mean(1) * 255 + 0.5).clamp(0, 255).byte()
                        grey = grey.cpu().numpy()
                    if ("sift", size) not in done:
                        done["sift", size] = transfer_sift(
                            sift, [grey[j] for j in ia.tolist()], [grey[j] for j in ib.tolist()],
                            pts.numpy(), mask, size, step, metric)
                    preds["sift", info.name] = done["sift", size]
            for (method, layer), pred in preds.items():
                rows.append(_rows(method, layer, ids, good, pred.numpy(), mask))
            for i, pr in zip(ids, good):
                if len(shown) < examples:
                    shown.append((i, _display(lens, pr.image_a), _display(lens, pr.image_b),
                                  pr.title))
    if not rows:
        raise ConvlensError(f"no usable pair among {len(pairs)} ({dict(skipped)})")
    transfers = pd.concat([pd.DataFrame(r) for r in rows], ignore_index=True)
    transfers["correct"] = transfers.error <= alpha * transfers.ref
    layer_table = pd.DataFrame([{"layer": i.name, "depth": d, "rf_size": int(max(i.field.size)),
                                 "stride": int(max(i.field.stride)),
                                 "shape": "x".join(map(str, i.shape))}
                                for d, i in enumerate(infos)])
    params = {"alpha": alpha, "metric": metric, "pairs": pairs.kind, "pairs_params": pairs.params,
              "baselines": methods[1:], "step": step, "search": search, "seed": seed,
              "model": lens.name, "input_size": list(shape),
              "data": getattr(data, "spec", None) if data is not None else None}
    return CorrespondenceResult(transfers, layer_table, params, dict(skipped), dict(dropped),
                                **CorrespondenceResult.example_fields(shown), seed=seed)


def _forward(lens, good: list[Pair], names: list[str], batch_size: int):
    """One forward pass per distinct image of the chunk; ``(maps, ia, ib, images)``: maps per
    layer ``(U, C, H, W)`` and each pair's row of A and of B among the U images."""
    slot: dict[Any, int] = {}
    images: list[torch.Tensor] = []

    def place(key, img) -> int:
        if key is not None and key in slot:
            return slot[key]
        images.append(img)
        if key is not None:
            slot[key] = len(images) - 1
        return len(images) - 1

    ia = torch.tensor([place(("item", p.key_a) if p.key_a is not None else None, p.image_a)
                       for p in good])
    ib = torch.tensor([place(("item", p.key_b) if p.key_b is not None else None, p.image_b)
                       for p in good])
    x = as_batch(lens, torch.stack(images))
    maps: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    with capture(lens, names) as cap:
        for s in range(0, len(x), batch_size):
            lens(x[s:s + batch_size])
            for n in names:
                maps[n].append(cap[n])
            cap.clear()
    return {n: torch.cat(v) for n, v in maps.items()}, ia, ib, x


def _rows(method: str, layer: str, ids: list[int], good: list[Pair], pred: np.ndarray,
          mask: np.ndarray) -> dict[str, np.ndarray]:
    """Table columns for one method and layer over a chunk (real keypoints only)."""
    pair = np.concatenate([[i] * len(p.names) for i, p in zip(ids, good)])
    pa = np.concatenate([p.points_a for p in good])
    pb = np.concatenate([p.points_b for p in good])
    pr = pred[mask]
    return {"method": np.array([method] * len(pair)), "layer": np.array([layer] * len(pair)),
            "pair": pair, "name": np.concatenate([p.names for p in good]),
            "x_a": pa[:, 0], "y_a": pa[:, 1], "x_b": pb[:, 0], "y_b": pb[:, 1],
            "x_pred": pr[:, 0], "y_pred": pr[:, 1],
            "error": np.hypot(pr[:, 0] - pb[:, 0], pr[:, 1] - pb[:, 1]),
            "ref": np.concatenate([[p.ref] * len(p.names) for p in good])}


def _display(lens, image: torch.Tensor) -> np.ndarray:
    from ...draw import image_hwc
    return image_hwc(lens.to_unit(image.detach().cpu()).numpy())
