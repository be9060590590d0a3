"""The activity family's drawing: activation tiles, filter tiles, the dead-filter bars and the
training monitor's curves. Charts use `matplotlib.figure.Figure` (never pyplot), so drawing in
a notebook leaves its backend alone."""
from __future__ import annotations

import numpy as np


def activation_grid(res, layer: str, i: int, cols: int | None = None,
                    scale: int | None = None) -> np.ndarray:
    """Channel tiles of image `i` at `layer` of an `ActivationsResult`, grey, one shared scale
    for the layer."""
    from ...draw import tile_grid, to_uint8

    m = res.maps[layer][i].numpy()
    if m.ndim == 1:  # a vector layer: one row of 1×1 tiles is unreadable; show as a strip
        m = m[:, None, None]
    lo, hi = res.scale(layer)
    tiles = to_uint8(m, lo, hi)
    side = tiles.shape[-1]
    return tile_grid(tiles, cols=cols, pad=1, scale=scale or max(1, 48 // max(side, 1)),
                     pad_value=80)


def filter_tiles(res, max_filters: int = 64, max_slices: int = 32,
                 scale: int | None = None) -> np.ndarray:
    """The weights of a `FiltersResult` as tiles on one shared scale (0 is mid-grey): RGB/grey
    for filters that see the image, else one row per filter of its input-channel slices."""
    from ...draw import tile_grid, to_uint8

    w = res.weights[:max_filters].numpy()
    m = float(np.abs(w).max()) or 1.0
    side = max(w.shape[-2:])
    scale = scale or max(1, 48 // side)
    if res.sees_image and w.shape[1] in (1, 3):
        tiles = to_uint8(w, -m, m).transpose(0, 2, 3, 1)
        if tiles.shape[-1] == 1:
            tiles = tiles[..., 0]
        return tile_grid(tiles, pad=1, scale=scale, pad_value=0)
    slices = to_uint8(w[:, :max_slices], -m, m)           # (F, S, h, w)
    f, s = slices.shape[:2]
    return tile_grid(slices.reshape(f * s, *slices.shape[2:]), cols=s, pad=1, scale=scale,
                     pad_value=0)


def stats_bars(res, layer: str, path: str) -> None:
    """One bar per channel of `layer` (a `StatsResult`): the share of inputs with an all-zero
    map, dead channels in red, the threshold dashed."""
    from matplotlib.figure import Figure

    t = res.channels[res.channels.layer == layer]
    fig = Figure(figsize=(max(5, min(9, len(t) * 0.12)), 2.6), dpi=100)
    ax = fig.add_subplot()
    colours = np.where(t.dead, "#d62728", "#1f77b4")
    ax.bar(t.channel, t.zero_map_fraction, color=colours, width=0.9)
    ax.axhline(res.threshold, color="#d62728", lw=0.8, ls="--")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("channel")
    ax.set_ylabel("inputs with all-zero map")
    dead = int(t.dead.sum())
    ax.set_title(f"{layer}: {dead}/{len(t)} dead (≥{res.threshold:.0%} zero), "
                 f"mean sparsity {t.sparsity.mean():.2f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def monitor_plot(res, path: str) -> None:
    """A `MonitorResult`'s three curves per layer against the step: sparsity, dead channels,
    filter noise."""
    from matplotlib.figure import Figure

    h = res.history
    fig = Figure(figsize=(13, 3.4), dpi=100)
    axes = fig.subplots(1, 3)
    for ax, col, kind, label in [(axes[0], "sparsity", "activation",
                                  "mean sparsity (share of zeros)"),
                                 (axes[1], "dead_fraction", "activation", "dead channels (share)"),
                                 (axes[2], "noise", "filters", "median filter noise score")]:
        for layer, t in h[h.kind == kind].groupby("layer", sort=False):
            ax.plot(t.step, t[col], marker=".", label=layer)
        ax.set_xlabel("step")
        ax.set_title(label, fontsize=10)
    axes[0].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    if res.title:
        fig.suptitle(res.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
