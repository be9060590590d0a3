"""Network dissection's two streaming passes (Bau, Zhou, Khosla, Oliva & Torralba 2017,
"Network Dissection: Quantifying Interpretability of Deep Visual Representations", CVPR,
https://arxiv.org/abs/1704.05796; METHODS.md, "Network dissection").

Pass 1, `TopQuantile`: each unit's threshold ``T_k``, the value its activations exceed with
probability `q` (0.005) over every image and position of the data. It keeps, per unit, the
``K = ceil(q * N * h * w)`` largest values seen so far (a running ``topk`` over the kept
values and each batch), so ``T_k`` is the exact K-th largest activation: the share of values
strictly above it is below `q`, the share at or above it is at least `q` (no approximation;
memory ``K x units`` floats, checked against `max_values`). Shards merge exactly (``topk`` of
the union), in any order.

Pass 2, `IoUCounts`: with the thresholds fixed, each unit's map is upsampled to the concept
masks' resolution (bilinear, as the paper), thresholded, ``M_k(x) = up(a_k(x)) >= T_k``, and
counted against each concept's mask ``L_c(x)``: ``I_kc = sum_x |M_k(x) & L_c(x)|``, ``|M_k|``
and ``|L_c|`` summed over the data; ``IoU_kc = I_kc / (|M_k| + |L_c| - I_kc)``. A unit detects
concept c when ``IoU_kc > 0.04`` (the paper's rule). The counts are exact integers, found
without upsampling the maps: only the pixels of the ~1 % of cells with a corner near ``T_k``
are evaluated (`bilinear`), and each is counted under the code of its concepts.
"""
from __future__ import annotations

import math

import torch

from ...errors import ConvlensError
from .bilinear import Codes, count_above

#: the paper's share of activations above the threshold, and its detector rule
QUANTILE = 0.005
DETECTOR_IOU = 0.04


def _per_unit(a: torch.Tensor) -> torch.Tensor:
    """``(N, U, h, w)`` or ``(N, U)`` -> ``(U, N*h*w)`` float32 values per unit."""
    if a.dim() == 2:
        a = a[:, :, None, None]
    if a.dim() != 4:
        raise ConvlensError(f"activations must be (N, U, h, w) or (N, U), got {tuple(a.shape)}")
    return a.detach().float().transpose(0, 1).reshape(a.shape[1], -1)


class TopQuantile:
    """Each unit's top-`q` threshold over a stream of activation batches, exactly.

    ``n_items``: how many images the pass will show (the order's length: ``K`` depends on
    it). ``update(a)`` with ``a (N, U, h, w)``; ``threshold()`` -> ``(U,)``; ``merge(other)``
    for shards of the same pass.

    Example::

        tq = TopQuantile(n_items=len(data))
        for batch in batches: tq.update(acts_of(batch))
        t = tq.threshold()
    """

    def __init__(self, n_items: int, q: float = QUANTILE, max_values: int = 200_000_000):
        if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 1:
            raise ConvlensError(f"n_items must be a positive integer, got {n_items!r}")
        if not 0 < q < 1:
            raise ConvlensError(f"q must lie strictly between 0 and 1, got {q!r}")
        self.n_items, self.q, self.max_values = n_items, float(q), int(max_values)
        self.k: int | None = None
        self.top: torch.Tensor | None = None  # (U, <= K), descending
        self.seen = 0  # values per unit so far

    def _start(self, units: int, per_item: int) -> None:
        self.k = max(1, math.ceil(self.q * self.n_items * per_item))
        if self.k * units > self.max_values:
            raise ConvlensError(
                f"the exact top-{self.q:g} threshold keeps {self.k:,} values for each of "
                f"{units} units ({self.k * units:,} in all, more than {self.max_values:,}): "
                "pass fewer images or fewer layers")
        self.per_item = per_item

    def update(self, a: torch.Tensor) -> None:
        self.update_candidates(*self.candidates(a))

    def candidates(self, a: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """One batch's share, without changing the state (a dataset pass takes it in the
        forward hook): ``(its values per unit (U, N*h*w), a copy; values per unit, values per
        item)``; `update_candidates` keeps them as `update(a)` keeps `a`."""
        v = _per_unit(a)
        if v.data_ptr() == a.data_ptr():  # one image: a view of `a`
            v = v.clone()
        per_item = v.shape[1] // a.shape[0]
        return v, v.shape[1], per_item

    def update_candidates(self, v: torch.Tensor, seen: int, per_item: int) -> None:
        if self.k is None:
            self._start(v.shape[0], per_item)
        elif per_item != self.per_item or (self.top is not None and
                                           v.shape[0] != self.top.shape[0]):
            raise ConvlensError("every batch must have the same units and map size")
        both = v if self.top is None else torch.cat([self.top, v.to(self.top)], 1)
        k = min(self.k, both.shape[1])
        self.top = both.topk(k, dim=1, sorted=True).values
        self.seen += seen

    def merge(self, other: "TopQuantile") -> "TopQuantile":
        if other.top is None:
            return self
        if self.top is None:
            self.k, self.per_item, self.top, self.seen = (other.k, other.per_item, other.top,
                                                         other.seen)
            return self
        both = torch.cat([self.top, other.top.to(self.top)], 1)
        self.top = both.topk(min(self.k, both.shape[1]), dim=1, sorted=True).values
        self.seen += other.seen
        return self

    def threshold(self) -> torch.Tensor:
        """``(U,)``: the K-th largest value of each unit (K from the images seen, if fewer
        than `n_items` came)."""
        if self.top is None:
            raise ConvlensError("no activations seen")
        k = max(1, min(self.top.shape[1], math.ceil(self.q * self.seen)))
        return self.top[:, k - 1].clone()

    def state_dict(self) -> dict:
        return {"k": self.k, "per_item": getattr(self, "per_item", None), "top": self.top,
                "seen": self.seen}

    def load_state_dict(self, state: dict) -> None:
        self.k, self.top, self.seen = state["k"], state["top"], int(state["seen"])
        if state["per_item"] is not None:
            self.per_item = state["per_item"]


def mask_codes(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``masks (N, C, H, W)`` bool -> ``codes (N, H, W)`` int64 and ``table (K, C)`` bool: pixel
    ``(n, y, x)`` lies in the masks ``table[codes[n, y, x]]`` (the distinct columns of
    concepts)."""
    n, c, h, w = masks.shape
    table, codes = torch.unique(masks.bool().permute(0, 2, 3, 1).reshape(-1, c), dim=0,
                                return_inverse=True)
    return codes.reshape(n, h, w), table


class IoUCounts:
    """Intersections and sizes of each unit's thresholded map with each concept's mask.

    ``thresholds (U,)`` from `TopQuantile`; ``update(a, masks)`` with ``a (N, U, h, w)`` and
    ``masks (N, C, H, W)`` bool (the concepts at the masks' resolution; a concept absent from
    an image is all False there), or ``update_codes(a, codes, table)`` with the concepts as a
    code per pixel (`mask_codes`; `labels.concept_codes` makes them without the masks).
    ``iou()`` -> ``(U, C)``. The counts are those of thresholding
    ``F.interpolate(a[:, u:u + unit_chunk], (H, W), mode="bilinear")`` at ``T``, exactly, but
    found without upsampling every map (`bilinear.count_above`).
    """

    def __init__(self, thresholds: torch.Tensor, unit_chunk: int = 64):
        self.t = thresholds.detach().float().cpu()
        self.unit_chunk = int(unit_chunk)
        self.inter: torch.Tensor | None = None  # (U, C) float64
        self.unit_size = torch.zeros(len(self.t), dtype=torch.float64)
        self.concept_size: torch.Tensor | None = None

    def update(self, a: torch.Tensor, masks: torch.Tensor) -> None:
        if a.dim() != 4 or masks.dim() != 4 or a.shape[0] != masks.shape[0]:
            raise ConvlensError(f"activations (N, U, h, w) and masks (N, C, H, W) of the same "
                                f"N, got {tuple(a.shape)} and {tuple(masks.shape)}")
        self.update_codes(a, *mask_codes(masks))

    def update_codes(self, a: torch.Tensor, codes: torch.Tensor | Codes,
                     table: torch.Tensor, peak: torch.Tensor | None = None) -> None:
        """``a (N, U, h, w)``; ``codes (N, H, W)`` integers into ``table (K, C)`` bool: the
        concepts of each pixel (or a `bilinear.Codes` of them, which the layers of one batch
        share); `peak`: ``a.amax((2, 3))``, if the caller has it."""
        if not isinstance(codes, Codes):
            if codes.dim() != 3:
                raise ConvlensError(f"codes must be (N, H, W), got {tuple(codes.shape)}")
            codes = Codes(codes, len(table))
        self.add(self.above(a, codes, peak), codes, table)

    def above(self, a: torch.Tensor, codes: Codes, peak: torch.Tensor | None = None):
        """One batch's ``(U, K)`` int64 counts of the pixels at or above each unit's threshold
        per code (`bilinear.count_above`; no state changes: `add` them)."""
        if a.dim() != 4 or a.shape[0] != codes.n:
            raise ConvlensError(f"activations (N, U, h, w) and codes (N, H, W) of the same N, "
                                f"got {tuple(a.shape)} and {(codes.n, *codes.size)}")
        if a.shape[1] != len(self.t):
            raise ConvlensError(f"{a.shape[1]} units, {len(self.t)} thresholds")
        return count_above(a, self.t, codes.to(a.device), unit_chunk=self.unit_chunk, peak=peak)

    def add(self, hist: torch.Tensor, codes: Codes, table: torch.Tensor) -> None:
        """Add one batch's counts `above` (``(U, K)``, the codes' table ``(K, C)``)."""
        k, c = table.shape
        if self.inter is None:
            self.inter = torch.zeros(len(self.t), c, dtype=torch.float64)
            self.concept_size = torch.zeros(c, dtype=torch.float64)
        elif self.inter.shape[1] != c:
            raise ConvlensError(f"{c} concepts, {self.inter.shape[1]} before")
        tab = table.to(hist.device, torch.float64)  # integer sums: exact below 2^53
        self.concept_size += (codes.to(hist.device).counts().double() @ tab).cpu()
        self.unit_size += hist.sum(1).double().cpu()
        self.inter += (hist.double() @ tab).cpu()

    def merge(self, other: "IoUCounts") -> "IoUCounts":
        if other.inter is None:
            return self
        if self.inter is None:
            self.inter, self.concept_size = other.inter.clone(), other.concept_size.clone()
        else:
            self.inter += other.inter
            self.concept_size += other.concept_size
        self.unit_size += other.unit_size
        return self

    def iou(self) -> torch.Tensor:
        """``(U, C)`` float64; 0 where the union is empty."""
        if self.inter is None:
            raise ConvlensError("no masks seen")
        union = self.unit_size[:, None] + self.concept_size[None, :] - self.inter
        return torch.where(union > 0, self.inter / union.clamp_min(1), torch.zeros(()).double())


def detectors(iou: torch.Tensor, names: list[str], categories: dict[str, str] | None = None,
              threshold: float = DETECTOR_IOU) -> dict:
    """Each unit's best concept and IoU, and the number of unique detectors per category
    (Bau et al.: a unit is a detector of its best concept when that IoU exceeds 0.04; a
    category counts the distinct concepts detected by at least one unit)."""
    best_iou, best = iou.max(1)
    units = [{"unit": k, "concept": names[int(c)], "iou": float(v),
              "detector": bool(v > threshold)} for k, (c, v) in enumerate(zip(best, best_iou))]
    cat = categories or {}
    unique: dict[str, set] = {}
    for u in units:
        if u["detector"]:
            unique.setdefault(cat.get(u["concept"], "concept"), set()).add(u["concept"])
    return {"units": units, "unique": {k: len(v) for k, v in sorted(unique.items())}}
