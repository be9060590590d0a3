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

The codes come from `convlens.techniques.codes` (`cnn_codes`, or a scan's saved codes); the
grid assignment is `convlens.techniques.grid`. Example::

    codes = cnn_codes(lens, data, n=5000)          # runs the model
    res = tsne_grid(codes)                          # or tsne_grid(array, images, true=...)
    res.save("out/tsne", lens)                      # scatter.png, grid.png, embedding.parquet
"""
from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np
import pandas as pd

from ...data.labels import align_labels
from ...errors import ConvlensError
from ...results import as_numpy
from ..units.codes import Codes
from .grid import _grid_shape, grid_assign, grid_cost, sample_indices
from .results import TsneResult, thumb_source

#: openTSNE options convlens changes. Boxes of 2 units: the grid of the FFT interpolation has a
#: quarter of the nodes once a 10k embedding spans ~120 units, and the whole t-SNE took a third
#: of the CPU time (10.9 s against 34.8 s, fashion-net codes of the 10k test images) with the
#: same kNN accuracy (0.920 against 0.919) and trustworthiness (0.9966 against 0.9967)
FFT_OPTIONS: dict[str, Any] = {"ints_in_interval": 2}
#: fewer points than this are embedded with Barnes-Hut gradients, which are faster there
FFT_MIN_POINTS = 1000
BORDERS = ("class", "pred", "correct", "none")


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
    """2-D t-SNE of ``x`` ``(N, D)`` with openTSNE; ``(N, 2)`` float32.

    Gradients by FFT interpolation from `FFT_MIN_POINTS` points on, Barnes-Hut below (the FFT
    grid has a fixed cost per iteration: 240 codes took 12.4 s by FFT, 1.0 s by Barnes-Hut).
    The perplexity is lowered to ``(N - 1) / 3`` for small N (openTSNE's limit). `kwargs` go to
    ``openTSNE.TSNE``. One default differs from openTSNE's: ``ints_in_interval=2`` (the FFT
    interpolation boxes are 2 embedding units wide, not 1), see `FFT_OPTIONS`.
    """
    from openTSNE import TSNE

    perplexity = min(perplexity, (len(x) - 1) / 3)
    method = "fft" if len(x) >= FFT_MIN_POINTS else "bh"
    options = {**(FFT_OPTIONS if method == "fft" else {}), **kwargs}
    emb = TSNE(n_components=2, perplexity=perplexity, negative_gradient_method=method,
               random_state=seed, n_jobs=n_jobs, **options).fit(np.asarray(x, dtype=np.float32))
    return np.asarray(emb, dtype=np.float32)


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
    q = scored[sample_indices(len(scored), max_queries, seed)]
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

    s = sample_indices(len(x), max_points, seed)
    if len(s) < 4:
        return float("nan"), len(s)
    k = min(k, (len(s) - 1) // 2)
    return float(_trust(x[s], emb[s], n_neighbors=k)), len(s)

def _blas_threads(n_jobs: int):
    """A context limiting BLAS/OpenMP threads to `n_jobs` (no limit for -1)."""

    if n_jobs is None or n_jobs < 1:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits
    return threadpool_limits(n_jobs)


def tsne_grid(codes, images=None, *, true=None, predicted=None, index=None, classes=None,
              labels=None,
              perplexity: float = 30.0, seed: int = 0, pca_dims: int = 50, grid=None,
              select: str = "nearest", border: str = "class", k: int = 10,
              knn_queries: int | None = 10000, trust_points: int | None = 2000,
              n_jobs: int = 1, canvas: int | None = None, thumb: int | None = None,
              meta: pd.DataFrame | None = None,
              tsne_options: dict[str, Any] | None = None) -> TsneResult:
    """t-SNE of CNN codes, with a scatter of thumbnails, an image grid and quality measures.

    METHODS.md §3: PCA to `pca_dims` (50), openTSNE with FFT gradients (`perplexity`, `seed`)
    to 2-D, then a rows x cols grid (default 50 x 50, smaller for fewer than 2500 images) by
    the linear assignment of `grid_assign` (minimal total squared move). Measures: leave-one-out
    kNN label accuracy (`k` = 10) in 2-D and in code space, trustworthiness (k) of the 2-D
    neighbourhoods; see `knn_accuracy` and `trustworthiness` for the sampling of large N.

    Args:
        codes: ``(N, D)`` array or tensor (float16 is fine), or a `Codes` from `cnn_codes`
            (then images, true, predicted, index, classes and labels come from it).
        classes, labels: the data's class names (what `true` means) and the model's
            (what `predicted` means); when they differ, "correct" compares them by name
            (`convlens.data.labels.align_labels`) and is unknown where no name matches.
        images: ``(N, H, W)``, ``(N, H, W, 3)`` or ``(N, C, H, W)``, uint8 or floats in [0, 1];
            or a function ``rows -> uint8 images`` (called only for the images drawn).
        true, predicted, index: ``(N,)`` true class (-1: none), predicted class, dataset
            index.
        border: colour of the thumbnails' frames: ``"class"`` (true label), ``"pred"``,
            ``"correct"`` (green right, red wrong) or ``"none"``.
        canvas, thumb: scatter side and thumbnail side in pixels (default: from N and the
            image size).
        tsne_options: more arguments for ``openTSNE.TSNE`` (e.g. ``n_iter``).

    Example::

        res = tsne_grid(codes, images, true=y, predicted=p)     # codes: (N, 256)
        print(res.summary()); res.save("out/tsne")
    """
    if isinstance(codes, Codes):
        c = codes
        images = c.thumbnails if images is None else images
        true = c.label if true is None else true
        predicted = c.predicted if predicted is None else predicted
        index = c.index if index is None else index
        classes = c.classes if classes is None else classes
        labels = c.labels if labels is None else labels
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
    if not np.isfinite(x).all():
        raise ConvlensError("the codes hold NaN or infinite values")
    if k < 1:
        raise ConvlensError(f"k must be at least 1, got {k}")
    if n < max(5, k + 2):
        raise ConvlensError(f"t-SNE of {n} codes: at least {max(5, k + 2)} are needed (its "
                            f"measures compare each point's {k} nearest neighbours); embed more "
                            "images or lower k")
    true = np.full(n, -1, np.int64) if true is None else as_numpy(true).astype(np.int64)
    preds_a = None if predicted is None else as_numpy(predicted).astype(np.int64)
    index = np.arange(n) if index is None else as_numpy(index).astype(np.int64)
    for what, a in (("true labels", true), ("predicted classes", preds_a), ("index", index)):
        if a is not None and len(a) != n:
            raise ConvlensError(f"{len(a)} {what} for {n} codes")
    if border in ("pred", "correct") and preds_a is None:
        raise ConvlensError(f"border={border!r} needs the predictions (predicted)")
    thumbs = thumb_source(images, n)
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
        knn_2d = knn_accuracy(emb, true, k, knn_queries, seed, n_jobs)
        knn_code = knn_accuracy(x, true, k, knn_queries, seed, n_jobs)
        trust, trust_n = trustworthiness(x, emb, k, trust_points, seed)
        times["metrics_s"] = time.perf_counter() - t
    t = time.perf_counter()
    cells, method = grid_assign(emb, rows, cols, select=select, seed=seed)
    times["grid_s"] = time.perf_counter() - t

    table = pd.DataFrame({"index": index, "label": true})
    if preds_a is not None:
        table["pred"] = preds_a
        target = align_labels(classes, labels).model_class(true)
        table["correct"] = pd.array(np.where(target >= 0, preds_a == target, None), dtype="boolean")
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
        classes=list(classes) if classes is not None else None,
        labels=list(labels) if labels is not None else None, border=border,
        canvas=canvas, thumb=thumb, seed=seed,
        params={"n": n, "code_dim": int(x.shape[1]), "layer": layer,
                "pca_dims": int(reduced.shape[1]),
                "perplexity": float(min(perplexity, (n - 1) / 3)), "seed": seed,
                "tsne": "openTSNE, FFT gradients",
                "tsne_options": {**FFT_OPTIONS, **(tsne_options or {})}, "k": k,
                "knn_queries": int(min(knn_queries or n, int((true >= 0).sum()))),
                "trust_points": trust_n, "grid": [rows, cols], "grid_images": int(len(placed)),
                "grid_method": method,
                "grid_rms_move": float(np.sqrt(grid_cost(emb, cells) / max(len(placed), 1))),
                "border": border, "seconds": times},
        metrics={"knn_accuracy_2d": knn_2d, "knn_accuracy_code": knn_code,
                 "trustworthiness": trust})
