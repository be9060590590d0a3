"""Figures of correspondence (METHODS.md §7): PCK against depth with the baselines, and example
pairs with their transfers. Drawn with `matplotlib.figure.Figure` (never pyplot: a notebook's
backend stays as it is), from a `CorrespondenceResult`'s tables. No torch here."""
from __future__ import annotations

import numpy as np

LABELS = {"features": "conv features (nearest neighbour)",
          "features_grid": "conv features, interpolated on the pixel grid",
          "pixels": "raw pixels (patch = receptive field)",
          "sift": "SIFT (descriptor = receptive field)"}
STYLES = {"features": dict(color="#1f77b4", marker="o", ls="-", lw=2),
          "features_grid": dict(color="#9467bd", marker="D", ls="-", lw=1.5),
          "pixels": dict(color="#7f7f7f", marker="s", ls="--", lw=1.5),
          "sift": dict(color="#ff7f0e", marker="^", ls=":", lw=1.5)}
RIGHT, WRONG = "#2ca02c", "#d62728"


def pck_plot(res, path: str) -> None:
    """PCK of every method against the layer's depth, with 95 % bootstrap bars."""
    from matplotlib.figure import Figure

    lay = res.layers.sort_values("depth")
    # at most 11 inches (1,210 px: the report's page width); many layers tilt their names
    width = max(6.5, 1.1 * len(lay) + 2.5)
    tilt = width > 11
    # under ~0.75 inch a layer (a ResNet's 20 convs and ReLUs), two-line names overlap
    # even tilted: one line each, steeper, in a taller figure
    crowded = (min(width, 11.0) - 2.5) / max(1, len(lay)) < 0.75
    height = 6.0 if crowded else 4.8 if tilt else 4.4
    fig = Figure(figsize=(min(width, 11.0), height), dpi=110)
    ax = fig.add_subplot()
    for method in LABELS:
        t = res.pck[res.pck.method == method].sort_values("depth")
        if t.empty:
            continue
        err = np.vstack([t.pck - t.ci_low, t.ci_high - t.pck])
        ax.errorbar(t.depth, t.pck, yerr=err, capsize=3, label=LABELS[method],
                    **STYLES[method])
    sep = " · " if crowded else "\n"
    ax.set_xticks(lay.depth, [f"{r.layer}{sep}RF {r.rf_size}, stride {r.stride}"
                              for r in lay.itertuples()], fontsize=7 if crowded else 8,
                  rotation=60 if crowded else 30 if tilt else 0,
                  ha="right" if tilt else "center", rotation_mode="anchor" if tilt else None)
    ax.set_ylim(0, 1.03)
    ax.set_xlabel("layer, from input to output (receptive field and stride in pixels)")
    ax.set_ylabel(f"PCK (share within {res.alpha:g}·max(h, w))")
    ax.grid(axis="y", alpha=0.3)
    n_pairs = int(res.transfers.pair.nunique())
    data = f" of {res.params['data']}" if res.params.get("data") else ""
    ax.set_title(f"{res.params.get('model', '')}: keypoint transfer on {n_pairs} "
                 f"{res.params.get('pairs', '')} pairs{data}, {res.params.get('metric')} "
                 "nearest neighbour\nbars: 95 % bootstrap interval over pairs", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)


def examples_figure(res, method: str, layer: str, path: str) -> None:
    """The example pairs side by side (A left, B right), each transfer of `method` at `layer`
    a line from the keypoint in A to where it landed in B: green right, red wrong."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    t = res.transfers[(res.transfers.method == method) & (res.transfers.layer == layer)]
    row = res.pck[(res.pck.method == method) & (res.pck.layer == layer)].iloc[0]
    examples = res.examples
    n = len(examples)
    height = 3.1 * n + 0.9
    fig = Figure(figsize=(6.4, height), dpi=110)
    axes = fig.subplots(n, 1, squeeze=False)
    for ax, (pair, a, b, title) in zip(axes[:, 0], examples):
        h, w = a.shape[:2]
        gap = max(2, w // 16)
        canvas = np.full((max(h, b.shape[0]), w + gap + b.shape[1], 3), 255, np.uint8)
        canvas[:h, :w], canvas[:b.shape[0], w + gap:] = a, b
        ax.imshow(canvas, interpolation="nearest")
        g = t[t.pair == pair]
        ok = g.error <= res.alpha * g.ref
        for r, good in zip(g.itertuples(), ok):
            ax.plot([r.x_a - 0.5, r.x_pred - 0.5 + w + gap], [r.y_a - 0.5, r.y_pred - 0.5],
                    color=RIGHT if good else WRONG, lw=1.2, alpha=0.9)
        ax.scatter(g.x_a - 0.5, g.y_a - 0.5, s=14, c="white", edgecolors="black", lw=0.6)
        ax.scatter(g.x_b - 0.5 + w + gap, g.y_b - 0.5, s=36, marker="X", c="yellow",
                   edgecolors="black", linewidths=0.6)
        ax.set_title(f"{title[:70]}: {int(ok.sum())}/{len(g)} correct", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Line2D([], [], color=RIGHT, label=f"correct (≤ {res.alpha:g}·max(h, w) px)"),
               Line2D([], [], color=WRONG, label="wrong"),
               Line2D([], [], ls="", marker="o", mfc="white", mec="black", label="keypoint in A"),
               Line2D([], [], ls="", marker="X", mfc="yellow", mec="black",
                      label="true point in B")]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"{LABELS[method]} at {layer} (RF {row.rf_size} px, stride {row.stride}):\n"
                 f"image A left, B right; PCK {row.pck:.2f} over all {row.pairs} pairs",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.5 / height, 1, 1))  # room for the legend below
    fig.savefig(path)
