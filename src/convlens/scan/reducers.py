"""Reducers of the dataset pass: ``init`` (the constructor) / ``update`` / ``merge`` / ``finalize``.

A reducer sees, for every batch, the batch itself, the captured activations of the layers it
asked for (`layers`) and the logits. ``merge`` is associative and exact, so splitting a dataset
into any batches, orders, workers or machines and merging gives the same result.
``state_dict`` / ``load_state_dict`` let the pass checkpoint a reducer and resume it.

The *map* step, ``summarize(layer, A)``, runs inside the forward hook on the live activation
``A`` (not a copy) and returns what ``update`` needs: for `TopK` a max and an arg-max per image
and channel, for `ActivationStats` a few sums per channel. So the pass never clones a whole
activation, which keeps it close to the speed of a bare forward pass. ``update`` also accepts
the raw activation tensors (it then summarises them itself), so a reducer can be fed by hand.

Every reducer's memory is O(layers × channels × k); `Codes` and `Predictions`, whose output
grows with the dataset, stream it to disk (`Codes` into an on-disk float16 array, `Predictions`
into Parquet parts) and keep at most the rows since the last checkpoint.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch


class Reducer:
    """Base class: subclasses keep their running state in tensors."""

    #: layers whose activations `update` needs
    layers: list[str] = []

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


# ------------------------------------------------------------------------------------------
# activation statistics (§1)
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
        from ..techniques.activations import StatsResult
        return StatsResult.from_reducer(self.to("cpu"), threshold)


# ------------------------------------------------------------------------------------------
# top-k images per unit (§2, Girshick et al. 2014) and per random direction (Szegedy et al.)
# ------------------------------------------------------------------------------------------
_LOW = 0xFFFFFFFF


def topk_keys(score: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """One int64 per entry that orders like ``(score, -index)``: larger key = better entry.

    The float32 score's bits, made monotonic (negative floats flipped; ``-0.0`` as ``+0.0``,
    NaN as ``-inf``), fill the high 32 bits; ``2^32 - 1 - index`` the low 32 bits. So one
    ``topk`` over keys is the top-k by score with ties broken by the smaller image index,
    whatever order the entries come in. Indices must lie in ``0 .. 2^32 - 1``.
    """
    inf = float("inf")
    return _keys(torch.nan_to_num(score.float(), nan=-inf, posinf=inf, neginf=-inf),
                 low_index(index))


def _keys(score: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
    """`topk_keys` from a NaN-free float32 score and the low bits (`low_index`)."""
    bits = (score + 0.0).contiguous().view(torch.int32)  # + 0.0: -0.0 becomes +0.0
    bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # negative floats: flip all but the sign
    return (bits.long() << 32) | low


def low_index(index: torch.Tensor) -> torch.Tensor:
    """The low 32 bits of `topk_keys`: ``2^32 - 1 - index``."""
    return _LOW - index.long()


def decode_keys(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(score float32, index int64)`` back from `topk_keys`."""
    hi = (keys >> 32).int()
    score = (hi ^ ((hi >> 31) & 0x7FFFFFFF)).view(torch.float32)
    return score, _LOW - (keys & _LOW)


def select_topk(score: torch.Tensor, index: torch.Tensor, pos: torch.Tensor, k: int):
    """Per row, the `k` best entries by score, ties broken by the smaller image index.

    ``score, index, pos: (C, M)`` → the same, ``(C, min(k, M))``, best first. NaN counts as
    ``-inf``. The reference form of what `TopK` does with `topk_keys`.
    """
    keys = topk_keys(score, index)
    keys, sel = keys.topk(min(k, keys.shape[1]), dim=1)
    s, i = decode_keys(keys)
    return s, i, pos.gather(1, sel)


class TopK(Reducer):
    """Per unit (layer, channel): the `k` images with the highest max-over-positions activation.

    Girshick et al., R-CNN (CVPR 2014), Fig. 4; METHODS.md §2. The score of image ``i`` for
    channel ``c`` is ``max_p A_l(x_i)[c, p]``; the arg-max position ``p`` is kept too (the first
    one where several positions tie). `merge` is exactly the top-k of the union, ties broken by
    image index, so batch size, order and workers do not change the result.

    The map step takes the max over positions of the whole batch (one cheap pass), keeps the
    batch's own top-k per channel, and finds the arg-max position only for those k images, not
    for all N×C maps. State per layer: ``keys (C, k)`` int64 (`topk_keys`: score and dataset
    index in one) and ``pos (C, k)`` int64 (flat position in the ``H×W`` map).

    Example::

        tk = TopK(["features.1"], k=9)
        local_pass(lens, data, [tk])
        top = tk.finalize()["features.1"]       # {"index": (C, 9), "score": ..., "pos": (C, 9, 2)}
    """

    def __init__(self, layers: Sequence[str], k: int = 9):
        if k < 1:
            raise ValueError("k must be at least 1")
        self.layers, self.k = list(layers), int(k)
        self.keys: dict[str, torch.Tensor] = {}
        self.pos: dict[str, torch.Tensor] = {}
        self.hw: dict[str, tuple[int, int]] = {}
        self._batch: torch.Tensor | None = None  # low key bits of the batch in flight
        self._batch_on: dict = {}

    @property
    def score(self) -> dict[str, torch.Tensor]:
        return {n: decode_keys(k)[0] for n, k in self.keys.items()}

    @property
    def index(self) -> dict[str, torch.Tensor]:
        return {n: decode_keys(k)[1] for n, k in self.keys.items()}

    # -- map ---------------------------------------------------------------------------
    def scores(self, layer: str, act: torch.Tensor) -> torch.Tensor:
        """Per image, per unit and position, the value to maximise: ``(N, C, P)``."""
        return channel_maps(act)

    def begin(self, batch) -> None:
        self._batch = low_index(batch.indices)  # the keys' low bits, once per batch
        self._batch_on = {}

    def _low(self, device) -> torch.Tensor:
        low = self._batch_on.get(device)
        if low is None:
            low = self._batch_on[device] = self._batch.to(device)
        return low

    def _amax(self, layer: str, act: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return shared.amax(act)  # the units' own maps: shared with ActivationStats

    def summarize(self, layer: str, act: torch.Tensor):
        """The batch's own top-k per unit: ``(keys (C, k'), flat positions (C, k'), (H, W))``."""
        if self._batch is None:
            raise RuntimeError("TopK.summarize before begin(batch)")
        m = self.scores(layer, act)                                   # (N, C, P)
        inf = float("inf")
        score = torch.nan_to_num(self._amax(layer, act, m).t().float(),  # (C, N); NaN: -inf
                                 nan=-inf, posinf=inf, neginf=-inf)
        keys = _keys(score, self._low(m.device).unsqueeze(0))         # (C, N)
        kk = min(self.k, keys.shape[1])
        state = self.keys.get(layer)
        if state is not None and state.shape[1] == self.k and keys.device.type == "cpu":
            # Only entries above the k-th best so far can enter: usually none or one per unit
            # once the pass is under way, and a max is far cheaper than a top-k. (Not on a
            # GPU: reading the count back would stall it.)
            better = keys > state[:, -1:].to(keys.device)
            kk = min(kk, int(better.sum(1).max()))
            if kk == 0:
                empty = keys[:, :0]
                return empty, empty, tuple(act.shape[2:4]) if act.dim() == 4 else (1, 1)
        if kk == 1:
            keys, sel = keys.max(dim=1, keepdim=True)                 # (C, 1)
        else:
            keys, sel = keys.topk(kk, dim=1)                          # (C, k')
        c, p = m.shape[1], m.shape[2]
        if p == 1:  # a vector layer: one position
            pos = torch.zeros_like(sel)
        elif m.is_contiguous():  # rows n*C + c of the (N*C, P) maps: a fast index_select
            channel = torch.arange(c, device=m.device).unsqueeze(1)
            rows = m.view(-1, p).index_select(0, (sel * c + channel).flatten())
            pos = rows.argmax(-1).view(sel.shape)                    # (C, k'): first max
        else:
            channel = torch.arange(c, device=m.device).unsqueeze(1)
            pos = m[sel, channel].argmax(-1)
        hw = tuple(act.shape[2:4]) if act.dim() == 4 else (1, 1)
        return keys, pos, hw

    # -- reduce ------------------------------------------------------------------------
    def update(self, batch, acts, logits=None) -> None:
        for name in self.layers:
            s = acts[name]
            if isinstance(s, torch.Tensor):  # fed by hand with the raw activation
                self.begin(batch)
                s = self.summarize(name, s.detach())
                shared.clear()
            keys, pos, hw = s
            self.hw.setdefault(name, hw)
            self._merge_keys(name, keys, pos)

    def _merge_keys(self, name: str, keys: torch.Tensor, pos: torch.Tensor) -> None:
        if name in self.keys:
            dev = self.keys[name].device
            keys = torch.cat([self.keys[name], keys.to(dev)], 1)
            pos = torch.cat([self.pos[name], pos.to(dev)], 1)
        keys, sel = keys.topk(min(self.k, keys.shape[1]), dim=1)
        self.keys[name], self.pos[name] = keys, pos.gather(1, sel)

    def _push(self, name: str, score, index, pos) -> None:
        """Offer entries ``score, index, pos: (C, M)`` directly (tests, other engines)."""
        self._merge_keys(name, topk_keys(score, index), pos)

    def merge(self, other: "TopK") -> "TopK":
        for name in other.keys:
            self.hw.setdefault(name, other.hw[name])
            self._merge_keys(name, other.keys[name], other.pos[name])
        return self

    def spawn(self) -> "TopK":
        return type(self)(self.layers, self.k)

    # -- results -----------------------------------------------------------------------
    def finalize(self) -> dict[str, dict[str, np.ndarray]]:
        """Per layer: ``index (C, k) int64``, ``score (C, k) float32``, ``pos (C, k, 2)`` (y, x).

        With fewer than `k` images seen, the arrays have that many columns.
        """
        out = {}
        for name in self.layers:
            if name not in self.keys:
                continue
            score, index = decode_keys(self.keys[name].cpu())
            w = self.hw[name][1]
            flat = self.pos[name].cpu()
            out[name] = {"index": index.numpy().astype(np.int64),
                         "score": score.numpy().astype(np.float32),
                         "pos": torch.stack([flat // w, flat % w], -1).numpy().astype(np.int64)}
        return out

    def state_dict(self):
        return {"layers": self.layers, "k": self.k, "hw": dict(self.hw),
                "keys": {k: v.cpu() for k, v in self.keys.items()},
                "pos": {k: v.cpu() for k, v in self.pos.items()}}

    def load_state_dict(self, state):
        self.layers, self.k = list(state["layers"]), int(state["k"])
        self.hw = {k: tuple(v) for k, v in state["hw"].items()}
        self.keys, self.pos = dict(state["keys"]), dict(state["pos"])


def direction_vectors(layer: str, channels: int, count: int, seed: int = 0) -> torch.Tensor:
    """`count` random unit vectors of the `channels`-dim representation of `layer`: ``(D, C)``.

    Seeded by `seed` and the layer's name (crc32), so every worker and every resumed run
    draws the same ones.
    """
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + zlib.crc32(layer.encode()))
    v = torch.randn(count, channels, generator=gen, dtype=torch.float64)
    return (v / v.norm(dim=1, keepdim=True)).float()


class Directions(TopK):
    """Top-k images along random directions of a layer's representation.

    Szegedy et al., "Intriguing properties of neural networks" (ICLR 2014), §3: score of image
    ``i`` for direction ``v`` (a unit vector of the C channels) is ``max_p <v, A_l(x_i)[:, p]>``.
    Their finding: the top images of a random direction look as coherent as a unit's.
    """

    def __init__(self, layers: Sequence[str], count: int, k: int = 9, seed: int = 0):
        super().__init__(layers, k)
        self.count, self.seed = int(count), int(seed)
        self.vectors: dict[str, torch.Tensor] = {}

    def _vectors(self, layer: str, channels: int, device) -> torch.Tensor:
        v = self.vectors.get(layer)
        if v is None or v.shape[1] != channels:
            v = direction_vectors(layer, channels, self.count, self.seed)
        if v.device != torch.device(device):
            v = v.to(device)
        self.vectors[layer] = v
        return v

    def scores(self, layer, act):
        m = channel_maps(act).float()
        v = self._vectors(layer, m.shape[1], m.device)
        return torch.einsum("dc,ncp->ndp", v, m)

    def _amax(self, layer, act, m):
        return m.amax(2)

    def spawn(self) -> "Directions":
        return Directions(self.layers, self.count, self.k, self.seed)

    def finalize(self):
        out = super().finalize()
        for name in out:
            c = self.vectors[name].shape[1] if name in self.vectors else None
            out[name]["vectors"] = (self.vectors[name].cpu().numpy() if c else
                                    np.zeros((self.count, 0), np.float32))
        return out

    def state_dict(self):
        return super().state_dict() | {"count": self.count, "seed": self.seed,
                                       "vectors": {k: v.cpu() for k, v in self.vectors.items()}}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.count, self.seed = int(state["count"]), int(state["seed"])
        self.vectors = dict(state["vectors"])

    def merge(self, other: "Directions") -> "Directions":
        for name, v in other.vectors.items():
            self.vectors.setdefault(name, v)
        return super().merge(other)


# ------------------------------------------------------------------------------------------
# CNN codes (§3) and predictions (§8): outputs that grow with the dataset go to disk
# ------------------------------------------------------------------------------------------
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


class Codes(Reducer):
    """The code vector of every image: the output of `layer`, flattened, as float16.

    Karpathy's CNN codes (METHODS.md §3): by default the input of the last linear layer, after
    its ReLU. With a `path`, rows go straight into an on-disk ``(slots, D)`` float16 array
    (`np.lib.format.open_memmap`) at the row of their dataset index, so a million images
    need no memory; without one (a Ray worker) they are kept until merged.
    """

    def __init__(self, layer: str, slots: Slots, path: str | os.PathLike | None = None):
        self.layer = layer
        self.layers = [layer]
        self.slots = slots
        self.path = None if path is None else Path(path)
        self.dim: int | None = None
        self.written = torch.zeros(slots.size if path is not None else 0, dtype=torch.bool)
        self._array: np.ndarray | None = None
        self._rows: list[tuple[np.ndarray, np.ndarray]] = []  # in-memory mode

    def summarize(self, layer, act):
        return act.detach().flatten(1).to(torch.float16)  # a copy: safe from later in-place ops

    def _open(self, dim: int, mode: str = "w+") -> np.ndarray:
        if self._array is None:
            self.dim = dim
            self._array = np.lib.format.open_memmap(self.path, mode=mode, dtype=np.float16,
                                                    shape=(self.slots.size, dim))
        return self._array

    def _write(self, index: np.ndarray, rows: np.ndarray) -> None:
        if self.path is None:
            self.dim = rows.shape[1]
            self._rows.append((index, rows))
            return
        arr = self._open(rows.shape[1])
        slots = self.slots(index)
        arr[slots] = rows
        self.written[torch.from_numpy(slots)] = True

    def update(self, batch, acts, logits=None) -> None:
        a = acts[self.layer]
        if a.dim() != 2 or a.dtype != torch.float16:  # a raw activation, not our summary
            a = self.summarize(self.layer, a)
        self._write(batch.indices.numpy(), a.cpu().numpy())

    def merge(self, other: "Codes") -> "Codes":
        for index, rows in other._rows:
            self._write(index, rows)
        return self

    def spawn(self) -> "Codes":
        return Codes(self.layer, Slots(None, 0), None)

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_array"] = None  # a memmap does not travel; reopened from `path` when needed
        return d

    def state_dict(self):
        if self._array is not None:
            self._array.flush()
        return {"layer": self.layer, "dim": -1 if self.dim is None else self.dim,
                "written": self.written.clone()}

    def load_state_dict(self, state):
        self.layer = state["layer"]
        self.written = state["written"].clone()
        dim = int(state["dim"])
        if dim >= 0 and self.path is not None and self.path.is_file():
            self._array = None
            self._open(dim, mode="r+")

    def finalize(self, codes_path: str | os.PathLike) -> tuple[str, np.ndarray, int]:
        """Write the final ``(N, D)`` float16 array of the images seen (in dataset order) to
        `codes_path`; returns ``(path, index (N,) int64, D)``. Copies in chunks: bounded memory."""
        codes_path = Path(codes_path)
        written = self.written.numpy()
        slots = np.flatnonzero(written)
        index = self.slots.indices(slots)
        dim = self.dim or 0
        if self._array is None:
            np.save(codes_path, np.zeros((0, dim), np.float16))
            return str(codes_path), index, dim
        self._array.flush()
        if len(slots) == self.slots.size:  # nothing skipped: the working array is the result
            self._array = None
            os.replace(self.path, codes_path)
            return str(codes_path), index, dim
        out = np.lib.format.open_memmap(codes_path, mode="w+", dtype=np.float16,
                                        shape=(len(slots), dim))
        step = max(1, (64 << 20) // max(1, 2 * dim))
        for s in range(0, len(slots), step):
            out[s:s + step] = self._array[slots[s:s + step]]
        out.flush()
        del out
        self._array = None
        os.remove(self.path)
        return str(codes_path), index, dim


def scalar_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """The scalar entries of an item's metadata (numbers, strings, booleans)."""
    out = {}
    for k, v in meta.items():
        if isinstance(v, np.generic):
            v = v.item()
        if v is None or isinstance(v, (bool, int, float, str)):
            out[k] = v
    return out


PREDICTION_COLUMNS = ("index", "label", "pred", "correct", "p_true", "p_pred", "top5", "top5_prob")


class Predictions(Reducer):
    """Per image: top-5 classes and probabilities (softmax of the logits), the probability of
    the true label, correct or not, plus the item's scalar metadata (Russakovsky et al. §6.3
    bin accuracy by such attributes; METHODS.md §8).

    Rows are buffered and written as a Parquet part at each checkpoint (`state_dict`) into
    `folder`; `finalize` joins the parts into one table sorted by index. Ties between equal
    probabilities go to the smaller class index.
    """

    layers: list[str] = []

    def __init__(self, folder: str | os.PathLike | None = None, top: int = 5):
        self.folder = None if folder is None else Path(folder)
        self.top = int(top)
        self.parts: list[str] = []
        self.rows = 0
        self._buf: list[dict[str, Any]] = []

    def update(self, batch, acts, logits) -> None:
        p = torch.softmax(logits.detach().float(), dim=1)
        k = min(self.top, p.shape[1])
        prob, cls = torch.sort(p, dim=1, descending=True, stable=True)
        prob, cls = prob[:, :k].cpu(), cls[:, :k].cpu()
        labels = batch.labels.cpu()
        valid = (labels >= 0) & (labels < p.shape[1])
        p_true = torch.where(valid, p.cpu().gather(1, labels.clamp(0, p.shape[1] - 1)[:, None])[:, 0],
                             torch.tensor(float("nan")))
        self._buf.append({
            "index": batch.indices.numpy().astype(np.int64), "label": labels.numpy().astype(np.int64),
            "pred": cls[:, 0].numpy().astype(np.int64),
            "correct": (cls[:, 0] == labels).numpy(),
            "p_true": p_true.numpy().astype(np.float32), "p_pred": prob[:, 0].numpy().astype(np.float32),
            "top5": cls.numpy().astype(np.int64), "top5_prob": prob.numpy().astype(np.float32),
            "meta": [scalar_meta(m) for m in batch.meta]})

    def table(self):
        """The buffered rows as a `pyarrow.Table` (and the buffer emptied)."""
        import pyarrow as pa

        bufs, self._buf = self._buf, []
        if not bufs:
            return None
        cols = {c: np.concatenate([b[c] for b in bufs]) for c in PREDICTION_COLUMNS}
        metas = [m for b in bufs for m in b["meta"]]
        arrays = {c: pa.array(cols[c]) for c in PREDICTION_COLUMNS[:6]}
        for c in ("top5", "top5_prob"):
            arrays[c] = pa.FixedSizeListArray.from_arrays(pa.array(cols[c].ravel()),
                                                          cols[c].shape[1]).cast(
                pa.list_(pa.int64() if c == "top5" else pa.float32()))
        keys = list(dict.fromkeys(k for m in metas for k in m))
        for key in keys:
            name = key if key not in arrays else f"meta_{key}"
            try:
                arrays[name] = pa.array([m.get(key) for m in metas])
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: keep them as text
                arrays[name] = pa.array([None if m.get(key) is None else str(m[key]) for m in metas])
        return pa.table(arrays)

    def flush(self) -> None:
        """Write the buffered rows as the next Parquet part."""
        import pyarrow.parquet as pq

        if self.folder is None:
            return
        t = self.table()
        if t is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{len(self.parts):06d}.parquet"
        tmp = self.folder / (name + ".tmp")
        pq.write_table(t, tmp)
        os.replace(tmp, self.folder / name)
        self.parts.append(name)
        self.rows += t.num_rows

    def merge(self, other: "Predictions") -> "Predictions":
        self._buf.extend(other._buf)
        return self

    def spawn(self) -> "Predictions":
        return Predictions(None, self.top)

    def state_dict(self):
        self.flush()
        return {"parts": list(self.parts), "rows": self.rows, "top": self.top}

    def load_state_dict(self, state):
        self.parts, self.rows, self.top = list(state["parts"]), int(state["rows"]), int(state["top"])
        self._buf = []
        if self.folder is not None and self.folder.is_dir():
            keep = set(self.parts)  # parts written after the checkpoint are redone: drop them
            for f in self.folder.iterdir():
                if f.name not in keep:
                    f.unlink()

    def finalize(self, path: str | os.PathLike) -> int:
        """Join the parts into one Parquet table at `path`, sorted by index; returns its rows.

        Parts that hold disjoint, increasing index ranges (a sequential or sharded pass) are
        streamed one at a time; otherwise (a shuffled pass) the table is sorted in memory.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.flush()
        files = [self.folder / p for p in self.parts]
        if not files:
            empty = pa.table({"index": pa.array([], pa.int64()), "label": pa.array([], pa.int64()),
                              "pred": pa.array([], pa.int64()), "correct": pa.array([], pa.bool_()),
                              "p_true": pa.array([], pa.float32()), "p_pred": pa.array([], pa.float32()),
                              "top5": pa.array([], pa.list_(pa.int64())),
                              "top5_prob": pa.array([], pa.list_(pa.float32()))})
            pq.write_table(empty, path)
            return 0
        schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")

        def load(f):
            t = pq.read_table(f)
            for field in schema:
                if field.name not in t.column_names:
                    t = t.append_column(field.name, pa.nulls(t.num_rows, field.type))
            return t.select(schema.names).cast(schema)

        ranges = []
        for f in files:
            idx = pq.read_table(f, columns=["index"]).column(0).to_numpy()
            ranges.append((int(idx.min()), int(idx.max()), bool(np.all(np.diff(idx) > 0)), f))
        ranges.sort(key=lambda r: r[0])
        streamable = all(r[2] for r in ranges) and all(
            a[1] < b[0] for a, b in zip(ranges, ranges[1:]))
        tmp = Path(str(path) + ".tmp")
        if streamable:
            with pq.ParquetWriter(tmp, schema) as w:
                for r in ranges:
                    w.write_table(load(r[3]))
        else:
            t = pa.concat_tables([load(f) for f in files]).sort_by("index")
            pq.write_table(t, tmp)
        os.replace(tmp, path)
        return self.rows
