"""The CAM family's side-by-side figure: each image, then each method's map over it (the
figure of docs/cams.md). Single results draw as Grad-CAM's do (`GradientMaps.pictures`).
A `matplotlib.figure.Figure`, no pyplot state."""
from __future__ import annotations

import numpy as np

from ...results import as_numpy
from ..gradients.figures import MAP_CMAP


def side_by_side(results: list, titles: list[str] | None = None, rows: int | None = None,
                 row_labels: list[str] | None = None, width: float = 1.6):
    """A grid: one row per image (the first `rows`), the input then each result's ``map``
    overlaid on it, each map scaled to its own maximum. `results` are `CamMaps` (or
    `GradientMaps`) of the same images."""
    from matplotlib.figure import Figure

    first = results[0]
    n = min(len(first.map), rows or len(first.map))
    cols = 1 + len(results)
    fig = Figure(figsize=(width * cols, width * n + 0.4))
    axes = fig.subplots(n, cols, squeeze=False)
    titles = titles or [r.kind for r in results]
    for i in range(n):
        img = as_numpy(first.images[i]).transpose(1, 2, 0)
        img = np.repeat(img, 3, 2) if img.shape[2] == 1 else img
        axes[i, 0].imshow(np.clip(img, 0, 1))
        if row_labels:
            axes[i, 0].set_ylabel(row_labels[i], fontsize=7)
        for j, r in enumerate(results, start=1):
            m = as_numpy(r.map[i]).astype(np.float64)
            hi = m.max()
            axes[i, j].imshow(np.clip(img, 0, 1))
            axes[i, j].imshow(m / hi if hi > 0 else m, cmap=MAP_CMAP, alpha=0.55, vmin=0, vmax=1)
    for j, t in enumerate(["input", *titles]):
        axes[0, j].set_title(t, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig
