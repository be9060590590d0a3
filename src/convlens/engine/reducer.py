"""The reducer protocol of the dataset pass: ``init`` (the constructor) / ``update`` / ``merge`` /
``finalize``.

A reducer sees, for every batch, the batch itself, the captured activations of the layers it
asked for (`layers`) and the logits. ``merge`` is associative and exact, so splitting a dataset
into any batches, orders, workers or machines and merging gives the same result.
``state_dict`` / ``load_state_dict`` let the pass checkpoint a reducer and resume it.

The *map* step, ``summarize(layer, A)``, runs inside the forward hook on the live activation
``A`` (not a copy) and returns what ``update`` needs (for a top-k a max and an arg-max per image
and channel, for statistics a few sums per channel). So the pass never clones a whole
activation, which keeps it close to the speed of a bare forward pass. ``update`` also accepts
the raw activation tensors (it then summarises them itself), so a reducer can be fed by hand.

The reducers themselves belong to the techniques that use them (`ActivationStats` in
`convlens.techniques.activity.activations`, `TopK` in `convlens.techniques.units.topk`, ...);
the engine knows only this protocol.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


class Reducer:
    """Base class: subclasses keep their running state in tensors."""

    #: layers whose activations `update` needs
    layers: list[str] = []
    #: whether `update` reads the logits; where no reducer of a pass does, each forward pass
    #: stops once their layers have run (`feed`: the layers after them are not computed)
    needs_logits: bool = True

    def attach(self, lens) -> None:
        """Called by `feed` once before a pass with the model it runs (on its device), for a
        reducer whose `update` runs the model itself (adversarial robustness). Not kept in
        the reducer's state: a worker's reducer is attached to the worker's model."""

    def begin(self, batch) -> None:
        """Called before the forward pass of each batch (e.g. to learn its dataset indices)."""

    def summarize(self, layer: str, act: torch.Tensor) -> Any:
        """The map step, run inside the forward hook on the live output of `layer`.

        The default keeps a copy; reducers override it to keep only what they need.
        """
        return act.detach().clone()

    def update(self, batch, acts: dict[str, Any], logits: torch.Tensor) -> None:
        raise NotImplementedError

    def merge(self, other: "Reducer") -> "Reducer":
        raise NotImplementedError

    def finalize(self):
        raise NotImplementedError

    def spawn(self) -> "Reducer":
        """An empty reducer of the same configuration that keeps everything in memory (for a
        worker of the Ray engine: its result travels back and is `merge`d)."""
        raise NotImplementedError

    def to(self, device) -> "Reducer":
        """Move every tensor of the running state (dicts of tensors) to `device`; returns self."""
        for key, value in list(vars(self).items()):
            if isinstance(value, dict) and any(isinstance(v, torch.Tensor) for v in value.values()):
                setattr(self, key, {k: v.to(device) if isinstance(v, torch.Tensor) else v
                                    for k, v in value.items()})
        return self

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


def channel_maps(a: torch.Tensor) -> torch.Tensor:
    """Activations as ``(N, C, P)``: P positions per channel (1 for a vector layer)."""
    if a.dim() == 2:
        return a.unsqueeze(-1)
    return a.flatten(2) if a.dim() > 3 else a.reshape(a.shape[0], a.shape[1], -1)


class _Shared:
    """Results several reducers need from the same activation in one hook call (the max
    over positions): computed once. Keyed by the tensor object (held, so its id stays unique)
    and its version counter (an in-place change invalidates); `feed` clears it after each
    hook call."""

    def __init__(self):
        self.act: torch.Tensor | None = None
        self.version = -1
        self.values: dict[str, torch.Tensor] = {}

    def amax(self, act: torch.Tensor) -> torch.Tensor:
        """``channel_maps(act).amax(2)``: ``(N, C)``."""
        if act is not self.act or act._version != self.version:
            self.act, self.version, self.values = act, act._version, {}
        v = self.values.get("amax")
        if v is None:
            v = self.values["amax"] = channel_maps(act).amax(2)
        return v

    def clear(self) -> None:
        self.act, self.values = None, {}


shared = _Shared()


class Slots:
    """Row of each dataset index in the output arrays: the rank of the index among the ones
    scanned (sorted), so rows come out in dataset order whatever order the pass took."""

    def __init__(self, universe: np.ndarray | None, size: int):
        self.universe = None if universe is None else np.asarray(universe, dtype=np.int64)
        self.size = int(size)

    def __call__(self, index: np.ndarray) -> np.ndarray:
        if self.universe is None:
            return np.asarray(index, dtype=np.int64)
        return np.searchsorted(self.universe, index)

    def indices(self, slots: np.ndarray) -> np.ndarray:
        return slots.astype(np.int64) if self.universe is None else self.universe[slots]

    @classmethod
    def of(cls, order: np.ndarray, length: int) -> "Slots":
        """Slots for the indices `order` of a dataset of `length` items."""
        order = np.asarray(order, dtype=np.int64)
        if len(order) == length and (length == 0 or (order.min() == 0 and order.max() == length - 1
                                                     and len(np.unique(order)) == length)):
            return cls(None, length)
        universe = np.unique(order)
        return cls(universe, len(universe))

