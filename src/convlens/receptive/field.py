"""`Field`: the receptive field of one layer (size, stride, centre per axis), and the arithmetic
of fields through a window and where paths meet."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Pair = tuple[float, float]


@dataclass(frozen=True)
class Field:
    """Receptive field of one layer: per axis (y, x); ``is_global`` when it is the whole image."""

    size: tuple[int, int]
    stride: tuple[int, int] | None
    center: Pair | None
    is_global: bool = False

    def box(self, y: int, x: int) -> tuple[float, float, float, float]:
        """Input-pixel box ``(x0, y0, x1, y1)`` (inclusive pixel centres) of output (y, x)."""
        if self.is_global or self.stride is None or self.center is None:
            raise ValueError("a global field has no per-position box")
        cy = self.center[0] + y * self.stride[0]
        cx = self.center[1] + x * self.stride[1]
        hy, hx = (self.size[0] - 1) / 2, (self.size[1] - 1) / 2
        return (cx - hx, cy - hy, cx + hx, cy + hy)

    def describe(self) -> dict[str, Any]:
        """Flat values for a table: square fields as single numbers."""
        def one(p):
            if p is None:
                return None
            return p[0] if p[0] == p[1] else f"{p[0]}x{p[1]}"
        return {"rf_size": one(self.size),
                "rf_stride": None if self.is_global else one(self.stride),
                "rf_center": (None if self.is_global or self.center is None
                              else tuple(self.center))}


IDENTITY = lambda: Field((1, 1), (1, 1), (0.0, 0.0))  # noqa: E731  the input image


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1])) if len(v) >= 1 else (1, 1)
    return (int(v), int(v))


def through_window(f: Field, kernel, stride, padding, dilation=1) -> Field:
    """The field after a conv/pool window with these (per-axis) parameters."""
    if f.is_global:
        return f
    k, s, p, d = _pair(kernel), _pair(stride), _pair(padding), _pair(dilation)
    size, jump, center = [], [], []
    for a in range(2):
        keff = d[a] * (k[a] - 1) + 1
        size.append(f.size[a] + (keff - 1) * f.stride[a])
        center.append(f.center[a] + ((keff - 1) / 2 - p[a]) * f.stride[a])
        jump.append(f.stride[a] * s[a])
    return Field(tuple(size), tuple(jump), tuple(center))


def union(fields: list[Field]) -> Field | None:
    """The smallest field holding all of `fields` (they must share their stride)."""
    if any(f.is_global for f in fields):
        return next(f for f in fields if f.is_global)
    if len({f.stride for f in fields}) != 1:
        return None  # different grids meet: no single answer
    size, center = [], []
    for a in range(2):
        lo = min(f.center[a] - (f.size[a] - 1) / 2 for f in fields)
        hi = max(f.center[a] + (f.size[a] - 1) / 2 for f in fields)
        size.append(int(round(hi - lo + 1)))
        center.append((lo + hi) / 2)
    return Field(tuple(size), fields[0].stride, tuple(center))



def field_at(field: Field, shape_hw: tuple[int, int], y: int, x: int,
             image_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer box ``(x0, y0, x1, y1)``, end exclusive, of output (y, x), clipped to the image."""
    if field.is_global:
        return (0, 0, image_hw[1], image_hw[0])
    bx0, by0, bx1, by1 = field.box(y, x)
    x0 = max(0, math.floor(bx0 + 1e-6))
    y0 = max(0, math.floor(by0 + 1e-6))
    x1 = min(image_hw[1], math.floor(bx1 + 1e-6) + 1)
    y1 = min(image_hw[0], math.floor(by1 + 1e-6) + 1)
    return (x0, y0, x1, y1)
