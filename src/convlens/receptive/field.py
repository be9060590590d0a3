"""`Field`: the receptive field of one layer (size, stride, centre per axis), and the arithmetic
of fields through a window and where paths meet."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

Pair = tuple[float, float]


@dataclass(frozen=True)
class Field:
    """Receptive field of one layer, per axis (y, x): the input pixels an output cell sees.

    ``size``, ``stride`` and ``center`` are the **local** field: cell ``(i, j)`` sees the
    ``size`` box centred on pixel ``center + (i, j) * stride`` (`box`), through the layer's
    spatial path. Besides it:

    - ``is_global``: there is no local field at all: the output depends on the image only through
      global reductions (a pooled vector, the classifier's scores); ``size`` is the image's.
    - ``global_context``: a local field *and* a dependence on the whole image mixed into it (a
      squeeze-excitation gate, global attention, group norm's statistics). Views that need a
      patch (correspondence, unit patches) use the local field.
    - ``clipped``: ``size`` is a lower bound: at every input size tried, every cell's field
      reached the image border, so the field is at least this large (the input shows no more).
    - ``envelope``: the cells do not all see the same window shifted by the stride (windowed
      attention, upsampling); ``size`` is the smallest box centred on each cell that holds all
      that cell sees.
    - ``source``: ``"structure"`` (the conv/pool arithmetic) or ``"gradient"`` (the support of
      input gradients, `convlens.receptive.gradient`).
    """

    size: tuple[int, int]
    stride: tuple[int, int] | None
    center: Pair | None
    is_global: bool = False
    global_context: bool = False
    clipped: bool = False
    envelope: bool = False
    source: str = "structure"

    @property
    def whole_image(self) -> bool:
        """Whether an output depends on the whole image (with or without a local field)."""
        return self.is_global or self.global_context

    def box(self, y: int, x: int) -> tuple[float, float, float, float]:
        """Input-pixel box ``(x0, y0, x1, y1)`` (inclusive pixel centres) of output (y, x): the
        local field's."""
        if self.is_global or self.stride is None or self.center is None:
            raise ValueError("a global field has no per-position box")
        cy = self.center[0] + y * self.stride[0]
        cx = self.center[1] + x * self.stride[1]
        hy, hx = (self.size[0] - 1) / 2, (self.size[1] - 1) / 2
        return (cx - hx, cy - hy, cx + hx, cy + hy)

    def describe(self) -> dict[str, Any]:
        """Flat values for a table: square fields as single numbers; ``rf_global``: the output
        depends on the whole image; ``rf_bound``: ``">="`` for a clipped size (a lower bound),
        ``"<="`` for an envelope (an upper bound of what each cell sees), else None."""
        def one(p):
            if p is None:
                return None
            return p[0] if p[0] == p[1] else f"{p[0]}x{p[1]}"
        return {"rf_size": one(self.size),
                "rf_stride": None if self.is_global else one(self.stride),
                "rf_center": (None if self.is_global or self.center is None
                              else tuple(self.center)),
                "rf_global": self.whole_image,
                "rf_bound": ">=" if self.clipped else "<=" if self.envelope else None,
                "rf_source": self.source}

    def label(self) -> str:
        """The size as people read it: ``35``, ``35 (+global)`` (a local field of 35 pixels
        plus a dependence on the whole image), ``global`` (no local field), ``>=224`` (clipped
        by the image: at least 224), ``<=52`` (an envelope: each cell sees at most that box)."""
        if self.is_global:
            return "global"
        d = self.describe()
        text = f"{d['rf_bound'] or ''}{d['rf_size']}"
        return text + " (+global)" if self.global_context else text


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
    return replace(f, size=tuple(size), stride=tuple(jump), center=tuple(center))


def union(fields: list[Field]) -> Field | None:
    """The smallest field holding all of `fields` (their local fields must share their stride).

    A field with no local part (``is_global``: a pooled vector, a gate computed from one) adds
    no window: where it meets local fields (``x * gate`` of a squeeze-excitation block) the
    result is their local union with ``global_context``; only global fields give a global one.
    """
    local = [f for f in fields if not f.is_global]
    if not local:
        return fields[0]
    context = any(f.whole_image for f in fields)
    if len({f.stride for f in local}) != 1:
        return None  # different grids meet: no single answer
    size, center = [], []
    for a in range(2):
        lo = min(f.center[a] - (f.size[a] - 1) / 2 for f in local)
        hi = max(f.center[a] + (f.size[a] - 1) / 2 for f in local)
        size.append(int(round(hi - lo + 1)))
        center.append((lo + hi) / 2)
    return Field(tuple(size), local[0].stride, tuple(center), global_context=context,
                 clipped=any(f.clipped for f in local), envelope=any(f.envelope for f in local),
                 source=local[0].source)


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
