"""What a map explains: a class score or one unit of a layer (METHODS.md §5).

Targets (argument ``target`` of every gradient method and of occlusion; one for all images or
one per image):

* a class: its score *before* softmax, ``S_c(x)``; ``"auto"`` (or None) is the predicted class;
  an int is a class index, a str a label name;
* a unit: ``Unit(layer, channel)`` / ``(layer, channel)`` / ``"layer:channel"`` — one activation
  of a layer (output of that named module) projected back to pixels with every other activation
  of the layer set to zero, as Zeiler & Fergus did for their top-9 patches. Without ``y, x``
  the position of the largest activation of the channel is taken, per image (Zeiler's choice).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence, Union

import numpy as np
import torch

from ...errors import ConvlensError, unknown


@dataclass(frozen=True)
class Unit:
    """One unit of a layer: a channel, at position ``(y, x)`` or at its largest activation."""

    layer: str
    channel: int
    y: int | None = None
    x: int | None = None

    def __str__(self) -> str:
        pos = "" if self.y is None else f":{self.y}:{self.x}"
        return f"{self.layer}:{self.channel}{pos}"


TargetLike = Union[None, int, str, Unit, tuple, Sequence, torch.Tensor]
_UNIT_TEXT = re.compile(r"^(?P<layer>[^:]+):(?P<channel>-?\d+)(?::(?P<y>-?\d+):(?P<x>-?\d+))?$")


def parse_target(lens, target: TargetLike) -> int | Unit | None:
    """One target: None for "the predicted class", a class index, or a `Unit`.

    Accepts ``None``/``"auto"``, a class index, a label name, ``"LAYER:CHANNEL[:Y:X]"``,
    ``(layer, channel[, y, x])`` or a `Unit`.
    """
    if target is None or (isinstance(target, str) and target == "auto"):
        return None
    if isinstance(target, Unit):
        return target
    if isinstance(target, torch.Tensor) and target.dim() == 0:
        target = int(target)
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        return int(target)
    if isinstance(target, tuple) and target and isinstance(target[0], str):
        if len(target) not in (2, 4):
            raise ConvlensError(f"a unit target is (layer, channel) or (layer, channel, y, x), "
                                f"got {target!r}")
        return Unit(target[0], *(int(v) for v in target[1:]))
    if isinstance(target, str):
        labels = list(getattr(lens, "labels", None) or [])
        if target in labels:
            return labels.index(target)
        if target.lstrip("-").isdigit():
            return int(target)
        m = _UNIT_TEXT.match(target)
        if m:
            y, x = m.group("y"), m.group("x")
            return Unit(m.group("layer"), int(m.group("channel")),
                        None if y is None else int(y), None if x is None else int(x))
        raise unknown("target", target, labels + ["auto"],
                      hint="give auto, a class index or name, or LAYER:CHANNEL[:Y:X]")
    raise ConvlensError(f"cannot use {target!r} as a target: give auto, a class index or name, "
                        "or a unit (layer, channel[, y, x])")


def image_targets(lens, target: TargetLike, n: int) -> list[int | Unit | None]:
    """One parsed target per image."""
    if isinstance(target, torch.Tensor) and target.dim() == 1:
        target = target.tolist()
    if isinstance(target, tuple) and not (target and isinstance(target[0], str)):
        target = list(target)
    if isinstance(target, (list, np.ndarray)):
        target = list(target)
        if len(target) != n:
            raise ConvlensError(f"{len(target)} targets for {n} images: give one target, "
                                "or one per image")
        return [parse_target(lens, t) for t in target]
    return [parse_target(lens, target)] * n


def describe_target(lens, spec: int | Unit, pos: tuple[int, ...] | None) -> str:
    if isinstance(spec, Unit):
        where = "" if not pos else " at (" + ", ".join(map(str, pos)) + ")"
        return f"unit {spec.layer}:{spec.channel}{where}"
    name = lens.label(spec) if hasattr(lens, "label") else str(spec)
    return f"class {spec}" + (f" ({name})" if name != str(spec) else "")


def target_param(target) -> Any:
    if isinstance(target, torch.Tensor):
        return target.tolist()
    if isinstance(target, (list, tuple)):
        return [str(t) if isinstance(t, Unit) else t for t in target]
    return str(target) if isinstance(target, Unit) else target
