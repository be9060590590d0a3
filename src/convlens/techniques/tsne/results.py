"""The t-SNE family's result: an embedding of CNN codes, its grid, its measures and the
thumbnails drawn (`figures`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ...draw import BORDER_GREY, BORDER_RIGHT, BORDER_WRONG, palette
from ...errors import ConvlensError
from ...results import Result, as_numpy
from ..units.codes import Thumbs
from .grid import grid_positions


def thumb_source(images, n: int) -> Thumbs | None:
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


@dataclass
class TsneResult(Result):
    """A t-SNE embedding of CNN codes, its grid and its quality.

    ``embedding`` ``(N, 2)``; ``grid`` ``(rows, cols)``: the row of ``table`` shown in each
    cell (-1: empty); ``table``: per point ``index, label, pred, correct, x, y, grid_row,
    grid_col`` and any metadata; ``metrics``: ``knn_accuracy_2d``, ``knn_accuracy_code``,
    ``trustworthiness``; ``thumbs``: ``rows -> uint8 thumbnails`` (saved as the
    ``thumbnails`` array); ``classes`` the data's class names (what ``label`` means),
    ``labels`` the model's (what ``pred`` means).

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
    labels: list[str] | None = None
    border: str = "class"
    canvas: int | None = None
    thumb: int | None = None
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    kind = "tsne"

    def __post_init__(self):
        if self.thumbs is not None and not callable(self.thumbs):  # an array (loaded back)
            self.thumbs = thumb_source(self.thumbs, len(self.embedding))
        self._thumbnails = None

    def thumbnails(self) -> np.ndarray | None:
        """Every point's thumbnail ``(N, h, w[, 3])`` uint8 (read once), or None."""
        if self.thumbs is None:
            return None
        if self._thumbnails is None:
            n = len(self.embedding)
            self._thumbnails = np.concatenate([self.thumbs(np.arange(i, min(n, i + 1000)))
                                               for i in range(0, n, 1000)])
        return self._thumbnails

    def arrays(self):
        out = {"embedding": self.embedding, "grid": self.grid}
        if self.thumbs is not None:
            out["thumbnails"] = self.thumbnails()
        return out

    def _fields(self, arrays, tables):
        thumbs, self.thumbs = self.thumbs, None
        try:
            out = super()._fields(arrays, tables)
        finally:
            self.thumbs = thumbs
        if thumbs is not None:
            out["thumbs"] = {"array": "thumbnails"}
        return out

    def tables(self):
        return {"embedding": self.table}

    def info(self):
        out = {**self.params, **self.metrics, "classes": self.classes, "labels": self.labels}
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
        from . import figures

        def draw(fn):
            return lambda path: fn(self, path)
        if self.thumbs is None:
            return {"scatter": draw(figures.scatter)}  # dots only
        return {"scatter": draw(figures.scatter), "grid": draw(figures.grid),
                "sprites": draw(figures.sprites)}

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

    def _names(self) -> list[str] | None:
        """The names of what the frames show: the model's classes for ``border="pred"``, the
        data's otherwise."""
        return self.labels if self.border == "pred" else self.classes

