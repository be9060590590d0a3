"""Per-channel activation statistics over a dataset (dead filters, sparsity): the reducer and
its tables. The activity views (`activation_stats`, the training monitor) and the scan collect
them."""
from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch

from ...engine import Reducer, channel_maps, shared

#: share of inputs whose map is all zero that makes a channel dead
DEAD_THRESHOLD = 0.99

__all__ = ["DEAD_THRESHOLD", "ActivationStats", "channel_table", "layer_table"]


# ------------------------------------------------------------------------------------------
# the reducer: per-channel statistics over a dataset
# ------------------------------------------------------------------------------------------
_STAT_FIELDS = ("n", "positions", "zero_maps", "zeros", "sum", "max")


class ActivationStats(Reducer):
    """Per channel, over a dataset: how often the whole map is zero, sparsity, mean, max.

    For each layer and channel it counts inputs seen (``n``), inputs whose map is all zero
    (``zero_maps``), exact zeros (``zeros``) among ``positions`` values per map, and keeps the
    sum (per image in float32, over images in float64) and max. All are sums or maxima, so
    `merge` is exact (the float64 sum up to its rounding, none for integer-valued maps).
    """

    needs_logits = False

    def __init__(self, layers: Sequence[str]):
        self.layers = list(layers)
        self.n: dict[str, int] = {}
        self.positions: dict[str, int] = {}
        self.zero_maps: dict[str, torch.Tensor] = {}
        self.zeros: dict[str, torch.Tensor] = {}
        self.sum: dict[str, torch.Tensor] = {}
        self.max: dict[str, torch.Tensor] = {}

    def summarize(self, layer: str, act: torch.Tensor):
        """``(n, positions, zero_maps, zeros, sum, max)`` of one batch, per channel.

        Three cheap passes over the map: the max, the sum and the count of non-zeros (as
        ``sum(|sign(A)|)``, several times faster than ``(A != 0).sum()``; NaN counts as zero).
        Sums are taken per image in float32, then over images in float64.
        """
        m = channel_maps(act)
        n, _, p = m.shape
        nonzero = m.sign().abs_().sum(2, dtype=torch.float32)          # (N, C)
        total = m.sum(2, dtype=torch.float32).sum(0, dtype=torch.float64)
        return (n, p, (nonzero == 0).sum(0), n * p - nonzero.sum(0, dtype=torch.float64).long(),
                total, shared.amax(act).amax(0).double())

    def update(self, batch, acts, logits=None) -> None:
        for name in self.layers:
            s = acts[name]
            if isinstance(s, torch.Tensor):  # fed by hand with the raw activation
                s = self.summarize(name, s.detach())
                shared.clear()
            n, p, zero_maps, zeros, total, mx = s
            if name not in self.n:
                self.n[name], self.positions[name] = 0, p
                c, dev = zero_maps.shape[0], zero_maps.device
                self.zero_maps[name] = torch.zeros(c, dtype=torch.long, device=dev)
                self.zeros[name] = torch.zeros(c, dtype=torch.long, device=dev)
                self.sum[name] = torch.zeros(c, dtype=torch.float64, device=dev)
                self.max[name] = torch.full((c,), float("-inf"), dtype=torch.float64, device=dev)
            dev = self.sum[name].device  # a resumed state lives on the CPU
            self.n[name] += n
            self.zero_maps[name] += zero_maps.to(dev)
            self.zeros[name] += zeros.to(dev)
            self.sum[name] += total.to(dev)
            self.max[name] = torch.maximum(self.max[name], mx.to(dev))

    def merge(self, other: "ActivationStats") -> "ActivationStats":
        for name in other.n:
            if name not in self.n:
                for d in _STAT_FIELDS:
                    getattr(self, d)[name] = getattr(other, d)[name]
                continue
            dev = self.sum[name].device
            self.n[name] += other.n[name]
            self.zero_maps[name] = self.zero_maps[name] + other.zero_maps[name].to(dev)
            self.zeros[name] = self.zeros[name] + other.zeros[name].to(dev)
            self.sum[name] = self.sum[name] + other.sum[name].to(dev)
            self.max[name] = torch.maximum(self.max[name], other.max[name].to(dev))
        return self

    def spawn(self) -> "ActivationStats":
        return ActivationStats(self.layers)

    def state_dict(self):
        out = {d: dict(getattr(self, d)) for d in ("n", "positions")}
        out.update({d: {k: v.cpu() for k, v in getattr(self, d).items()}
                    for d in ("zero_maps", "zeros", "sum", "max")})
        return out | {"layers": self.layers}

    def load_state_dict(self, state):
        self.layers = list(state["layers"])
        for d in _STAT_FIELDS:
            setattr(self, d, dict(state[d]))

    def finalize(self, threshold: float = DEAD_THRESHOLD) -> pd.DataFrame:
        """The channel table (`channel_table`); `StatsResult.from_reducer` makes the result."""
        return channel_table(self.to("cpu"), threshold)


def channel_table(stats: ActivationStats, threshold: float = DEAD_THRESHOLD) -> pd.DataFrame:
    """One row per (layer, channel): zero-map fraction, sparsity, mean, max, dead."""
    rows = []
    for name in stats.layers:
        if name not in stats.n:
            continue
        n, p = stats.n[name], stats.positions[name]
        zf = (stats.zero_maps[name].double() / n).numpy()
        sp = (stats.zeros[name].double() / (n * p)).numpy()
        mean = (stats.sum[name] / (n * p)).numpy()
        mx = stats.max[name].numpy()
        for c in range(len(zf)):
            rows.append({"layer": name, "channel": c, "n": n, "zero_map_fraction": zf[c],
                         "sparsity": sp[c], "mean": mean[c], "max": mx[c],
                         "dead": bool(zf[c] >= threshold)})
    return pd.DataFrame(rows)


def layer_table(channels: pd.DataFrame) -> pd.DataFrame:
    """Per layer: channels, dead fraction, mean sparsity (in layer order)."""
    if channels.empty:
        return pd.DataFrame(columns=["layer", "channels", "dead", "dead_fraction", "mean_sparsity"])
    g = channels.groupby("layer", sort=False)
    return pd.DataFrame({
        "layer": list(g.groups),
        "channels": g.size().values,
        "dead": g["dead"].sum().values.astype(int),
        "dead_fraction": g["dead"].mean().values,
        "mean_sparsity": g["sparsity"].mean().values,
    })
