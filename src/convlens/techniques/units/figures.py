"""The units family's drawing: the scan's confusion chart (`matplotlib.figure.Figure`, never
pyplot) and the grids of a layer's units (numpy and PIL only)."""
from __future__ import annotations

import math
import textwrap

import numpy as np


def confusion(res, path: str) -> None:
    """Rows: the data's classes; columns: the model's predictions (the 20 most frequent when
    there are more); each row as shares of that class's images."""
    from matplotlib.figure import Figure

    p = res.predictions
    classes = res.params.get("classes") or []
    labels = res.params.get("labels") or []
    rows = sorted(int(v) for v in p["label"].unique())
    counts = p["pred"].value_counts()
    cols = sorted(int(v) for v in counts.index[:20])
    if classes and labels and [c.lower() for c in classes] == [c.lower() for c in labels]:
        cols = sorted(set(cols) | set(r for r in rows if r >= 0))
    m = np.zeros((len(rows), len(cols)))
    ri, ci = {r: i for i, r in enumerate(rows)}, {c: j for j, c in enumerate(cols)}
    for lab, pred in zip(p["label"].to_numpy(), p["pred"].to_numpy()):
        if int(pred) in ci:
            m[ri[int(lab)], ci[int(pred)]] += 1
    share = m / np.maximum(m.sum(1, keepdims=True), 1)
    name = lambda names, k: names[k] if 0 <= k < len(names) else ("(none)" if k < 0 else str(k))  # noqa: E731
    # at least a readable size: a few classes against one prediction was a cramped 2 x 1 grid
    w = min(12.0, max(5.5, 2.5 + 0.45 * len(cols)))
    h = min(10.0, max(4.0, 1.8 + 0.35 * len(rows)))
    fig = Figure(figsize=(w, h), dpi=100)
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(cols)), [name(labels, c) for c in cols], rotation=60, ha="right",
                  fontsize=8)
    ax.set_yticks(range(len(rows)), [name(classes or labels, r) for r in rows], fontsize=8)
    ax.set_xlabel("predicted (the model's classes)")
    ax.set_ylabel("label (the data's classes)")
    if len(rows) * len(cols) <= 400:
        for i in range(len(rows)):
            for j in range(len(cols)):
                if m[i, j]:
                    ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.6 else "black")
    fig.colorbar(im, ax=ax, label="share of the class's images")
    ax.set_title(textwrap.fill(res.accuracy_note(), int(w * 12)), fontsize=9)  # fits: wrapped
    fig.tight_layout()
    fig.savefig(path)


def _scale(side: int, target: int) -> int:
    return max(1, target // max(1, side))


def patch_grid(res, u: int, cols: int | None = None) -> np.ndarray:
    """Unit row `u`'s top-k patches of a `UnitsResult` in a grid (nearest-neighbour enlarged)."""
    from ...draw import tile_grid

    k = int((res.image_of[u] >= 0).sum())
    return tile_grid(res.patches[u, :k], cols=cols or math.ceil(math.sqrt(max(k, 1))),
                     pad=2, scale=_scale(max(res.patches.shape[2:4]), 64), pad_value=255)


def box_grid(res, u: int, cols: int | None = None) -> np.ndarray:
    """Unit row `u`'s top-k images with the receptive-field box of the arg-max drawn."""
    from ...draw import draw_box, tile_grid

    k = int((res.image_of[u] >= 0).sum())
    h, w = res.images.shape[1:3]
    s = _scale(max(h, w), 112)
    tiles = []
    for j in range(k):
        img = res.images[res.image_of[u, j]].repeat(s, 0).repeat(s, 1)
        x0, y0, x1, y1 = (int(v) * s for v in res.boxes[u, j])
        tiles.append(draw_box(img, (x0, y0, x1, y1), colour=(255, 0, 0), width=max(1, s // 2)))
    return tile_grid(np.stack(tiles) if tiles else np.zeros((0, h * s, w * s, 3), np.uint8),
                     cols=cols or math.ceil(math.sqrt(max(k, 1))), pad=2, pad_value=255)


def overview(res) -> np.ndarray:
    """One row per unit: its top-k patches, best first."""
    from ...draw import tile_grid

    u, k = res.index.shape
    tiles = res.patches.reshape(u * k, *res.patches.shape[2:])
    return tile_grid(tiles, cols=k, pad=1, scale=_scale(max(res.patches.shape[2:4]), 32),
                     pad_value=255)


def png(path: str, image: np.ndarray) -> None:
    from ...draw import save_png
    save_png(path, image)
