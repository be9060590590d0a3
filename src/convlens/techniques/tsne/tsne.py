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
    res = tsne_grid(codes)                          # or tsne_grid(array, images, labels=...)
    res.save("out/tsne", lens)                      # scatter.png, grid.png, embedding.parquet
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ...data.labels import align_labels
from ...draw import (
    BORDER_GREY,
    BORDER_RIGHT,
    BORDER_WRONG,
    captioned,
    fit_tiles,
    palette,
    rgb_tiles,
    save_png,
    tile_grid,
)
from ...errors import ConvlensError
from ...results import Result, as_numpy
from ..units.codes import Codes, Thumbs
from .grid import _grid_shape, grid_assign, grid_cost, grid_positions, sample_indices

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
              pred_classes=None,
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
        classes, pred_classes: the data's class names (what `labels` mean) and the model's
            (what `preds` mean); when they differ, "correct" compares them by name
            (`convlens.data.labels.align_labels`) and is unknown where no name matches.
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
        pred_classes = c.pred_classes if pred_classes is None else pred_classes
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
        target = align_labels(classes, pred_classes).model_class(labels)
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
        pred_classes=list(pred_classes) if pred_classes is not None else None, border=border,
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
    pred_classes: list[str] | None = None
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
        out = {**self.params, **self.metrics, "classes": self.classes,
               "pred_classes": self.pred_classes}
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

    about = ("t-SNE of CNN codes (the seed's §3): every image placed so that images with similar "
             "codes (the vector the classifier reads) lie close together. Clusters of one class "
             "mean the network separates it; the grid snaps the same map to rows and columns. "
             "Frame colours show the true class (or the prediction, or right and wrong).")

    def pictures(self):
        if self.thumbs is None:
            return {"scatter": self._scatter}  # dots only
        return {"scatter": self._scatter, "grid": self._grid, "sprites": self._sprites}

    def figures(self):
        from ...results import figure, panel
        m = self.metrics
        facts = [f"kNN accuracy (k={self.params.get('k')}): 2-D {m.get('knn_accuracy_2d', 0):.3f}, "
                 f"code space {m.get('knn_accuracy_code', 0):.3f}",
                 f"trustworthiness {m.get('trustworthiness', 0):.3f}"]
        out = [figure("thumbnails at their t-SNE positions", [panel("scatter", kind="plot",
                                                                    caption=facts)])]
        if self.thumbs is not None:
            out.append(figure("the same map snapped to a grid", [panel("grid", kind="plot")]))
        return out

    def _sprites(self, path: str) -> None:
        """Every point's thumbnail (table order), SPRITE_COLS per row, for hover in the report."""
        n = min(len(self.table), self.SPRITE_MAX)
        tiles = np.concatenate([fit_tiles(rgb_tiles(self.thumbs(np.arange(i, min(n, i + 1000)))),
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
            c = np.tile(BORDER_GREY, (n, 1))
            ok = t["correct"].astype("boolean")  # unknown (no label) stays grey
            c[ok.fillna(False).to_numpy(bool)] = BORDER_RIGHT
            c[(~ok).fillna(False).to_numpy(bool)] = BORDER_WRONG
            return c
        key = "pred" if self.border == "pred" else "label"
        lab = t[key].to_numpy() if key in t else np.full(n, -1)
        k = max(int(lab.max()) + 1, len(self._names() or []), 1)
        pal = palette(k)
        c = np.tile(BORDER_GREY, (n, 1))
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
        tiles = fit_tiles(rgb_tiles(self.thumbs(rows)), size)
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

    def _names(self) -> list[str] | None:
        """The names of what the frames show: the model's classes for ``border="pred"``, the
        data's otherwise."""
        return self.pred_classes if self.border == "pred" else self.classes

    def _legend_items(self) -> list[tuple[np.ndarray, str]]:
        if self.border == "none":
            return []
        if self.border == "correct":
            return [(BORDER_RIGHT, "correct"), (BORDER_WRONG, "wrong")]
        key = "pred" if self.border == "pred" else "label"
        lab = self.table[key].to_numpy() if key in self.table else np.full(1, -1)
        k = max(int(lab.max()) + 1, len(self._names() or []), 1)
        pal = palette(k)
        names = self._names() or [str(i) for i in range(k)]
        items = [(pal[i], names[i] if i < len(names) else str(i)) for i in range(k)]
        return items + ([(BORDER_GREY, "no label")] if (lab < 0).any() else [])

    def _save(self, path: str, img: np.ndarray, title: str) -> None:
        """`img` with a caption strip: title, measures and the colour legend."""
        m = {k: self.metrics.get(k, float("nan"))
             for k in ("knn_accuracy_2d", "knn_accuracy_code", "trustworthiness")}
        lines = [title + ".",
                 f"kNN accuracy (k={self.params.get('k')}): 2-D {m['knn_accuracy_2d']:.3f}, "
                 f"code space {m['knn_accuracy_code']:.3f}; trustworthiness "
                 f"{m['trustworthiness']:.3f}. Frames: {self.border}."]
        save_png(path, captioned(img, lines, self._legend_items()))
