"""Drawing of the concepts family (matplotlib `Figure`, never pyplot)."""
from __future__ import annotations

import numpy as np
import pandas as pd

COLOURS = {"object": "#1f77b4", "texture": "#2ca02c", "colour": "#d62728", "concept": "#7f7f7f"}


def _figure(**kw):
    from matplotlib.figure import Figure
    return Figure(**kw)


def detectors_figure(detectors: pd.DataFrame, units: pd.DataFrame, path: str, title: str) -> None:
    """Bau et al.'s Fig. 5: the number of unique detectors per category at each layer."""
    layers = list(dict.fromkeys(units.layer))
    cats = sorted(set(detectors.category)) or ["object"]
    fig = _figure(figsize=(max(4.5, 1.1 * len(layers) + 2), 3.4), dpi=100)
    ax = fig.add_subplot()
    width = 0.8 / len(cats)
    x = np.arange(len(layers))
    for j, c in enumerate(cats):
        d = detectors[detectors.category == c].set_index("layer")["unique"]
        ax.bar(x + (j - (len(cats) - 1) / 2) * width, [int(d.get(lay, 0)) for lay in layers],
               width, label=c, color=COLOURS.get(c, None))
    ax.set_xticks(x)
    ax.set_xticklabels(layers, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("unique detectors")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def best_units_figure(units: pd.DataFrame, path: str, title: str, k: int = 15) -> None:
    """The `k` units of highest IoU: layer/unit, concept, IoU (the rule's line dashed)."""
    top = units.sort_values("iou", ascending=False).head(k).iloc[::-1]
    fig = _figure(figsize=(6.4, 0.28 * len(top) + 1.2), dpi=100)
    ax = fig.add_subplot()
    y = np.arange(len(top))
    ax.barh(y, top.iou, color=[COLOURS.get(c, "#7f7f7f") for c in top.category])
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r.layer} #{r.unit}: {r.concept}" for r in top.itertuples()],
                       fontsize=7)
    ax.axvline(0.04, color="0.4", ls="--", lw=1)
    ax.set_xlabel("IoU")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
