"""Layer activations and dead filters (METHODS.md §1; the seed's "Layer Activations").

The tensor shown for a layer is the output of that named module. In the built-in nets and
torchvision's, a conv is followed by a ``ReLU`` module: name the ReLU (``features.1``) for the
post-ReLU maps the seed talks about, the conv (``features.0``) for pre-ReLU ones. By default
convlens picks every ReLU module (post-ReLU); for a model without ReLU modules (functional
``F.relu``), every conv layer (pre-ReLU).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ...engine import Reducer, channel_maps, local_pass, shared
from ...errors import ConvlensError
from ...hooks import capture, model_of, preserved
from ...lens import as_batch, as_lens, lens_and_data
from ...results import Result

DEAD_THRESHOLD = 0.99


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


@dataclass
class StatsResult(Result):
    """Per-channel activation statistics over a dataset, and per-layer dead fractions."""

    channels: pd.DataFrame
    layers: pd.DataFrame
    threshold: float = DEAD_THRESHOLD
    skipped: int = 0
    kind: str = "activation_stats"

    @classmethod
    def from_reducer(cls, stats: ActivationStats, threshold: float = DEAD_THRESHOLD,
                     skipped: int = 0) -> "StatsResult":
        ch = channel_table(stats, threshold)
        return cls(ch, layer_table(ch), threshold, skipped)

    def dead(self, layer: str) -> list[int]:
        """Dead channels of `layer`."""
        t = self.channels
        return t[(t.layer == layer) & t.dead].channel.tolist()

    def tables(self):
        return {"channels": self.channels, "layers": self.layers}

    def info(self):
        return {"threshold": self.threshold, "skipped": self.skipped,
                "images": int(self.channels.n.max()) if len(self.channels) else 0,
                "layers": self.layers.to_dict("records")}

    def pictures(self):
        pics = {}
        for layer in self.layers.layer:
            pics[f"stats_{layer}"] = lambda path, layer=layer: self._bar(layer, path)
        return pics

    def _bar(self, layer: str, path: str) -> None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        t = self.channels[self.channels.layer == layer]
        fig, ax = plt.subplots(figsize=(max(5, min(9, len(t) * 0.12)), 2.6), dpi=100)
        colours = np.where(t.dead, "#d62728", "#1f77b4")
        ax.bar(t.channel, t.zero_map_fraction, color=colours, width=0.9)
        ax.axhline(self.threshold, color="#d62728", lw=0.8, ls="--")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("channel")
        ax.set_ylabel("inputs with all-zero map")
        dead = int(t.dead.sum())
        ax.set_title(f"{layer}: {dead}/{len(t)} dead (≥{self.threshold:.0%} zero), "
                     f"mean sparsity {t.sparsity.mean():.2f}", fontsize=9)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)

    about = ("Dead filters and sparsity over a dataset (the seed's §1): for every channel, the "
             "share of inputs whose map is zero everywhere. A channel is dead when that share "
             "reaches the threshold (red bars); many dead channels point at a too-high learning "
             "rate. Sparsity is the share of exact zeros in the maps.")

    def figures(self):
        from ...results import figure, panel
        return [figure(str(r.layer), [panel(f"stats_{r.layer}", kind="plot", caption=[
            f"{int(r.dead)} of {int(r.channels)} channels dead, mean sparsity "
            f"{float(r.mean_sparsity):.2f}"])]) for r in self.layers.itertuples()]

    def _repr_html_(self) -> str:
        return self.layers.to_html(index=False)


def activation_stats(lens, data, layers: str | Sequence[str] | None = None,
                     threshold: float = DEAD_THRESHOLD, batch_size: int = 64, workers: int = 0,
                     progress: bool = True, limit: int | None = None,
                     indices: Sequence[int] | None = None) -> StatsResult:
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
    for n in names:
        lens.layer(n)
    reducer = ActivationStats(names)
    if limit is not None and limit < 1:
        raise ConvlensError(f"limit must be at least 1, got {limit}")
    if not 0 < threshold <= 1:
        raise ConvlensError(f"threshold must be in (0, 1], got {threshold}")
    if indices is None and limit:
        indices = range(min(limit, len(data)))
    loader = local_pass(lens, data, [reducer], batch_size=batch_size, workers=workers,
                        progress=progress, desc="activation stats", indices=indices)
    return StatsResult.from_reducer(reducer, threshold, skipped=len(loader.skipped))


@dataclass
class ActivationsResult(Result):
    """Activation maps of a batch: ``maps[layer]`` is ``(N, C, H, W)`` (or ``(N, C)``)."""

    images: torch.Tensor                       # (N, C, H, W) in [0, 1] for display
    maps: dict[str, torch.Tensor]
    predictions: torch.Tensor                  # (N,) predicted class
    labels: list[str] = field(default_factory=list)
    kind: str = "activations"

    def scale(self, layer: str) -> tuple[float, float]:
        """The one display scale of a layer: [min, max] over the batch and all channels."""
        m = self.maps[layer]
        return float(min(0.0, m.min())), float(m.max())

    def stats(self, layer: str) -> pd.DataFrame:
        """Per-channel statistics of this batch."""
        s = ActivationStats([layer])
        s.update(None, {layer: self.maps[layer]})
        return channel_table(s)

    def arrays(self):
        out = {"images": self.images, "predictions": self.predictions}
        out.update({f"act_{k}": v for k, v in self.maps.items()})
        return out

    def tables(self):
        return {"channel_stats": pd.concat([self.stats(k) for k in self.maps], ignore_index=True)}

    def info(self):
        return {"layers": list(self.maps), "scales": {k: self.scale(k) for k in self.maps},
                "shapes": {k: list(v.shape[1:]) for k, v in self.maps.items()},
                "predictions": [self.labels[p] if p < len(self.labels) else str(p)
                                for p in self.predictions.tolist()],
                "tensor": "output of each named module (post-ReLU for ReLU modules)"}

    def grid(self, layer: str, i: int, cols: int | None = None, scale: int | None = None) -> np.ndarray:
        """Channel tiles of image `i` at `layer`, grey, one shared scale for the layer."""
        from ...draw import tile_grid, to_uint8

        m = self.maps[layer][i].numpy()
        if m.ndim == 1:  # a vector layer: one row of 1×1 tiles is unreadable; show as a strip
            m = m[:, None, None]
        lo, hi = self.scale(layer)
        tiles = to_uint8(m, lo, hi)
        side = tiles.shape[-1]
        return tile_grid(tiles, cols=cols, pad=1, scale=scale or max(1, 48 // max(side, 1)),
                         pad_value=80)

    about = ("Layer activations (the seed's §1): every channel of a layer as a grey tile, for "
             "one image. One scale per layer (black = 0, white = the layer's largest value in "
             "the batch), so a channel that stays black is silent for this image; trained ReLU "
             "networks give sparse, local maps.")

    def figures(self):
        from ...results import figure, panel, scale

        out = []
        for i in range(len(self.images)):
            p = int(self.predictions[i])
            name = self.labels[p] if p < len(self.labels) else str(p)
            panels = [panel(f"input_{i}", "input", [f"predicted: {name}"], kind="image")]
            for layer, m in self.maps.items():
                if m.dim() == 4:
                    lo, hi = self.scale(layer)
                    panels.append(panel(f"act_{i}_{layer}", f"{layer}: {m.shape[1]} channels",
                                        scale=scale(lo, hi, "activation", "gray")))
            out.append(figure(f"image {i}", panels))
        return out

    def pictures(self):
        from ...draw import image_hwc
        pics = {}
        for i in range(len(self.images)):
            pics[f"input_{i}"] = image_hwc(self.images[i].numpy())
            for layer, m in self.maps.items():
                if m.dim() == 4:
                    pics[f"act_{i}_{layer}"] = self.grid(layer, i)
        return pics



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
