"""The renderer of ``builtin:stamps``: one stamp composited onto a background, in steps.

`_compose` draws one item of a split from the stamps of a `Catalogue`: the background; the
object's pose (`_pose`) and place (`_position`: for a truncated item, the place that cuts off
the drawn share at one border); other stamps of the split under it (`_draw_clutter`); the
object, colour-jittered (`_draw_object`); a bar in front of it (`_occlude`); pixel noise; 8-bit
quantisation; the ground truth. Every step reads its own slots of the item's uniforms.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...errors import ConvlensError
from ..nuisance import (
    P_OCCLUDED,
    bar,
    bisect,
    cut_profile,
    hsv,
    occlusion_target,
    paint_over,
    tight_box,
    to_uint8,
    truncation,
)
from .photos import CLASSES, SPLITS, STAMP_SPLIT, Catalogue
from .pixels import BACKGROUNDS, _background, _jitter, _paste, _place

EXTENT = (0.40, 0.90)        # the object's longer side (after rotation) / image side
MAX_ROTATION = 30.0
ASPECT = (0.75, 1.33)         # width / height stretch of the object, log-uniform
P_GRAY = 0.15                 # chance that the object is shown in grey
HUE = 0.05                    # object hue shift, fraction of the colour circle, +-
JITTER = {"brightness": (0.7, 1.3), "saturation": (0.6, 1.4), "contrast": (0.75, 1.25)}
P_CLUTTER = 0.4
CLUTTER_EXTENT = (0.25, 0.5)  # of the object's extent
P_NOISE = 0.3


@dataclass
class StampItem:
    image: np.ndarray                      # (size, size, 3) uint8 RGB
    label: int
    mask: np.ndarray                       # (size, size) bool, visible object pixels
    box: tuple[int, int, int, int]         # (x0, y0, x1, y1), inclusive-exclusive
    stamp: str                             # the stamp's path inside the stamps folder
    attributes: dict[str, float | int | str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return CLASSES[self.label]


# slots in the per-item vector of uniforms: each factor always reads the same numbers
_U_STAMP, _U_EXT, _U_ROT, _U_FLIP, _U_X, _U_Y = range(6)
_U_TRUNC = 6            # flag, side, amount
_U_BG = 9               # kind + 8 parameters
_U_JIT = 18             # brightness, saturation, contrast
_U_NCLUT = 21
_U_CLUT = 22            # 3 x (stamp, extent, x, y, flip, rotation)
_U_OCC = 40             # flag, amount, angle, offset, kind, 8 colour / texture parameters
_U_NOISE = 53           # flag, sigma
_U_ASPECT, _U_GRAY, _U_HUE = 55, 56, 57
_N_U = 58


def _check(split: str, index: int, size: int) -> None:
    if split not in SPLITS:
        raise ConvlensError(f"unknown stamps split {split!r}: use train, test or seen")
    if int(index) != index or index < 0:
        raise ValueError(f"index must be a non-negative integer, got {index!r}")
    if int(size) != size or size < 32:
        raise ValueError(f"size must be an integer >= 32, got {size!r}")


def _compose(cat: Catalogue, split: str, index: int, size: int, full: bool, out=None,
             draw_object=True):
    """One item (checked by `_check`); ``draw_object=False`` leaves the object out (tests: what
    it changed)."""
    stamps = cat.stamps[STAMP_SPLIT[split]]
    rng = np.random.default_rng([SPLITS[split], int(index)])
    u = rng.random(_N_U).tolist()
    label = index % len(CLASSES)
    own = stamps[label]
    rel = own[min(int(u[_U_STAMP] * len(own)), len(own) - 1)]
    max_side = size  # the object's longer side is at most 0.9 size: no need for more pixels
    bg_kind = BACKGROUNDS[min(int(u[_U_BG] * len(BACKGROUNDS)), len(BACKGROUNDS) - 1)]
    img = np.array(_background(bg_kind, u[_U_BG + 1:_U_BG + 9], size, rng), dtype=np.float32)

    # the object, placed (not drawn yet)
    extent, rotation, flip, aspect = _pose(u, size)
    fg = _place(cat.root, rel, extent, rotation, flip, max_side, aspect)
    h, w = fg.shape[:2]
    solid = fg[..., 3] >= 0.5
    total = int(solid.sum())
    x, y = _position(solid, total, u, size)

    nc = u[_U_NCLUT]
    n_clutter = 0 if nc >= P_CLUTTER else 1 + min(int(nc / P_CLUTTER * 3), 2)
    _draw_clutter(img, cat.pool(STAMP_SPLIT[split]), cat, rel, u, n_clutter, extent, size)
    jit, hue, (a_in, (bx0, by0, bx1, by1)) = _draw_object(img, fg, u, x, y, draw_object)

    full_mask = np.zeros((size, size), dtype=bool)
    full_mask[by0:by1, bx0:bx1] = a_in >= 0.5
    inside = int(full_mask.sum())
    truncated = 1.0 - inside / total if total else 0.0
    occluded, occ = _occlude(img, full_mask, inside, total, truncated, u, size, rng)

    # pixel noise, quantisation
    if u[_U_NOISE] < P_NOISE:
        sigma = 0.01 + 0.03 * u[_U_NOISE + 1]
        img += rng.standard_normal((size, size, 3), dtype=np.float32) * np.float32(sigma)
    if out is None:
        out = np.empty((size, size, 3), dtype=np.uint8)
    np.clip(img, 0.0, 1.0, out=img)
    to_uint8(img, out)
    if not full:
        return out, label

    # ground truth
    mask = full_mask if occ is None else full_mask & (occ < 0.5)
    sy, sx = np.nonzero(solid)
    attributes = {
        "scale": total / float(size * size),
        "cx": float(x + sx.mean() + 0.5) if total else float(x + w / 2),
        "cy": float(y + sy.mean() + 0.5) if total else float(y + h / 2),
        "rotation": float(rotation),
        "flipped": int(flip),
        "aspect": float(aspect),
        "brightness": float(jit[0]),
        "saturation": float(jit[1]),
        "contrast": float(jit[2]),
        "hue": float(hue),
        "background": bg_kind,
        "clutter": int(n_clutter),
        "occluded": float(occluded),
        "truncated": float(max(truncated, 0.0)),
    }
    return StampItem(out, label, mask, tight_box(mask), rel, attributes)


def _pose(u, size: int):
    """``(extent in pixels, rotation in degrees, flip, aspect stretch)`` of the object."""
    extent = size * (EXTENT[0] + (EXTENT[1] - EXTENT[0]) * u[_U_EXT])
    rotation = MAX_ROTATION * (2 * u[_U_ROT] - 1)
    flip = u[_U_FLIP] < 0.5
    aspect = math.exp(math.log(ASPECT[0]) + u[_U_ASPECT] * math.log(ASPECT[1] / ASPECT[0]))
    return extent, rotation, flip, aspect


def _position(solid: np.ndarray, total: int, u, size: int) -> tuple[int, int]:
    """Top-left corner ``(x, y)`` of the placed stamp (alpha >= 0.5 mask ``solid``); a truncated
    item has a target share cut off at one border, in whole columns (rows) of the mask."""
    h, w = solid.shape
    trunc = truncation(*u[_U_TRUNC:_U_TRUNC + 3])
    if trunc is None or not total:
        return round(u[_U_X] * (size - w)), round(u[_U_Y] * (size - h))
    side, target = trunc  # left, right, top, bottom
    n = int(np.searchsorted(np.cumsum(cut_profile(solid, side)), target * total))
    if side == 0:
        return -n, round(u[_U_Y] * (size - h))
    if side == 1:
        return size - w + n, round(u[_U_Y] * (size - h))
    if side == 2:
        return round(u[_U_X] * (size - w)), -n
    return round(u[_U_X] * (size - w)), size - h + n


def _draw_clutter(img, pool: list[str], cat: Catalogue, rel: str, u, n_clutter: int,
                  extent: float, size: int) -> None:
    """Other stamps of the split (never the object's own), drawn under the object."""
    for k in range(n_clutter):
        q = u[_U_CLUT + 6 * k:_U_CLUT + 6 * k + 6]
        j = min(int(q[0] * len(pool)), len(pool) - 1)
        other = pool[j] if pool[j] != rel else pool[(j + 1) % len(pool)]
        ext = extent * (CLUTTER_EXTENT[0] + (CLUTTER_EXTENT[1] - CLUTTER_EXTENT[0]) * q[1])
        cf = _place(cat.root, other, ext, MAX_ROTATION * (2 * q[5] - 1), q[4] < 0.5, size)
        ch, cw = cf.shape[:2]
        _paste(img, cf, round(q[2] * (size - cw)), round(q[3] * (size - ch)))


def _draw_object(img, fg, u, x: int, y: int, draw_object: bool):
    """The object, colour-jittered, pasted at ``(x, y)`` (onto a copy when ``draw_object`` is
    False): ``(jitter factors, hue shift, (in-image alpha, its box))``."""
    jit = [lo + (hi - lo) * u[_U_JIT + k] for k, (lo, hi) in enumerate(JITTER.values())]
    if u[_U_GRAY] < P_GRAY:
        jit[1] = 0.0
    hue = HUE * (2 * u[_U_HUE] - 1)
    fg = _jitter(fg, *jit, hue=hue)
    return jit, hue, _paste(img if draw_object else img.copy(), fg, x, y)


def _occlude(img, full_mask, inside: int, total: int, truncated: float, u, size: int, rng):
    """For occluded items, a bar in front hiding a target share of the whole object:
    ``(occluded fraction, bar coverage over the image)``; ``(0.0, None)`` otherwise."""
    if not (u[_U_OCC] < P_OCCLUDED and inside):
        return 0.0, None
    goal = occlusion_target(u[_U_OCC + 1], truncated, 0.9 * inside / total) * total
    ys, xs = np.nonzero(full_mask)
    mx, my = xs.mean() + 0.5, ys.mean() + 0.5
    phi = math.pi * u[_U_OCC + 2]
    cp, sp = math.cos(phi), math.sin(phi)
    proj = (xs + 0.5 - mx) * cp + (ys + 0.5 - my) * sp
    half = float(np.abs(proj).max())
    c_rel = (u[_U_OCC + 3] - 0.5) * half
    d = np.abs(proj - c_rel).astype(np.float32)
    # hidden(h), the pixels under the bar's >= 0.5 part, grows with the half-width h
    _, hi_h = bisect(lambda h: (np.clip(h + 0.5 - d, 0.0, 1.0) >= 0.5).sum(), goal,
                     float(d.max()) + 1.0, 16)
    occ = bar(size, mx, my, cp, sp, c_rel, max(hi_h, 0.75))
    if u[_U_OCC + 4] < 0.5:
        kind = BACKGROUNDS[min(int(u[_U_OCC + 5] * 8), 7)]
        paint = _background(kind, u[_U_OCC + 5:_U_OCC + 13], size, rng)
    else:
        paint = hsv(u[_U_OCC + 5], 0.7 * u[_U_OCC + 6], 0.1 + 0.85 * u[_U_OCC + 7])
    paint_over(img, occ, paint)
    return float((full_mask & (occ >= 0.5)).sum()) / total, occ
