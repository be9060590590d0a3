"""The t-SNE family's drawing (numpy and PIL only): the scatter of thumbnails at their
embedded positions, the grid, the sprite sheet of the report's interactive map, each with its
caption strip (title, measures, colour legend)."""
from __future__ import annotations

import numpy as np

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


def sprites(res, path: str) -> None:
    """Every point's thumbnail (table order), SPRITE_COLS per row, for hover in the report."""
    n = min(len(res.table), res.SPRITE_MAX)
    tiles = np.concatenate([fit_tiles(rgb_tiles(res.thumbs(np.arange(i, min(n, i + 1000)))),
                                 res.SPRITE_SIZE) for i in range(0, n, 1000)])
    h, w = tiles.shape[1:3]
    if (h, w) != (res.SPRITE_SIZE, res.SPRITE_SIZE):  # pad non-square thumbnails
        pad = np.zeros((len(tiles), res.SPRITE_SIZE, res.SPRITE_SIZE, 3), np.uint8)
        pad[:, :h, :w] = tiles
        tiles = pad
    save_png(path, tile_grid(tiles, cols=res.SPRITE_COLS, pad=0, pad_value=0))


def framed(res, rows: np.ndarray, colours: np.ndarray, size: int) -> np.ndarray:
    """The thumbnails of `rows` at `size`, each in a frame of its colour."""
    tiles = fit_tiles(rgb_tiles(res.thumbs(rows)), size)
    if res.border == "none":
        return tiles
    h, w = tiles.shape[1:3]
    out = np.empty((len(tiles), h + 2, w + 2, 3), np.uint8)
    out[:] = colours[rows][:, None, None, :]
    out[:, 1:-1, 1:-1] = tiles
    return out


def scatter(res, path: str) -> None:
    """Thumbnails at their embedded positions (`TsneResult.scatter_layout`), every point as a
    dot beneath them."""
    yx, drawn, side, tile = res.scatter_layout()
    img = np.full((side, side, 3), 255, np.uint8)
    colours = res.colours()
    dot = max(2, tile // 8)
    c = yx + tile // 2 - dot // 2
    for dy in range(dot):  # every point as a dot, beneath the thumbnails
        for dx in range(dot):
            img[c[:, 0] + dy, c[:, 1] + dx] = colours
    size = res._thumb_size()
    for s in range(0, len(drawn), 1024):
        rows = drawn[s:s + 1024]
        tiles = framed(res, rows, colours, size)
        th, tw = tiles.shape[1:3]
        for i, t in zip(rows, tiles):
            y, x = yx[i]
            img[y:y + th, x:x + tw] = t
    captioned_png(res, path, img, f"t-SNE of {len(yx)} codes: {len(drawn)} thumbnails "
                                  f"drawn, the rest as dots (a thumbnail never covers another)")


def grid(res, path: str) -> None:
    """One thumbnail per cell of the grid."""
    rows_, cols_ = res.grid.shape
    size = res._thumb_size()
    colours = res.colours()
    pad = 1
    cell = size + (2 if res.border != "none" else 0)
    img = np.full((rows_ * (cell + pad) + pad, cols_ * (cell + pad) + pad, 3), 255, np.uint8)
    flat = res.grid.ravel()
    where = np.flatnonzero(flat >= 0)
    for s in range(0, len(where), 1024):
        ws = where[s:s + 1024]
        tiles = framed(res, flat[ws], colours, size)
        th, tw = tiles.shape[1:3]
        for w, t in zip(ws, tiles):
            r, c = divmod(int(w), cols_)
            y, x = pad + r * (cell + pad), pad + c * (cell + pad)
            img[y:y + th, x:x + tw] = t
    captioned_png(res, path, img, f"{rows_}x{cols_} grid of {len(where)} images "
                                  f"({res.params.get('grid_method', '')})")


def legend_items(res) -> list[tuple[np.ndarray, str]]:
    """The colours of the frames and what they mean."""
    if res.border == "none":
        return []
    if res.border == "correct":
        return [(BORDER_RIGHT, "correct"), (BORDER_WRONG, "wrong")]
    key = "pred" if res.border == "pred" else "label"
    lab = res.table[key].to_numpy() if key in res.table else np.full(1, -1)
    k = max(int(lab.max()) + 1, len(res._names() or []), 1)
    pal = palette(k)
    names = res._names() or [str(i) for i in range(k)]
    items = [(pal[i], names[i] if i < len(names) else str(i)) for i in range(k)]
    return items + ([(BORDER_GREY, "no label")] if (lab < 0).any() else [])


def captioned_png(res, path: str, img: np.ndarray, title: str) -> None:
    """`img` with a caption strip: title, measures and the colour legend."""
    m = {k: res.metrics.get(k, float("nan"))
         for k in ("knn_accuracy_2d", "knn_accuracy_code", "trustworthiness")}
    lines = [title + ".",
             f"kNN accuracy (k={res.params.get('k')}): 2-D {m['knn_accuracy_2d']:.3f}, "
             f"code space {m['knn_accuracy_code']:.3f}; trustworthiness "
             f"{m['trustworthiness']:.3f}. Frames: {res.border}."]
    save_png(path, captioned(img, lines, legend_items(res)))
