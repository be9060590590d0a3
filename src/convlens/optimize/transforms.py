"""Transforms: the image moved at random before each step (`jitter`, `random_scale`,
`random_rotate`; `pad` names what fills the uncovered border), one resampling per step."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConvlensError, unknown

FILLS = ("grey", "reflect", "border", "zeros")


@dataclass(frozen=True)
class Transform:
    """One random geometric change of the image before a step (Olah et al. 2017,
    "transformation robustness"). Build with `jitter`, `random_scale`, `random_rotate`, `pad`.

    Consecutive transforms are composed into one affine map and applied with a single bilinear
    resampling; integer jitter moves pixels exactly. The image keeps its size (a classifier
    with fully connected layers takes one input size); `pad` says what fills the border the
    moves uncover (Lucid pads the canvas instead, which only a fully convolutional net allows).
    """

    kind: str
    values: tuple = ()
    fill: str = "grey"

    def matrix(self, batch: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor | None:
        """``(B, 3, 3)`` sampling matrices in normalised coordinates, or None (pad)."""
        eye = torch.eye(3).repeat(batch, 1, 1)
        if self.kind == "pad":
            return None
        if self.kind == "jitter":
            d = int(self.values[0])
            if d == 0:
                return eye
            shift = torch.randint(-d, d + 1, (batch, 2), generator=gen).float()
            eye[:, 0, 2] = shift[:, 0] * 2.0 / w
            eye[:, 1, 2] = shift[:, 1] * 2.0 / h
            return eye
        choice = torch.randint(0, len(self.values), (batch,), generator=gen)
        v = torch.tensor(self.values, dtype=torch.float32)[choice]
        if self.kind == "scale":  # sampling at p / s shows the image magnified by s
            eye[:, 0, 0] = 1.0 / v
            eye[:, 1, 1] = 1.0 / v
            return eye
        if self.kind == "rotate":
            t = v * math.pi / 180.0
            # normalised coordinates of a non-square image: rotate in pixel units
            eye[:, 0, 0] = torch.cos(t)
            eye[:, 0, 1] = -torch.sin(t) * h / w
            eye[:, 1, 0] = torch.sin(t) * w / h
            eye[:, 1, 1] = torch.cos(t)
            return eye
        raise ConvlensError(f"unknown transform {self.kind!r}")


def jitter(d: int) -> Transform:
    """Move each image by a random whole number of pixels in ``[-d, d]``, per axis."""
    if int(d) < 0:
        raise ConvlensError(f"jitter must be >= 0 pixels, got {d}")
    return Transform("jitter", (int(d),))


def random_scale(scales: Sequence[float]) -> Transform:
    """Scale each image about its centre by a factor drawn from `scales`."""
    scales = tuple(float(s) for s in scales)
    if not scales or min(scales) <= 0:
        raise ConvlensError(f"scales must be positive numbers, got {scales}")
    return Transform("scale", scales)


def random_rotate(degrees: Sequence[float]) -> Transform:
    """Rotate each image about its centre by an angle (degrees) drawn from `degrees`."""
    degrees = tuple(float(a) for a in degrees)
    if not degrees:
        raise ConvlensError("random_rotate needs at least one angle")
    return Transform("rotate", degrees)


def pad(fill: str = "grey") -> Transform:
    """What fills pixels that the moves bring in from outside the image: ``grey`` (mid-range,
    Lucid's constant 0.5), ``reflect``, ``border`` (edge pixels repeated) or ``zeros``."""
    if fill not in FILLS:
        raise unknown("fill", fill, FILLS)
    return Transform("pad", (), fill)


def standard_transforms(size: int) -> list[Transform]:
    """Olah et al. (2017)'s robustness recipe scaled to an image side of `size` pixels: grey
    fill, jitter of size/16, scale by 0.95..1.05, rotate by -5..5 degrees, jitter of size/32."""
    big, small = max(1, round(size / 16)), max(1, round(size / 32))
    return [pad("grey"), jitter(big), random_scale([1 + (i - 5) / 100 for i in range(11)]),
            random_rotate(range(-5, 6)), jitter(small)]


def apply_transforms(unit: torch.Tensor, transforms: Sequence[Transform],
                     gen: torch.Generator) -> torch.Tensor:
    """Each image of `unit` ``(B, C, H, W)`` moved by its own random draw of `transforms`."""
    if not transforms:
        return unit
    b, _, h, w = unit.shape
    fill = "grey"
    m = torch.eye(3).repeat(b, 1, 1)
    for t in transforms:
        a = t.matrix(b, h, w, gen)
        if a is None:
            fill = t.fill
        else:
            m = m @ a
    theta = m[:, :2, :].to(unit.device, unit.dtype)
    if torch.equal(m, torch.eye(3).expand_as(m)):
        return unit
    grid = F.affine_grid(theta, list(unit.shape), align_corners=False)
    mode = {"grey": "zeros", "zeros": "zeros", "reflect": "reflection", "border": "border"}[fill]
    src = unit - 0.5 if fill == "grey" else unit
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode=mode, align_corners=False)
    return out + 0.5 if fill == "grey" else out
