"""Layer activations and dead filters (METHODS.md §1; the seed's "Layer Activations").

The tensor shown for a layer is the output of that named module. In the built-in nets and
torchvision's, a conv is followed by a ``ReLU`` module: name the ReLU (``features.1``) for the
post-ReLU maps the seed talks about, the conv (``features.0``) for pre-ReLU ones. By default
convlens picks every ReLU module (post-ReLU); for a model without ReLU modules (functional
``F.relu``), every conv layer (pre-ReLU).
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch
from torch import nn

from ...engine import Reducer, channel_maps, local_pass, shared
from ...engine.settings import RunSettings, as_run
from ...errors import ConvlensError
from ...hooks import capture, model_of, preserved
from ...lens import as_batch, as_lens, lens_and_data
from .results import DEAD_THRESHOLD, ActivationsResult, StatsResult

__all__ = ["DEAD_THRESHOLD", "ActivationStats", "activation_stats", "activations",
           "channel_table", "default_layers", "layer_table"]


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

    def finalize(self, threshold: float = 0.99):
        return StatsResult.from_reducer(self.to("cpu"), threshold)


def default_layers(lens, spatial_only: bool = False) -> list[str]:
    """Every ReLU module (post-ReLU maps), or every conv if the model has no ReLU modules."""
    mods = list(model_of(lens).named_modules())
    relus = [n for n, m in mods if isinstance(m, nn.ReLU)]
    if spatial_only and relus:
        shapes = {i.name: i.shape for i in lens.layers()}
        relus = [n for n in relus if shapes.get(n) is not None and len(shapes[n]) == 3]
    return relus or [n for n, m in mods if isinstance(m, nn.Conv2d)]


def _layers(lens, layers) -> list[str]:
    if layers is None:
        return default_layers(lens)
    return [layers] if isinstance(layers, str) else list(layers)


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


def activation_stats(lens, data, layers: str | Sequence[str] | None = None,
                     threshold: float = DEAD_THRESHOLD, n: int | None = None,
                     indices: Sequence[int] | None = None,
                     run: RunSettings | None = None) -> StatsResult:
    """Dead filters and sparsity of `layers`, streamed over a whole dataset.

    A channel is *dead* when its map is zero everywhere for at least `threshold` of the inputs
    (the seed: dead filters are a symptom of a too-high learning rate). Sparsity is the
    fraction of exact zeros. Built on the `ActivationStats` reducer of the dataset pass.

    Example::

        st = activation_stats(lens, load_data("builtin:fashion-mnist:test"))
        st.layers            # layer, channels, dead, dead_fraction, mean_sparsity
    """
    lens, data = lens_and_data(lens, data)
    names = _layers(lens, layers)
    for name in names:
        lens.layer(name)
    reducer = ActivationStats(names)
    if n is not None and n < 1:
        raise ConvlensError(f"n must be at least 1, got {n}")
    if not 0 < threshold <= 1:
        raise ConvlensError(f"threshold must be in (0, 1], got {threshold}")
    if indices is None and n:
        indices = range(min(n, len(data)))
    run = as_run(run)
    loader = local_pass(lens, data, [reducer], batch_size=run.batch_size, workers=run.workers,
                        progress=run.progress, desc="activation stats", indices=indices)
    return StatsResult.from_reducer(reducer, threshold, skipped=len(loader.skipped))


def activations(lens, x: torch.Tensor, layers: str | Sequence[str] | None = None) -> ActivationsResult:
    """The activation maps of `layers` for a batch ``x: (N, C, H, W)`` (normalised).

    Example::

        res = activations(lens, x, ["features.1", "features.4"])
        res.maps["features.1"].shape      # (N, C, H, W)
        res.save("out/")                  # one tile grid per image and layer, one scale per layer
    """
    lens = as_lens(lens, x)
    x = as_batch(lens, x)
    names = _layers(lens, layers)
    for n in names:
        lens.layer(n)  # an unknown name: error naming the close matches
    with preserved(lens), torch.no_grad():
        lens.eval()
        with capture(lens, names) as cap:
            logits = lens(x)
        maps = {n: cap[n].float().cpu() for n in names}
    return ActivationsResult(lens.to_unit(x.detach()).float().cpu(), maps, logits.argmax(1).cpu(),
                             list(lens.labels or []))
