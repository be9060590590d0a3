"""Reducers of the dataset pass: ``init`` (the constructor) / ``update`` / ``merge`` / ``finalize``.

A reducer sees, for every batch, the batch itself, the captured activations of the layers it
asked for (`layers`) and the logits. ``merge`` is associative and exact, so splitting a dataset
into any batches, orders, workers or machines and merging gives the same result.
``state_dict`` / ``load_state_dict`` let the pass checkpoint a reducer and resume it.
"""
from __future__ import annotations

from typing import Any

import torch


class Reducer:
    """Base class: subclasses keep their running state in tensors."""

    #: layers whose activations `update` needs
    layers: list[str] = []

    def update(self, batch, acts: dict[str, torch.Tensor], logits: torch.Tensor) -> None:
        raise NotImplementedError

    def merge(self, other: "Reducer") -> "Reducer":
        raise NotImplementedError

    def finalize(self):
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


def channel_maps(a: torch.Tensor) -> torch.Tensor:
    """Activations as ``(N, C, P)``: P positions per channel (1 for a vector layer)."""
    if a.dim() == 2:
        return a.unsqueeze(-1)
    return a.flatten(2) if a.dim() > 3 else a.reshape(a.shape[0], a.shape[1], -1)


class ActivationStats(Reducer):
    """Per channel, over a dataset: how often the whole map is zero, sparsity, mean, max.

    For each layer and channel it counts inputs seen (``n``), inputs whose map is all zero
    (``zero_maps``), exact zeros (``zeros``) among ``positions`` values per map, and keeps the
    sum (float64) and max. All are sums or maxima, so `merge` is exact.
    """

    def __init__(self, layers: list[str]):
        self.layers = list(layers)
        self.n: dict[str, int] = {}
        self.positions: dict[str, int] = {}
        self.zero_maps: dict[str, torch.Tensor] = {}
        self.zeros: dict[str, torch.Tensor] = {}
        self.sum: dict[str, torch.Tensor] = {}
        self.max: dict[str, torch.Tensor] = {}

    def update(self, batch, acts, logits=None) -> None:
        for name in self.layers:
            m = channel_maps(acts[name].detach())
            zero = m == 0
            c = m.shape[1]
            if name not in self.n:
                self.n[name], self.positions[name] = 0, m.shape[2]
                self.zero_maps[name] = torch.zeros(c, dtype=torch.long)
                self.zeros[name] = torch.zeros(c, dtype=torch.long)
                self.sum[name] = torch.zeros(c, dtype=torch.float64)
                self.max[name] = torch.full((c,), float("-inf"), dtype=torch.float64)
            self.n[name] += m.shape[0]
            self.zero_maps[name] += zero.all(2).sum(0).cpu()
            self.zeros[name] += zero.sum((0, 2)).cpu()
            self.sum[name] += m.double().sum((0, 2)).cpu()
            self.max[name] = torch.maximum(self.max[name], m.double().amax((0, 2)).cpu())

    def merge(self, other: "ActivationStats") -> "ActivationStats":
        for name in other.n:
            if name not in self.n:
                for d in ("n", "positions", "zero_maps", "zeros", "sum", "max"):
                    getattr(self, d)[name] = getattr(other, d)[name]
                continue
            self.n[name] += other.n[name]
            self.zero_maps[name] = self.zero_maps[name] + other.zero_maps[name]
            self.zeros[name] = self.zeros[name] + other.zeros[name]
            self.sum[name] = self.sum[name] + other.sum[name]
            self.max[name] = torch.maximum(self.max[name], other.max[name])
        return self

    def state_dict(self):
        return {d: dict(getattr(self, d)) for d in ("n", "positions", "zero_maps", "zeros", "sum", "max")} | {
            "layers": self.layers}

    def load_state_dict(self, state):
        self.layers = list(state["layers"])
        for d in ("n", "positions", "zero_maps", "zeros", "sum", "max"):
            setattr(self, d, dict(state[d]))

    def finalize(self, threshold: float = 0.99):
        from ..techniques.activations import StatsResult
        return StatsResult.from_reducer(self, threshold)
