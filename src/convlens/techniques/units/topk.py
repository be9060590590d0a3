"""Images that maximally activate each unit, and each random direction: the top-k reducers.

METHODS.md §2: the score of image ``i`` for unit (layer, channel) is the max over positions of
``A_l(x_i)[c]``; the k best images are kept with the arg-max position (Girshick et al., R-CNN
2014, Fig. 4). Directions (Szegedy et al., "Intriguing properties", 2014, §3): the same along a
random unit vector ``v`` of the channel space, score ``max_p <v, A_l(x_i)[:, p]>``. Both are
reducers of the dataset pass (`convlens.engine`); `convlens.techniques.scan.scan` runs them.
"""
from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np
import torch

from ...engine import Reducer, channel_maps, shared

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
