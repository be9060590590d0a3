"""t-SNE of CNN codes: a scatter of thumbnails and an image grid (METHODS.md §3).

The code of an image is the vector the classifier reads: the input of the model's last
``nn.Linear`` (AlexNet's fc7 after its ReLU; ``classifier.6`` in the built-in nets). The codes
are reduced by PCA to 50 dimensions and embedded in 2-D with openTSNE (FFT-accelerated
gradients; van der Maaten & Hinton 2008, https://jmlr.org/papers/v9/vandermaaten08a.html;
Linderman et al. 2019). Karpathy's CNN-code pictures
(https://cs.stanford.edu/people/karpathy/cnnembed/) show the images at their embedded positions
and snapped to a grid; the grid here is a linear assignment (Jonker-Volgenant, scipy's
`linear_sum_assignment`) of images to cells that minimises the total squared move.

Every run also measures the embedding: leave-one-out kNN label accuracy (k = 10) in 2-D and in
code space, and trustworthiness (Venna & Kaski 2001) of the 2-D neighbourhoods.

This module imports torch only inside `cnn_codes`; computing from saved codes and drawing do
not need it. Example::

    codes = cnn_codes(lens, data, n=5000)          # runs the model
    res = tsne_grid(codes)                          # or tsne_grid(array, images, labels=...)
    res.save("out/tsne", lens)                      # scatter.png, grid.png, embedding.parquet
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from ..errors import ConvlensError
from ..results import Result, as_numpy

#: the grid's default side (cells per row and column)
GRID_SIDE = 50
#: a grid with more cells than this is assigned hierarchically, block by block
EXACT_MAX_CELLS = 2500
#: block side of the hierarchical assignment (32 x 32 = 1024 cells per exact problem)
BLOCK_SIDE = 32
#: openTSNE options convlens changes. Boxes of 2 units: the grid of the FFT interpolation has a
#: quarter of the nodes once a 10k embedding spans ~120 units, and the whole t-SNE took a third
#: of the CPU time (10.9 s against 34.8 s, fashion-net codes of the 10k test images) with the
#: same kNN accuracy (0.920 against 0.919) and trustworthiness (0.9966 against 0.9967)
FFT_OPTIONS: dict[str, Any] = {"ints_in_interval": 2}
#: with more than this many candidates per cell, "nearest" selection samples candidates first
CANDIDATES_PER_CELL = 2

Thumbs = Callable[[np.ndarray], np.ndarray]


# ------------------------------------------------------------------------------------------
# codes from a model (the only part that needs torch)
# ------------------------------------------------------------------------------------------
@dataclass
class Codes:
    """CNN codes of a set of images, with what is known about each image.

    ``codes`` ``(N, D)`` float32; ``index`` ``(N,)`` dataset indices; ``label`` ``(N,)`` (-1:
    none); ``pred`` ``(N,)``; ``p_pred`` ``(N,)`` softmax probability of the prediction;
    ``thumbnails`` ``(N, h, w)`` or ``(N, h, w, 3)`` uint8; ``classes`` the class names.
    """

    codes: np.ndarray
    index: np.ndarray
    label: np.ndarray
    pred: np.ndarray | None = None
    p_pred: np.ndarray | None = None
    thumbnails: np.ndarray | Thumbs | None = None
    classes: list[str] | None = None
    layer: str = ""
    meta: pd.DataFrame | None = None


def code_layer(lens) -> str:
    """The name of the model's last ``nn.Linear``: its input is the CNN code."""
    from torch import nn

    from ..hooks import model_of

    linears = [n for n, m in model_of(lens).named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConvlensError("the model has no nn.Linear, so there is no code to take "
                            "automatically: name a layer with --layer NAME")
    return linears[-1]


def cnn_codes(lens, data, n: int | None = None, layer: str = "auto", batch_size: int = 64,
              workers: int = 0, seed: int = 0, thumb: int = 32, progress: bool = True) -> Codes:
    """Run `data` through `lens` and keep each image's code, prediction and a thumbnail.

    Args:
        lens: a `Lens`.
        data: a convlens dataset (preprocessed for `lens`).
        n: how many images; a seeded random sample of the dataset when smaller than it
            (``None`` or 0: all).
        layer: ``"auto"``: the input of the last ``nn.Linear`` (the code after its ReLU);
            or a module name whose output, flattened, is the code.
        thumb: thumbnails larger than this are scaled down to it (antialiased).

    Returns `Codes`; ``codes`` is ``(N, D)`` float32.
    """
    import torch
    import torch.nn.functional as F

    from ..data import Loader
    from ..hooks import capture, capture_inputs, preserved

    if data.lens is None:
        data.with_lens(lens)
    total = len(data)
    indices = None
    if n and n < total:
        indices = np.sort(np.random.default_rng(seed).choice(total, n, replace=False)).tolist()
    linear = code_layer(lens) if layer == "auto" else None
    name = linear or layer
    codes, index, label, pred, p_pred, thumbs = [], [], [], [], [], []
    with torch.no_grad(), preserved(lens):
        lens.eval()
        hooks = capture_inputs(lens, linear) if linear else capture(lens, layer)
        with hooks as got:
            for batch in Loader(data, batch_size=batch_size, workers=workers,
                                progress=progress, desc="codes", indices=indices):
                logits = lens(batch.images)
                codes.append(got[name].flatten(1).float().cpu().numpy())
                prob = logits.float().softmax(1)
                pp, pk = prob.max(1)
                index.append(batch.indices.numpy())
                label.append(batch.labels.numpy())
                pred.append(pk.numpy())
                p_pred.append(pp.numpy())
                img = lens.to_unit(batch.images).float()
                if max(img.shape[-2:]) > thumb:
                    h, w = img.shape[-2:]
                    s = thumb / max(h, w)
                    img = F.interpolate(img, size=(max(1, round(h * s)), max(1, round(w * s))),
                                        mode="bilinear", antialias=True, align_corners=False)
                img = (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
                thumbs.append(img[..., 0] if img.shape[-1] == 1 else img)
    if not codes:
        raise ConvlensError("no readable images in the data")
    return Codes(np.concatenate(codes), np.concatenate(index), np.concatenate(label),
                 np.concatenate(pred), np.concatenate(p_pred), np.concatenate(thumbs),
                 classes=lens.labels or getattr(data, "classes", None),
                 layer=f"input of {linear}" if linear else layer)


# ------------------------------------------------------------------------------------------
# the embedding and its quality
# ------------------------------------------------------------------------------------------
def pca(x: np.ndarray, dims: int = 50, seed: int = 0) -> np.ndarray:
    """The first `dims` principal components of ``x`` ``(N, D)`` (fewer if D or N is smaller)."""
    from sklearn.decomposition import PCA

    dims = min(dims, x.shape[1], x.shape[0])
    if dims >= x.shape[1]:
        return x - x.mean(0)
    return PCA(dims, random_state=seed).fit_transform(x).astype(np.float32)


def tsne(x: np.ndarray, perplexity: float = 30.0, seed: int = 0, n_jobs: int = 1,
         **kwargs) -> np.ndarray:
    """2-D t-SNE of ``x`` ``(N, D)`` with openTSNE's FFT gradients; ``(N, 2)`` float32.

    The perplexity is lowered to ``(N - 1) / 3`` for small N (openTSNE's limit). `kwargs` go to
    ``openTSNE.TSNE``. One default differs from openTSNE's: ``ints_in_interval=2`` (the FFT
    interpolation boxes are 2 embedding units wide, not 1), see `FFT_OPTIONS`.
    """
    from openTSNE import TSNE

    perplexity = min(perplexity, (len(x) - 1) / 3)
    emb = TSNE(n_components=2, perplexity=perplexity, negative_gradient_method="fft",
               random_state=seed, n_jobs=n_jobs, **{**FFT_OPTIONS, **kwargs}).fit(
        np.asarray(x, dtype=np.float32))
    return np.asarray(emb, dtype=np.float32)


def _sample(n: int, m: int | None, seed: int) -> np.ndarray:
    """All of ``range(n)``, or a sorted seeded sample of `m` of them."""
    if m is None or n <= m:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, m, replace=False))


def knn_accuracy(x: np.ndarray, labels: np.ndarray, k: int = 10, max_queries: int | None = 10000,
                 seed: int = 0, n_jobs: int = 1) -> float:
    """Leave-one-out k-nearest-neighbour label accuracy of points ``x`` ``(N, D)``.

    Each labelled point's label is predicted by the majority of its `k` nearest other points
    (Euclidean; a tie goes to the class whose neighbours rank nearer: the larger sum of
    k - rank). With more than `max_queries` labelled points, a seeded sample of that many is
    scored against all points. Unlabelled points (label < 0) vote but are not scored. NaN
    without labelled points.
    """
    from sklearn.neighbors import NearestNeighbors

    labels = np.asarray(labels)
    scored = np.flatnonzero(labels >= 0)
    if len(scored) < 2:
        return float("nan")
    k = min(k, len(x) - 1)
    q = scored[_sample(len(scored), max_queries, seed)]
    algorithm = "kd_tree" if x.shape[1] <= 3 else "brute"
    nn_ = NearestNeighbors(n_neighbors=k + 1, algorithm=algorithm, n_jobs=n_jobs).fit(x)
    idx = nn_.kneighbors(x[q], return_distance=False)
    # drop each query itself (or, among exact duplicates, the farthest neighbour)
    own = idx == q[:, None]
    drop = np.where(own.any(1), own.argmax(1), k)
    keep = np.ones_like(idx, dtype=bool)
    keep[np.arange(len(q)), drop] = False
    idx = idx[keep].reshape(len(q), k)
    votes = labels[idx]
    n_cls = int(labels.max()) + 1
    # weight 1 per vote, plus a tie-breaker smaller than one vote for nearer neighbours
    w = 1.0 + (k - np.arange(k)) / (k * (k + 1.0))
    score = np.zeros((len(q), n_cls))
    valid = votes >= 0
    rows = np.broadcast_to(np.arange(len(q))[:, None], votes.shape)
    np.add.at(score, (rows[valid], votes[valid]), np.broadcast_to(w, votes.shape)[valid])
    return float((score.argmax(1) == labels[q]).mean())


def trustworthiness(x: np.ndarray, emb: np.ndarray, k: int = 10, max_points: int | None = 2000,
                    seed: int = 0) -> tuple[float, int]:
    """Trustworthiness of the embedding's `k`-neighbourhoods (scikit-learn), and the points used.

    It needs all pairwise distances, so with more than `max_points` points it is computed on a
    seeded sample of that many (neighbourhoods among the sample).
    """
    from sklearn.manifold import trustworthiness as _trust

    s = _sample(len(x), max_points, seed)
    if len(s) < 4:
        return float("nan"), len(s)
    k = min(k, (len(s) - 1) // 2)
    return float(_trust(x[s], emb[s], n_neighbors=k)), len(s)


# ------------------------------------------------------------------------------------------
# the grid: a linear assignment of images to cells
# ------------------------------------------------------------------------------------------
def grid_positions(emb: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The embedding scaled so that it spans the grid: ``(N, 2)`` as (row, col), in cell units."""
    e = np.asarray(emb, dtype=np.float64)
    lo, hi = e.min(0), e.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    u = (e - lo) / span
    return np.stack([u[:, 1] * rows, u[:, 0] * cols], 1)  # y -> row, x -> column


def _cells(rows: int, cols: int) -> np.ndarray:
    r, c = np.mgrid[0:rows, 0:cols]
    return np.stack([r.ravel() + 0.5, c.ravel() + 0.5], 1)


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def _exact(pos: np.ndarray, points: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Optimal pairs (point, cell) between `points` and `cells` (indices into pos / the cells
    array); the smaller side is fully matched."""
    from scipy.optimize import linear_sum_assignment

    cost = _sqdist(pos[points], cells)
    if len(points) <= len(cells):
        r, c = linear_sum_assignment(cost)
        return points[r], c
    c, r = linear_sum_assignment(cost.T)  # more points than cells: each cell takes one
    return points[r], c


def _split(counts_of: np.ndarray, n: int) -> np.ndarray:
    """Split `n` items over parts with capacities `counts_of`, proportionally (largest
    remainder), never above a capacity."""
    total = counts_of.sum()
    if n >= total:
        return counts_of.copy()
    share = counts_of * (n / total)
    out = np.floor(share).astype(int)
    rest = n - out.sum()
    out[np.argsort(-(share - out), kind="stable")[:rest]] += 1
    return out


def _hierarchical(pos: np.ndarray, points: np.ndarray, rows: int, cols: int,
                  block: int) -> tuple[np.ndarray, np.ndarray]:
    """Balanced split into blocks of about block x block cells, then an exact assignment in
    each: points sorted by row are cut into bands of block rows, each band's points sorted by
    column are cut into blocks, as many points per block as it has cells (proportionally
    fewer when there are fewer points than cells)."""
    pts_out, cell_out = [], []
    band_edges = list(range(0, rows, block)) + [rows]
    col_edges = list(range(0, cols, block)) + [cols]
    band_cap = np.array([(b1 - b0) * cols for b0, b1 in zip(band_edges, band_edges[1:])])
    band_n = _split(band_cap, len(points))
    order = points[np.argsort(pos[points, 0], kind="stable")]
    start = 0
    for (r0, r1), nb in zip(zip(band_edges, band_edges[1:]), band_n):
        band = order[start:start + nb]
        start += nb
        cap = np.array([(r1 - r0) * (c1 - c0) for c0, c1 in zip(col_edges, col_edges[1:])])
        blk_n = _split(cap, len(band))
        band = band[np.argsort(pos[band, 1], kind="stable")]
        s = 0
        for (c0, c1), nk in zip(zip(col_edges, col_edges[1:]), blk_n):
            pts = band[s:s + nk]
            s += nk
            if not len(pts):
                continue
            rr, cc = np.mgrid[r0:r1, c0:c1]
            cells = np.stack([rr.ravel() + 0.5, cc.ravel() + 0.5], 1)
            p, c = _exact(pos, pts, cells)
            pts_out.append(p)
            cell_out.append(rr.ravel()[c] * cols + cc.ravel()[c])
    return np.concatenate(pts_out), np.concatenate(cell_out)


def grid_assign(emb: np.ndarray, rows: int, cols: int, select: str = "nearest", seed: int = 0,
                exact_max: int = EXACT_MAX_CELLS,
                block: int = BLOCK_SIDE) -> tuple[np.ndarray, str]:
    """Snap points to a rows x cols grid by the assignment that minimises the total squared
    move ``sum ||p_i - cell(i)||^2`` (the embedding scaled to span the grid, cells 1 apart).

    Args:
        emb: ``(N, 2)`` positions.
        select: with more points than cells, which images the grid shows:
            ``"nearest"``: the assignment also chooses them, each cell taking a distinct image
            near it (Karpathy's grid; the regions of the map get cells by area, so dense
            clusters show a smaller share of their images). Beyond 2 candidates per cell a
            seeded random sample of 2 per cell is the candidate set (the assignment's time
            grows fast with it: 2500 cells x 10000 images took 3x longer than x 5000).
            ``"sample"``: a seeded uniform sample of rows x cols images (classes get cells by
            their share of the images), then assigned.
        exact_max: grids with more cells are solved hierarchically: a balanced split of the
            points into blocks of `block` x `block` cells (by row, then by column), then an
            exact assignment inside each block; the points are a uniform sample there.

    Returns ``(grid, method)``: ``grid`` ``(rows, cols)`` int64 holds the row in `emb` of the
    point in each cell, -1 where empty (fewer points than cells); every point appears at most
    once. `method` says how it was solved.
    """
    if select not in ("nearest", "sample"):
        raise ConvlensError(f"select must be 'nearest' or 'sample', got {select!r}")
    n, m = len(emb), rows * cols
    if rows < 1 or cols < 1:
        raise ConvlensError(f"the grid needs at least one row and column, got {rows}x{cols}")
    pos = grid_positions(emb, rows, cols)
    rng_seed = seed + 1  # not the sample the metrics use
    if m > exact_max:
        points = _sample(n, m, rng_seed)
        p, c = _hierarchical(pos, points, rows, cols, block)
        method = f"hierarchical ({block}x{block} blocks)" + (", uniform sample" if n > m else "")
    else:
        if n > m and select == "sample":
            points, how = _sample(n, m, rng_seed), "uniform sample"
        elif n > m:
            points, how = _sample(n, CANDIDATES_PER_CELL * m, rng_seed), "nearest images"
            if n > CANDIDATES_PER_CELL * m:
                how += f" among {len(points)} sampled"
        else:
            points, how = np.arange(n), ""
        p, c = _exact(pos, points, _cells(rows, cols))
        method = "exact" + (f", {how}" if how else "")
    grid = np.full(m, -1, dtype=np.int64)
    grid[c] = p
    return grid.reshape(rows, cols), method


def grid_cost(emb: np.ndarray, grid: np.ndarray) -> float:
    """Total squared move (in cell units) of the points placed in `grid`."""
    rows, cols = grid.shape
    pos = grid_positions(emb, rows, cols)
    r, c = np.nonzero(grid >= 0)
    target = np.stack([r + 0.5, c + 0.5], 1)
    return float(((pos[grid[r, c]] - target) ** 2).sum())


# ------------------------------------------------------------------------------------------
# the technique
# ------------------------------------------------------------------------------------------
def _grid_shape(grid, n: int) -> tuple[int, int]:
    if grid is None:
        side = max(1, min(GRID_SIDE, int(np.sqrt(n))))
        return side, side
    if isinstance(grid, (int, np.integer)):
        return int(grid), int(grid)
    rows, cols = grid
    return int(rows), int(cols)


def _blas_threads(n_jobs: int):
    """A context limiting BLAS/OpenMP threads to `n_jobs` (no limit for -1)."""
    import contextlib

    if n_jobs is None or n_jobs < 1:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits
    return threadpool_limits(n_jobs)


def _thumb_source(images, n: int) -> Thumbs | None:
    """A function rows -> uint8 thumbnails ``(len(rows), h, w[, 3])`` from what was given."""
    if images is None:
        return None
    if callable(images):
        return images
    a = as_numpy(images)
    if len(a) != n:
        raise ConvlensError(f"{len(a)} images for {n} codes: give one image per code")
    if a.ndim == 4 and a.shape[1] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
    if a.ndim == 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.dtype != np.uint8:  # floats in [0, 1]; converted when drawn, a few at a time
        return lambda rows: np.clip(a[rows] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return lambda rows: a[rows]


def tsne_grid(codes, images=None, *, labels=None, preds=None, index=None, classes=None,
              perplexity: float = 30.0, seed: int = 0, pca_dims: int = 50, grid=None,
              select: str = "nearest", border: str = "class", k: int = 10,
              knn_queries: int | None = 10000, trust_points: int | None = 2000,
              n_jobs: int = 1, canvas: int | None = None, thumb: int | None = None,
              meta: pd.DataFrame | None = None,
              tsne_options: dict[str, Any] | None = None) -> "TsneResult":
    """t-SNE of CNN codes, with a scatter of thumbnails, an image grid and quality measures.

    METHODS.md §3: PCA to `pca_dims` (50), openTSNE with FFT gradients (`perplexity`, `seed`)
    to 2-D, then a rows x cols grid (default 50 x 50, smaller for fewer than 2500 images) by
    the linear assignment of `grid_assign` (minimal total squared move). Measures: leave-one-out
    kNN label accuracy (`k` = 10) in 2-D and in code space, trustworthiness (k) of the 2-D
    neighbourhoods; see `knn_accuracy` and `trustworthiness` for the sampling of large N.

    Args:
        codes: ``(N, D)`` array or tensor (float16 is fine), or a `Codes` from `cnn_codes`
            (then images, labels, preds, index and classes come from it).
        images: ``(N, H, W)``, ``(N, H, W, 3)`` or ``(N, C, H, W)``, uint8 or floats in [0, 1];
            or a function ``rows -> uint8 images`` (called only for the images drawn).
        labels, preds, index: ``(N,)`` true class (-1: none), predicted class, dataset index.
        border: colour of the thumbnails' frames: ``"class"`` (true label), ``"pred"``,
            ``"correct"`` (green right, red wrong) or ``"none"``.
        canvas, thumb: scatter side and thumbnail side in pixels (default: from N and the
            image size).
        tsne_options: more arguments for ``openTSNE.TSNE`` (e.g. ``n_iter``).

    Example::

        res = tsne_grid(codes, images, labels=y, preds=p)     # codes: (N, 256)
        print(res.summary()); res.save("out/tsne")
    """
    if isinstance(codes, Codes):
        c = codes
        images = c.thumbnails if images is None else images
        labels = c.label if labels is None else labels
        preds = c.pred if preds is None else preds
        index = c.index if index is None else index
        classes = c.classes if classes is None else classes
        if meta is None:
            meta = pd.DataFrame({"p_pred": c.p_pred}) if c.p_pred is not None else c.meta
        layer = c.layer
        codes = c.codes
    else:
        layer = ""
    if border not in BORDERS:
        raise ConvlensError(f"border must be one of {', '.join(BORDERS)}, got {border!r}")
    x = np.ascontiguousarray(as_numpy(codes), dtype=np.float32)
    if x.ndim != 2:
        x = x.reshape(len(x), -1)
    n = len(x)
    if n < 5:
        raise ConvlensError(f"t-SNE needs at least 5 codes, got {n}")
    if not np.isfinite(x).all():
        raise ConvlensError("the codes hold NaN or infinite values")
    labels = np.full(n, -1, np.int64) if labels is None else as_numpy(labels).astype(np.int64)
    preds_a = None if preds is None else as_numpy(preds).astype(np.int64)
    index = np.arange(n) if index is None else as_numpy(index).astype(np.int64)
    for what, a in (("labels", labels), ("preds", preds_a), ("index", index)):
        if a is not None and len(a) != n:
            raise ConvlensError(f"{len(a)} {what} for {n} codes")
    if border in ("pred", "correct") and preds_a is None:
        raise ConvlensError(f"border={border!r} needs the predictions (preds)")
    thumbs = _thumb_source(images, n)
    rows, cols = _grid_shape(grid, n)
    times: dict[str, float] = {}

    # BLAS gets the threads t-SNE gets: on a busy machine, idle BLAS threads spinning for
    # their turn made a 0.2 s PCA take 9 s
    with _blas_threads(n_jobs):
        t = time.perf_counter()
        reduced = pca(x, pca_dims, seed)
        times["pca_s"] = time.perf_counter() - t
        t = time.perf_counter()
        emb = tsne(reduced, perplexity, seed, n_jobs, **(tsne_options or {}))
        times["tsne_s"] = time.perf_counter() - t
        t = time.perf_counter()
        knn_2d = knn_accuracy(emb, labels, k, knn_queries, seed, n_jobs)
        knn_code = knn_accuracy(x, labels, k, knn_queries, seed, n_jobs)
        trust, trust_n = trustworthiness(x, emb, k, trust_points, seed)
        times["metrics_s"] = time.perf_counter() - t
    t = time.perf_counter()
    cells, method = grid_assign(emb, rows, cols, select=select, seed=seed)
    times["grid_s"] = time.perf_counter() - t

    table = pd.DataFrame({"index": index, "label": labels})
    if preds_a is not None:
        table["pred"] = preds_a
        table["correct"] = pd.array(np.where(labels >= 0, preds_a == labels, None), dtype="boolean")
    table["x"], table["y"] = emb[:, 0], emb[:, 1]
    gr = np.full(n, -1, np.int64)
    gc = np.full(n, -1, np.int64)
    r_, c_ = np.nonzero(cells >= 0)
    gr[cells[r_, c_]], gc[cells[r_, c_]] = r_, c_
    table["grid_row"], table["grid_col"] = gr, gc
    if meta is not None:
        for col in meta.columns:
            if col not in table.columns:
                table[col] = meta[col].to_numpy()
    placed = cells[cells >= 0]
    return TsneResult(
        embedding=emb, grid=cells, table=table, thumbs=thumbs,
        classes=list(classes) if classes is not None else None, border=border,
        canvas=canvas, thumb=thumb, seed=seed,
        params={"n": n, "code_dim": int(x.shape[1]), "layer": layer,
                "pca_dims": int(reduced.shape[1]),
                "perplexity": float(min(perplexity, (n - 1) / 3)), "seed": seed,
                "tsne": "openTSNE, FFT gradients",
                "tsne_options": {**FFT_OPTIONS, **(tsne_options or {})}, "k": k,
                "knn_queries": int(min(knn_queries or n, int((labels >= 0).sum()))),
                "trust_points": trust_n, "grid": [rows, cols], "grid_images": int(len(placed)),
                "grid_method": method,
                "grid_rms_move": float(np.sqrt(grid_cost(emb, cells) / max(len(placed), 1))),
                "border": border, "seconds": times},
        metrics={"knn_accuracy_2d": knn_2d, "knn_accuracy_code": knn_code,
                 "trustworthiness": trust})


# ------------------------------------------------------------------------------------------
# the result and its pictures (numpy and PIL only)
# ------------------------------------------------------------------------------------------
BORDERS = ("class", "pred", "correct", "none")
_GREY = np.array([150, 150, 150], np.uint8)
_RIGHT = np.array([44, 160, 44], np.uint8)
_WRONG = np.array([214, 39, 40], np.uint8)


def palette(n: int) -> np.ndarray:
    """`n` distinct colours ``(n, 3)`` uint8: tab10 up to 10 classes, tab20 up to 20, else a
    hue wheel."""
    import matplotlib

    if n <= 10:
        cols = matplotlib.colormaps["tab10"](np.arange(max(n, 1)))[:, :3]
    elif n <= 20:
        cols = matplotlib.colormaps["tab20"](np.arange(n))[:, :3]
    else:
        cols = matplotlib.colormaps["hsv"](np.arange(n) / n)[:, :3]
    return (cols * 255 + 0.5).astype(np.uint8)


def _rgb(tiles: np.ndarray) -> np.ndarray:
    return np.repeat(tiles[..., None], 3, -1) if tiles.ndim == 3 else tiles


def _fit(tiles: np.ndarray, size: int) -> np.ndarray:
    """Tiles ``(n, h, w, 3)`` resized so their longer side is `size` (PIL, bilinear)."""
    from PIL import Image

    h, w = tiles.shape[1:3]
    if max(h, w) == size:
        return tiles
    s = size / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    return np.stack([np.asarray(Image.fromarray(t).resize((nw, nh), Image.BILINEAR))
                     for t in tiles])


@dataclass
class TsneResult(Result):
    """A t-SNE embedding of CNN codes, its grid and its quality.

    ``embedding`` ``(N, 2)``; ``grid`` ``(rows, cols)``: the row of ``table`` shown in each
    cell (-1: empty); ``table``: per point ``index, label, pred, correct, x, y, grid_row,
    grid_col`` and any metadata; ``metrics``: ``knn_accuracy_2d``, ``knn_accuracy_code``,
    ``trustworthiness``.

    Pictures: ``scatter``, thumbnails at their embedded positions on a large canvas: points
    are taken in a seeded random order, and a thumbnail that would overlap one already drawn
    is skipped (never drawn over another), its point shown by a coloured dot beneath the
    thumbnails, so dense regions stay visible as dots; ``grid``, one image per cell. Frames
    are coloured by `border`; a legend and the measures are written below each picture.
    """

    embedding: np.ndarray
    grid: np.ndarray
    table: pd.DataFrame
    thumbs: Thumbs | None = None
    classes: list[str] | None = None
    border: str = "class"
    canvas: int | None = None
    thumb: int | None = None
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    kind = "tsne"

    def arrays(self):
        return {"embedding": self.embedding, "grid": self.grid}

    def tables(self):
        return {"embedding": self.table}

    def info(self):
        out = {**self.params, **self.metrics}
        if self.thumbs is not None:
            out["scatter_thumbnails"] = int(len(self.scatter_layout()[1]))
            out["sprites"] = {"size": self.SPRITE_SIZE, "cols": self.SPRITE_COLS,
                              "count": int(min(len(self.table), self.SPRITE_MAX))}
        return out

    def summary(self) -> str:
        p, m = self.params, self.metrics
        return (f"t-SNE of {p['n']} codes ({p['code_dim']}-d, PCA to {p['pca_dims']}, perplexity "
                f"{p['perplexity']:g}, seed {p['seed']}) in {sum(p['seconds'].values()):.1f} s\n"
                f"kNN accuracy (k={p['k']}): 2-D embedding {m['knn_accuracy_2d']:.3f}, code space "
                f"{m['knn_accuracy_code']:.3f}\n"
                f"trustworthiness (k={p['k']}, {p['trust_points']} points): "
                f"{m['trustworthiness']:.3f}\n"
                f"grid {p['grid'][0]}x{p['grid'][1]}: {p['grid_images']} of {p['n']} images, "
                f"{p['grid_method']}, rms move {p['grid_rms_move']:.2f} cells")

    # -- drawing -----------------------------------------------------------------------
    #: thumbnails of the report's interactive map: side (px), per sprite-sheet row, at most
    SPRITE_SIZE, SPRITE_COLS, SPRITE_MAX = 24, 100, 20_000

    def pictures(self):
        if self.thumbs is None:
            return {"scatter": self._scatter}  # dots only
        return {"scatter": self._scatter, "grid": self._grid, "sprites": self._sprites}

    def _sprites(self, path: str) -> None:
        """Every point's thumbnail (table order), SPRITE_COLS per row, for hover in the report."""
        from ..draw import save_png, tile_grid

        n = min(len(self.table), self.SPRITE_MAX)
        tiles = np.concatenate([_fit(_rgb(self.thumbs(np.arange(i, min(n, i + 1000)))),
                                     self.SPRITE_SIZE) for i in range(0, n, 1000)])
        h, w = tiles.shape[1:3]
        if (h, w) != (self.SPRITE_SIZE, self.SPRITE_SIZE):  # pad non-square thumbnails
            pad = np.zeros((len(tiles), self.SPRITE_SIZE, self.SPRITE_SIZE, 3), np.uint8)
            pad[:, :h, :w] = tiles
            tiles = pad
        save_png(path, tile_grid(tiles, cols=self.SPRITE_COLS, pad=0, pad_value=0))

    def _thumb_size(self) -> int:
        if self.thumb:
            return int(self.thumb)
        if self.thumbs is None:
            return 8
        h, w = self.thumbs(np.array([0])).shape[1:3]
        return max(h, w)

    def colours(self) -> np.ndarray:
        """Frame colour of every point ``(N, 3)`` uint8, by `border`."""
        t = self.table
        n = len(t)
        if self.border == "correct":
            c = np.tile(_GREY, (n, 1))
            ok = t["correct"].astype("boolean")  # unknown (no label) stays grey
            c[ok.fillna(False).to_numpy(bool)] = _RIGHT
            c[(~ok).fillna(False).to_numpy(bool)] = _WRONG
            return c
        key = "pred" if self.border == "pred" else "label"
        lab = t[key].to_numpy() if key in t else np.full(n, -1)
        k = max(int(lab.max()) + 1, len(self.classes or []), 1)
        pal = palette(k)
        c = np.tile(_GREY, (n, 1))
        c[lab >= 0] = pal[lab[lab >= 0]]
        return c

    def scatter_layout(self, canvas: int | None = None) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Where the scatter puts each point: ``(yx (N, 2) top-left pixel, drawn rows,
        canvas, tile)``; `drawn` lists the points whose thumbnail is drawn, in drawing order."""
        n = len(self.embedding)
        tile = self._thumb_size() + (2 if self.border != "none" else 0)
        side = canvas or self.canvas or int(np.clip(1.25 * tile * np.sqrt(n), 800, 4000))
        pos = grid_positions(self.embedding, 1, 1)  # in [0, 1]
        yx = np.floor(pos * (side - tile)).astype(np.int64)
        if self.thumbs is None:
            return yx, np.array([], np.int64), side, tile
        free = np.ones((side, side), bool)
        drawn = []
        for i in np.random.default_rng(self.seed).permutation(n):
            y, x = yx[i]
            if free[y:y + tile, x:x + tile].all():  # skip, never cover a drawn thumbnail
                free[y:y + tile, x:x + tile] = False
                drawn.append(i)
        return yx, np.array(drawn, np.int64), side, tile

    def _framed(self, rows: np.ndarray, colours: np.ndarray, size: int) -> np.ndarray:
        tiles = _fit(_rgb(self.thumbs(rows)), size)
        if self.border == "none":
            return tiles
        h, w = tiles.shape[1:3]
        out = np.empty((len(tiles), h + 2, w + 2, 3), np.uint8)
        out[:] = colours[rows][:, None, None, :]
        out[:, 1:-1, 1:-1] = tiles
        return out

    def _scatter(self, path: str) -> None:
        yx, drawn, side, tile = self.scatter_layout()
        img = np.full((side, side, 3), 255, np.uint8)
        colours = self.colours()
        dot = max(2, tile // 8)
        c = yx + tile // 2 - dot // 2
        for dy in range(dot):  # every point as a dot, beneath the thumbnails
            for dx in range(dot):
                img[c[:, 0] + dy, c[:, 1] + dx] = colours
        size = self._thumb_size()
        for s in range(0, len(drawn), 1024):
            rows = drawn[s:s + 1024]
            tiles = self._framed(rows, colours, size)
            th, tw = tiles.shape[1:3]
            for i, t in zip(rows, tiles):
                y, x = yx[i]
                img[y:y + th, x:x + tw] = t
        self._save(path, img, f"t-SNE of {len(yx)} codes: {len(drawn)} thumbnails drawn, "
                              f"the rest as dots (a thumbnail never covers another)")

    def _grid(self, path: str) -> None:
        rows_, cols_ = self.grid.shape
        size = self._thumb_size()
        colours = self.colours()
        pad = 1
        cell = size + (2 if self.border != "none" else 0)
        img = np.full((rows_ * (cell + pad) + pad, cols_ * (cell + pad) + pad, 3), 255, np.uint8)
        flat = self.grid.ravel()
        where = np.flatnonzero(flat >= 0)
        for s in range(0, len(where), 1024):
            ws = where[s:s + 1024]
            tiles = self._framed(flat[ws], colours, size)
            th, tw = tiles.shape[1:3]
            for w, t in zip(ws, tiles):
                r, c = divmod(int(w), cols_)
                y, x = pad + r * (cell + pad), pad + c * (cell + pad)
                img[y:y + th, x:x + tw] = t
        self._save(path, img, f"{rows_}x{cols_} grid of {len(where)} images "
                              f"({self.params.get('grid_method', '')})")

    def _legend_items(self) -> list[tuple[np.ndarray, str]]:
        if self.border == "none":
            return []
        if self.border == "correct":
            return [(_RIGHT, "correct"), (_WRONG, "wrong")]
        key = "pred" if self.border == "pred" else "label"
        lab = self.table[key].to_numpy() if key in self.table else np.full(1, -1)
        k = max(int(lab.max()) + 1, len(self.classes or []), 1)
        pal = palette(k)
        names = self.classes or [str(i) for i in range(k)]
        items = [(pal[i], names[i] if i < len(names) else str(i)) for i in range(k)]
        return items + ([(_GREY, "no label")] if (lab < 0).any() else [])

    def _save(self, path: str, img: np.ndarray, title: str) -> None:
        """`img` with a caption strip: title, measures and the colour legend."""
        from PIL import Image, ImageDraw, ImageFont

        from ..draw import save_png

        m = {k: self.metrics.get(k, float("nan"))
             for k in ("knn_accuracy_2d", "knn_accuracy_code", "trustworthiness")}
        lines = [title + ".",
                 f"kNN accuracy (k={self.params.get('k')}): 2-D {m['knn_accuracy_2d']:.3f}, "
                 f"code space {m['knn_accuracy_code']:.3f}; trustworthiness "
                 f"{m['trustworthiness']:.3f}. Frames: {self.border}."]
        font_size = int(np.clip(img.shape[1] / 90, 11, 36))
        try:
            font = ImageFont.load_default(font_size)
        except TypeError:  # Pillow < 10.1: a fixed bitmap font
            font = ImageFont.load_default()
        line_h = int(font_size * 1.4)
        items = self._legend_items()
        if len(items) > 40:  # a legend of hundreds of classes says nothing
            lines.append(f"Frame colours: {len(items)} classes on a hue wheel.")
            items = []
        width = img.shape[1]
        measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        places, x, y = [], 6, 4 + len(lines) * line_h  # legend entries, wrapped to the width
        for colour, name in items:
            w = font_size + 12 + int(measure.textlength(name, font=font))
            if x > 6 and x + w > width:
                x, y = 6, y + line_h
            places.append((x, y, colour, name))
            x += w
        height = (y + line_h if items else y) + 4
        strip = Image.new("RGB", (width, height), "white")
        d = ImageDraw.Draw(strip)
        for i, line in enumerate(lines):
            d.text((6, 4 + i * line_h), line, fill="black", font=font)
        for x, y, colour, name in places:
            d.rectangle([x, y + 2, x + font_size, y + 2 + font_size],
                        fill=tuple(int(v) for v in colour))
            d.text((x + font_size + 4, y), name, fill="black", font=font)
        save_png(path, np.concatenate([img, np.asarray(strip)], 0))


def dataset_thumbnails(data, index: Sequence[int], size: int = 32) -> Thumbs:
    """A thumbnail source for `tsne_grid` that opens dataset items only when drawn.

    ``rows -> (len(rows), size, size[, 3])`` uint8: item ``index[row]`` of `data`
    (``data.load``), its shorter side scaled to `size` and centre-cropped; an unreadable item
    gives a grey tile.
    """
    from PIL import Image

    from ..errors import BadImage

    index = np.asarray(index)

    def one(i: int, mode: str) -> np.ndarray:
        try:
            img, _, _ = data.load(int(i))
        except BadImage:
            return np.full((size, size) if mode == "L" else (size, size, 3), 128, np.uint8)
        if isinstance(img, np.ndarray):
            img = Image.fromarray(img)
        img = img.convert(mode)
        s = size / min(img.size)
        w, h = max(size, round(img.width * s)), max(size, round(img.height * s))
        img = img.resize((w, h), Image.BILINEAR)
        left, top = (w - size) // 2, (h - size) // 2
        return np.asarray(img.crop((left, top, left + size, top + size)))

    modes: list[str] = []  # grey or RGB for all, decided by the first item opened

    def fetch(rows: np.ndarray) -> np.ndarray:
        rows = np.atleast_1d(rows)
        if not modes:
            try:
                first = data.load(int(index[rows[0]]))[0]
            except BadImage:
                first = None
            grey = first is not None and (np.asarray(first).ndim == 2
                                          if isinstance(first, np.ndarray)
                                          else first.mode in ("L", "I", "I;16", "1", "F"))
            modes.append("L" if grey else "RGB")
        return np.stack([one(index[r], modes[0]) for r in rows])
    return fetch
