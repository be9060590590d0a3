"""`TrainingMonitor`: dead filters, sparsity and filter noise over a training run.

The seed: "activations usually start out looking relatively blobby and dense, but as the
training progresses the activations usually become more sparse and localized"; "some
activation maps may be all zero for many different inputs, which can indicate dead filters,
and can be a symptom of high learning rates"; "noisy patterns can be an indicator of a network
that hasn't been trained for long enough". The monitor measures all three on a fixed probe
batch, whenever a training loop calls it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ...hooks import capture, model_of, preserved
from ...lens import default_layers
from .filters import noise_score
from .results import MonitorResult
from .stats import DEAD_THRESHOLD, ActivationStats, channel_table


class TrainingMonitor:
    """Call it from any training loop: ``monitor(step, model)``; read ``monitor.table()``.

    Args:
        probe: a fixed batch ``(N, C, H, W)`` of normalised inputs (a few hundred images).
        layers: layers whose dead fraction and sparsity are recorded (default: every ReLU).
        threshold: a channel is dead when its map is all zero on ≥ this share of the probe.

    Example::

        monitor = TrainingMonitor(x_probe)
        for epoch in range(epochs):
            train_one_epoch(model)
            monitor(epoch, model)
        monitor.result().save("monitor/")
    """

    def __init__(self, probe: torch.Tensor, layers: Sequence[str] | None = None,
                 threshold: float = DEAD_THRESHOLD, batch_size: int = 256):
        self.probe = probe
        self.layers = list(layers) if layers is not None else None
        self.threshold = threshold
        self.batch_size = batch_size
        self.rows: list[dict] = []

    @torch.no_grad()
    def __call__(self, step: int, model: nn.Module, **extra) -> pd.DataFrame:
        model = model_of(model)
        layers = self.layers or default_layers(model)
        convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        stats = ActivationStats(layers)
        with preserved(model):
            model.eval()
            with capture(model, layers) as cap:
                for i in range(0, len(self.probe), self.batch_size):
                    cap.clear()
                    model(self.probe[i:i + self.batch_size])
                    stats.update(None, {n: cap[n] for n in layers})
        per_layer = channel_table(stats, self.threshold).groupby("layer", sort=False)
        rows = []
        for name, t in per_layer:
            rows.append({"step": step, "layer": name, "kind": "activation",
                         "dead_fraction": float(t.dead.mean()),
                         "sparsity": float(t.sparsity.mean()), "noise": np.nan, **extra})
        modules = dict(model.named_modules())
        for name in convs:
            s = noise_score(modules[name].weight)
            rows.append({"step": step, "layer": name, "kind": "filters", "dead_fraction": np.nan,
                         "sparsity": np.nan, "noise": float(np.median(s)), **extra})
        self.rows.extend(rows)
        return pd.DataFrame(rows)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def result(self, title: str = "") -> MonitorResult:
        return MonitorResult(self.table(), title)
