"""Drawing of the faithfulness view: the mean curves with their bands, and every metric's
methods best first with their intervals (matplotlib `Figure`, never pyplot)."""
from __future__ import annotations

import numpy as np
import pandas as pd


def _figure(**kw):
    from matplotlib.figure import Figure
    return Figure(**kw)


def _colours(methods) -> dict:
    import matplotlib

    cycle = matplotlib.colormaps["tab20"].colors
    return {m: ("0.5" if m == "random" else cycle[i % len(cycle)]) for i, m in enumerate(methods)}


def curves_figure(curves: pd.DataFrame, kind: str, label: str, path: str, title: str) -> None:
    """One curve kind: the target's mean probability against the fraction of pixels removed
    or revealed, one line and band per method (random: grey, dashed)."""
    c = curves[curves.curve == kind]
    methods = list(dict.fromkeys(curves.method))
    col = _colours(methods)
    fig = _figure(figsize=(6.4, 4.2), dpi=100)
    ax = fig.add_subplot()
    for m in methods:
        d = c[c.method == m]
        if d.empty:
            continue
        ax.plot(d.x, d["mean"], "--" if m == "random" else "-", color=col[m], lw=1.4, label=m)
        ax.fill_between(d.x, d.low, d.high, color=col[m], alpha=0.15, lw=0)
    removed = kind != "insertion"
    ax.set_xlabel("fraction of pixels " + ("removed" if removed else "revealed"))
    ax.set_ylabel("probability of the predicted class")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="best")
    ax.set_title(f"{label}: {title}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def ranking_figure(table: pd.DataFrame, titles: dict, path: str, title: str) -> None:
    """A panel per metric: each method's mean and 95 % interval, the best on top."""
    metrics = [k for k in dict.fromkeys(table.metric) if table[table.metric == k]["images"].max()]
    methods = list(dict.fromkeys(table.method))
    col = _colours(methods)
    cols = min(4, max(1, len(metrics)))
    rows = int(np.ceil(len(metrics) / cols)) or 1
    fig = _figure(figsize=(3.0 * cols, 0.22 * len(methods) * rows + 1.35 * rows + 0.4), dpi=100)
    for j, k in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, j + 1)
        t = table[table.metric == k].sort_values(["rank", "method"], ascending=[False, False])
        y = np.arange(len(t))
        for yi, row in zip(y, t.itertuples()):
            ax.errorbar(row.mean, yi, xerr=[[row.mean - row.low], [row.high - row.mean]],
                        fmt="o", ms=3.5, color=col[row.method], capsize=2, lw=1)
        ax.set_yticks(y)
        ax.set_yticklabels(t.method, fontsize=7)
        better = t.better.iloc[0] if len(t) else ""
        ax.set_title(f"{titles.get(k, k)}\n({better} is better)", fontsize=7.5)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
