"""The nuisance factors that ``builtin:shapes`` and ``builtin:stamps`` draw the same way.

Both renderers record, for every item, how much of the object is cut off by the image border
(``truncated``) and how much is hidden by a bar drawn in front of it (``occluded``), with the
same rates and ranges (below); both pick colours in HSV, measure luminance with Rec. 601
weights and quantise to 8 bits the same way. What differs stays in each renderer: shapes
measures areas by anti-aliased coverage, stamps by whole pixels of the alpha >= 0.5 mask; shapes
computes the bar in float32, stamps in float64 (`bar` follows its arguments' dtype).

Pure numpy. Every function here keeps the exact arithmetic the renderers had, so their bytes
are unchanged (``tests/test_digests.py``).
"""
from __future__ import annotations

import colorsys
import math

import numpy as np

__all__ = ["LUMA", "P_TRUNCATED", "TRUNC_RANGE", "P_OCCLUDED", "OCC_RANGE", "MAX_HIDDEN", "hsv",
           "truncation", "cut_profile", "occlusion_target", "bisect", "bar", "paint_over",
           "to_uint8", "tight_box"]

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # Rec. 601 luminance of RGB in [0, 1]

P_TRUNCATED = 0.15          # share of items cut by the image border ...
TRUNC_RANGE = (0.05, 0.35)  # ... by this fraction of the whole object
P_OCCLUDED = 0.25           # share of items with a bar in front of the object ...
OCC_RANGE = (0.10, 0.40)    # ... hiding this fraction of it
MAX_HIDDEN = 0.55           # occluded + truncated never exceeds this


def hsv(h: float, s: float, v: float) -> np.ndarray:
    """float32 RGB of an HSV colour (hue in turns, wrapped)."""
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


# -- truncation ----------------------------------------------------------------------------------
def truncation(flag: float, side: float, amount: float) -> tuple[int, float] | None:
    """From three uniforms: ``(side, target)`` for a truncated item, else None.

    ``side``: 0 left, 1 right, 2 top, 3 bottom (the border that cuts the object); ``target``:
    the fraction of the whole object to cut off, in `TRUNC_RANGE`.
    """
    if not flag < P_TRUNCATED:
        return None
    return min(int(side * 4), 3), TRUNC_RANGE[0] + amount * (TRUNC_RANGE[1] - TRUNC_RANGE[0])


def cut_profile(mass: np.ndarray, side: int) -> np.ndarray:
    """The object's mass per column (sides 0, 1) or row (sides 2, 3), in the order the border
    ``side`` cuts them: its cumulative sum is the part cut off by ``n`` whole columns (rows)."""
    prof = mass.sum(axis=0 if side < 2 else 1)
    return prof[::-1] if side in (1, 3) else prof


# -- occlusion -----------------------------------------------------------------------------------
def occlusion_target(amount: float, truncated: float, cap: float = math.inf) -> float:
    """The fraction of the whole object the bar hides, from a uniform ``amount``: in
    `OCC_RANGE`, at most ``MAX_HIDDEN - truncated`` and ``cap`` (never below OCC_RANGE[0])."""
    o_max = min(OCC_RANGE[1], MAX_HIDDEN - truncated, cap)
    return OCC_RANGE[0] + amount * max(o_max - OCC_RANGE[0], 0.0)


def bisect(hidden, goal: float, hi: float, steps: int) -> tuple[float, float]:
    """Bracket ``[lo, hi]`` of the bar's half-width where ``hidden(h)`` (non-decreasing in
    ``h``) reaches ``goal``, after ``steps`` halvings of ``[0, hi]``."""
    lo = 0.0
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if hidden(mid) < goal:
            lo = mid
        else:
            hi = mid
    return lo, hi


def bar(size: int, cx, cy, cp, sp, c_rel, halfwidth: float) -> np.ndarray:
    """Anti-aliased coverage ``(size, size)`` of the bar ``|(p - c) . (cp, sp) - c_rel| <=
    halfwidth`` over the image (pixel centres at ``i + 0.5``), clipped to [0, 1].

    Computed in the precision of the arguments: float32 scalars give a float32 map (shapes),
    Python or float64 ones a float64 map (stamps)."""
    r = np.arange(size, dtype=np.float32) + 0.5
    dist = np.abs((r[None, :] - cx) * cp + (r[:, None] - cy) * sp - c_rel)
    return np.clip(np.float32(halfwidth + 0.5) - dist, 0.0, 1.0)


# -- pixels --------------------------------------------------------------------------------------
def paint_over(dst: np.ndarray, alpha: np.ndarray, paint) -> None:
    """``dst`` (H, W, 3) becomes ``paint`` where ``alpha`` (H, W) is 1, in place."""
    dst += alpha[..., None] * (paint - dst)


def to_uint8(img: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """8-bit quantisation (round half up) of a float32 image already clipped to [0, 1]; ``img``
    is scaled in place."""
    if out is None:
        out = np.empty(img.shape, dtype=np.uint8)
    img *= np.float32(255.0)
    img += np.float32(0.5)
    np.copyto(out, img, casting="unsafe")
    return out


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``, inclusive-exclusive, of the mask's pixels; zeros if it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return (0, 0, 0, 0)
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
