"""Figures of the synthesis views (METHODS.md §6): the inversion strip and its errors by layer,
and the labelled grid of class models and feature visualisations. Drawn with
`matplotlib.figure.Figure` (never pyplot: a notebook's backend stays as it is), from the
results' arrays."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ...draw import image_hwc
from ...results import as_numpy


def inversion_strip(res, path: str, max_images: int = 8) -> None:
    """Rows: images; columns: the original, then its reconstruction from each layer with both
    errors under it (`InversionResult`)."""
    from matplotlib.figure import Figure

    n = min(max_images, res.original.shape[0])
    cols = len(res.layers) + 1
    fig = Figure(figsize=(1.45 * cols + 0.3, 1.75 * n + 0.9), dpi=100)
    axes = fig.subplots(n, cols, squeeze=False)
    orig, rec = as_numpy(res.original), as_numpy(res.reconstructions)
    for r in range(n):
        ax = axes[r, 0]
        ax.imshow(image_hwc(orig[r]), interpolation="nearest")
        ax.set_xlabel(f"class: {res.label(int(res.original_predicted[r]))}", fontsize=7)
        if r == 0:
            ax.set_title("original", fontsize=8)
        for i, layer in enumerate(res.layers):
            ax = axes[r, i + 1]
            ax.imshow(image_hwc(rec[i, r]), interpolation="nearest")
            pred = int(res.predicted[i, r])
            mark = "" if pred == int(res.original_predicted[r]) else " ✗"
            ax.set_xlabel(f"rep {float(res.rep_error[i, r]):.2f}  "
                          f"px {float(res.pixel_error[i, r]):.2f}\n"
                          f"→ {res.label(pred)}{mark}", fontsize=7)
            if r == 0:
                ax.set_title(layer, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Images reconstructed from each layer's code (Mahendran & Vedaldi 2015). "
                 "Under each: rep = ||Φ(x*)−Φ0||/||Φ0||, px = ||x*−x0||/||x0||, "
                 "→ the class the model gives it (✗: not the original's)", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path)


def inversion_errors(res, path: str) -> None:
    """Mean representation and pixel error per layer (bars: one std over the images)."""
    from matplotlib.figure import Figure

    t = res.layer_table()
    x = np.arange(len(t))
    fig = Figure(figsize=(max(4.5, 0.8 * len(t) + 2), 3.2), dpi=100)
    ax = fig.add_subplot()
    ax.errorbar(x, t.rep_error, yerr=t.rep_error_sd, marker="o", capsize=3,
                label="representation error ||Φ(x*)−Φ0||/||Φ0||")
    ax.errorbar(x, t.pixel_error, yerr=t.pixel_error_sd, marker="s", capsize=3,
                label="pixel error ||x*−x0||/||x0||")
    ax.set_xticks(x)
    ax.set_xticklabels(t.layer, rotation=30, ha="right", fontsize=8)
    ax.set_xlabel("layer (input → output)")
    ax.set_ylabel("relative error (0 = exact)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"Reconstruction errors per layer, mean of {int(t.images[0])} images",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def image_grid(path: str, images: np.ndarray, titles: Sequence[str], title: str,
               cols: int | None = None) -> None:
    """A grid of ``(C, H, W)`` images in [0, 1], each with its title, under `title`."""
    from matplotlib.figure import Figure

    n = len(images)
    cols = cols or min(12, max(1, math.ceil(math.sqrt(n * 1.5))))
    rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(1.35 * cols + 0.3, 1.75 * rows + 0.8), dpi=100)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        ax = axes.flat[i]
        ax.imshow(image_hwc(images[i]), interpolation="nearest")
        ax.set_title(titles[i], fontsize=7)
    fig.suptitle(title, fontsize=8, wrap=True)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path)
