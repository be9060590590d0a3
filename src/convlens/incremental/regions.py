"""What a node's value is for a batch of changed copies, and the interval arithmetic of the
changed regions.

The incremental region of a conv/pool layer (kernel ``k``, stride ``s``, padding ``p``, dilation
``d``) whose input changed in rows ``[a, a + h)`` is, per axis::

    lo = ceil((a + p - d (k - 1)) / s),   hi = floor((a + h - 1 + p) / s)

clipped to the output; all copies of a batch share one rectangle size (the largest, shifted
inside the map at the borders). It is recomputed by running the layer with ``padding=0`` on the
input crop rows ``[lo s - p, hi s - p + d (k - 1)]`` read from the zero- (max-pool: -inf-)
padded clean input with the changed region pasted in (`engine`). An elementwise sum of two
changed tensors (a residual connection) and a channel concatenation take the union of their
regions (`_fit_union`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch


class _Clean:
    """An x-dependent value equal to the clean image's (nothing changed it)."""


CLEAN = _Clean()


@dataclass
class _Dirty:
    """A (B, C, H, W) value equal to the clean one except in one rectangle per copy: rows
    ``y[b] : y[b] + h`` and columns ``x[b] : x[b] + w`` hold ``patch[b]`` (one size for the
    batch). The values really changed only in rows ``lo_y[b] ..= hi_y[b]`` and columns
    ``lo_x[b] ..= hi_x[b]`` (inside the rectangle); the rest of the patch was recomputed
    because the batch shares one size, and equals the clean values (to rounding). The next
    layer's region grows from these bounds, not from the patch, so that one copy's larger
    region does not spread to the others layer after layer."""

    patch: torch.Tensor
    y: torch.Tensor
    x: torch.Tensor
    lo_y: torch.Tensor
    hi_y: torch.Tensor
    lo_x: torch.Tensor
    hi_x: torch.Tensor

    def like(self, patch: torch.Tensor) -> "_Dirty":
        """The same region holding another patch (after a pointwise op)."""
        return _Dirty(patch, self.y, self.x, self.lo_y, self.hi_y, self.lo_x, self.hi_x)


@dataclass
class _Full:
    """A value computed in full for every sample (a tensor, or anything else)."""

    value: Any


def _floordiv(a: torch.Tensor, b: int) -> torch.Tensor:
    return torch.div(a, b, rounding_mode="floor")


def _out_range(a: torch.Tensor, h: int, k: int, s: int, p: int, d: int, n_out: int):
    """Outputs ``[lo, hi]`` (per sample) whose window meets input rows ``[a, a + h)``."""
    lo = -_floordiv(-(a + p - d * (k - 1)), s)
    hi = _floordiv(a + h - 1 + p, s)
    return lo.clamp(min=0), hi.clamp(max=n_out - 1)


def _cap(lo: torch.Tensor, hi: torch.Tensor, n: int,
         tau: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per copy, the changed rows ``[lo, hi]`` (at least one), with `tau` at most
    ``ceil(tau * n)`` of them centred on the changed ones: Krypton's projective-field
    threshold, which ignores the changes outside."""
    hi = torch.maximum(hi, lo)
    if tau is not None:
        cap = max(1, math.ceil(tau * n))
        over = hi - lo + 1 > cap
        start = torch.round((lo + hi).double() / 2 - (cap - 1) / 2).long().clamp(0, n - cap)
        lo = torch.where(over, start, lo)
        hi = torch.where(over, start + cap - 1, hi)
    return lo, hi


def _fit(lo: torch.Tensor, hi: torch.Tensor, n: int) -> tuple[torch.Tensor, int]:
    """One rectangle size for the whole batch: starts ``(B,)`` and a size such that
    ``[start, start + size)`` holds every copy's ``[lo, hi]`` inside ``[0, n)``."""
    size = min(max(int((hi - lo + 1).max()), 1), n)
    start = torch.minimum(lo, torch.full_like(lo, n - size)).clamp(min=0)
    return start, size


def _fit_union(rects, shape4, tau):
    """The batch rectangle holding every copy's union of changed bounds (capped by tau),
    and those bounds; None when it is the whole map."""
    h, w = shape4
    lo_y, hi_y = _cap(torch.stack([r[0] for r in rects]).amin(0),
                      torch.stack([r[1] for r in rects]).amax(0), h, tau)
    lo_x, hi_x = _cap(torch.stack([r[2] for r in rects]).amin(0),
                      torch.stack([r[3] for r in rects]).amax(0), w, tau)
    ry, rx = _fit(lo_y, hi_y, h), _fit(lo_x, hi_x, w)
    if ry[1] >= h and rx[1] >= w:
        return None
    return ry, rx, (lo_y, hi_y, lo_x, hi_x)
