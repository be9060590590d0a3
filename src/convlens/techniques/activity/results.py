"""The activity family's results: activation maps of a batch, dead filters over a dataset,
filter weights and a training run's monitor table. Drawing is in `figures`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ...results import Result, pictures_html
from .stats import DEAD_THRESHOLD, ActivationStats, channel_table, layer_table

if TYPE_CHECKING:
    import torch


@dataclass
class StatsResult(Result):
    """Per-channel activation statistics over a dataset, and per-layer dead fractions."""

    channels: pd.DataFrame
    layers: pd.DataFrame
    threshold: float = DEAD_THRESHOLD
    skipped: int = 0
    kind: str = "activation_stats"

    @classmethod
    def from_reducer(cls, stats, threshold: float = DEAD_THRESHOLD,
                     skipped: int = 0) -> "StatsResult":
        """From an `ActivationStats` reducer (`convlens.techniques.activity.stats`)."""
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
                "n": int(self.channels.n.max()) if len(self.channels) else 0,
                "layers": self.layers.to_dict("records")}

    def pictures(self):
        from .figures import stats_bars

        pics = {}
        for layer in self.layers.layer:
            pics[f"stats_{layer}"] = lambda path, layer=layer: stats_bars(self, layer, path)
        return pics

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


@dataclass
class ActivationsResult(Result):
    """Activation maps of a batch: ``maps[layer]`` is ``(N, C, H, W)`` (or ``(N, C)``);
    ``predicted (N,)`` the model's class of each image, ``labels`` the model's class names."""

    images: torch.Tensor                       # (N, C, H, W) in [0, 1] for display
    maps: dict[str, torch.Tensor]
    predicted: torch.Tensor                    # (N,) predicted class
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
        out = {"images": self.images, "predicted": self.predicted}
        out.update({f"act_{k}": v for k, v in self.maps.items()})
        return out

    def _fields(self, arrays, tables):
        # the maps are the act_<layer> arrays, in layer order (`_loaded` makes the dict again)
        maps, self.maps = self.maps, {}
        try:
            out = super()._fields(arrays, tables)
        finally:
            self.maps = maps
        out["maps"] = {"arrays": [f"act_{k}" for k in maps]}
        return out

    def _loaded(self, saved) -> None:
        if isinstance(self.maps, list):
            self.maps = dict(zip(saved.info["layers"], self.maps))

    def tables(self):
        return {"channel_stats": pd.concat([self.stats(k) for k in self.maps], ignore_index=True)}

    def _name(self, k: int) -> str:
        return self.labels[k] if 0 <= k < len(self.labels) else str(k)

    def info(self):
        return {"layers": list(self.maps), "scales": {k: self.scale(k) for k in self.maps},
                "shapes": {k: list(v.shape[1:]) for k, v in self.maps.items()},
                "predicted": [self._name(p) for p in self.predicted.tolist()],
                "tensor": "output of each named module (post-ReLU for ReLU modules)"}

    def grid(self, layer: str, i: int, cols: int | None = None,
             scale: int | None = None) -> np.ndarray:
        """Channel tiles of image `i` at `layer`, grey, one shared scale for the layer."""
        from .figures import activation_grid
        return activation_grid(self, layer, i, cols, scale)

    about = ("Layer activations (the seed's §1): every channel of a layer as a grey tile, for "
             "one image. One scale per layer (black = 0, white = the layer's largest value in "
             "the batch), so a channel that stays black is silent for this image; trained ReLU "
             "networks give sparse, local maps.")

    def _spatial(self) -> list[str]:
        return [layer for layer, m in self.maps.items() if m.dim() == 4]

    def figures(self):
        from ...results import figure, panel, scale

        out = []
        for i in range(len(self.images)):
            panels = [panel(f"input_{i}", "input",
                            [f"predicted: {self._name(int(self.predicted[i]))}"], kind="image")]
            for layer in self._spatial():
                lo, hi = self.scale(layer)
                panels.append(panel(f"act_{i}_{layer}",
                                    f"{layer}: {self.maps[layer].shape[1]} channels",
                                    scale=scale(lo, hi, "activation", "gray")))
            out.append(figure(f"image {i}", panels))
        return out

    def per_image(self) -> list[list[str]]:
        """None for the images page: a layer's tile grid (64 tiles and more on a ResNet) is no
        map to set beside the others; the activations page shows each image's grids."""
        return []

    def pictures(self):
        from ...draw import image_hwc
        pics = {}
        for i in range(len(self.images)):
            pics[f"input_{i}"] = image_hwc(self.images[i].numpy())
            for layer in self._spatial():
                pics[f"act_{i}_{layer}"] = self.grid(layer, i)
        return pics


@dataclass
class FiltersResult(Result):
    """Weights of one layer as tiles, with a noise score and verdict per filter."""

    layer: str
    weights: torch.Tensor          # (F, C, h, w)
    scores: np.ndarray             # (F,)
    threshold: float
    sees_image: bool               # first layer, or a linear layer reshaped to the image
    kind: str = "filters"

    @property
    def noisy(self) -> np.ndarray:
        return self.scores > self.threshold

    @property
    def verdict(self) -> str:
        """The layer's verdict: from the median filter's score."""
        return "noisy" if float(np.median(self.scores)) > self.threshold else "smooth"

    def table(self) -> pd.DataFrame:
        return pd.DataFrame({"filter": np.arange(len(self.scores)), "noise_score": self.scores,
                             "verdict": np.where(self.noisy, "noisy", "smooth"),
                             "l2_norm": self.weights.flatten(1).norm(dim=1).numpy()})

    def tables(self):
        return {"filters": self.table()}

    def arrays(self):
        return {"weights": self.weights, "noise_scores": self.scores}

    def info(self):
        return {"layer": self.layer, "shape": list(self.weights.shape), "threshold": self.threshold,
                "verdict": self.verdict, "median_score": float(np.median(self.scores)),
                "noisy_filters": int(self.noisy.sum()), "filters": int(len(self.scores)),
                "score": "share of spectral energy above half Nyquist (docs/filters.md)"}

    def picture(self, max_filters: int = 64, max_slices: int = 32,
                scale: int | None = None) -> np.ndarray:
        """Tiles on one shared scale (0 is mid-grey): RGB/grey for filters that see the image,
        else one row per filter of its input-channel slices."""
        from .figures import filter_tiles
        return filter_tiles(self, max_filters, max_slices, scale)

    about = ("Filter weights (the seed's §1): the first layer's filters as colour (or grey) "
             "tiles, deeper layers as rows of input-channel slices; mid-grey is 0. Well-trained "
             "filters are smooth; noisy ones (a high share of high-frequency energy) point at "
             "too little training or regularisation.")

    def pictures(self):
        return {f"filters_{self.layer}": self.picture()}

    def figures(self):
        from ...results import figure, panel, scale
        m = float(self.weights.abs().max())
        return [figure(self.layer, [panel(
            f"filters_{self.layer}", f"{self.layer}: {len(self.scores)} filters",
            [f"verdict: {self.verdict} (median noise score {float(np.median(self.scores)):.3f}, "
             f"threshold {self.threshold})", f"{int(self.noisy.sum())} of {len(self.scores)} "
             "filters noisy"], scale=scale(-m, m, "weight", "gray"))])]

    def _repr_html_(self) -> str:
        return (f"<p>{self.layer}: {self.verdict} (median noise score "
                f"{np.median(self.scores):.3f}, threshold {self.threshold})</p>"
                + pictures_html(self.pictures()))


@dataclass
class MonitorResult(Result):
    """A training run's monitor table and its plots."""

    history: pd.DataFrame
    title: str = ""
    kind: str = "training_monitor"

    about = ("A training run watched (the seed's §1): per layer, the share of dead channels "
             "and the sparsity of the activations on fixed probe images, and the first layer's "
             "filter noise, as training goes on. Maps start dense and grow sparse; many dead "
             "channels early point at a too-high learning rate.")

    def tables(self):
        return {"monitor": self.history}

    def info(self):
        return {"title": self.title, "steps": sorted(set(self.history.step.tolist()))}

    def pictures(self):
        return {"monitor": self.plot}

    def plot(self, path: str) -> None:
        from .figures import monitor_plot
        monitor_plot(self, path)
