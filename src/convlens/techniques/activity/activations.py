"""Layer activations and dead filters (METHODS.md §1; the seed's "Layer Activations").

The tensor shown for a layer is the output of that named module. In the built-in nets and
torchvision's, a conv is followed by a ``ReLU`` module: name the ReLU (``features.1``) for the
post-ReLU maps the seed talks about, the conv (``features.0``) for pre-ReLU ones. By default
convlens picks every ReLU module (post-ReLU); for a model without ReLU modules (functional
``F.relu``), every conv layer (pre-ReLU).
"""
from __future__ import annotations

from typing import Sequence

import torch

from ...engine import local_pass
from ...engine.settings import RunSettings, as_run
from ...errors import ConvlensError
from ...hooks import capture, preserved
from ...lens import as_batch, as_lens, default_layers, lens_and_data
from .results import ActivationsResult, StatsResult
from .stats import DEAD_THRESHOLD, ActivationStats, channel_table, layer_table

__all__ = ["DEAD_THRESHOLD", "ActivationStats", "activation_stats", "activations",
           "channel_table", "default_layers", "layer_table"]


def _layers(lens, layers) -> list[str]:
    if layers is None:
        return default_layers(lens)
    return [layers] if isinstance(layers, str) else list(layers)

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


def activations(lens, x: torch.Tensor,
                layers: str | Sequence[str] | None = None) -> ActivationsResult:
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
