"""The renderer of ``builtin:shapes``, in named steps.

`_render` draws one item: `_place` poses the object (rotation, scale, position; for a truncated
item the position that cuts off the drawn fraction) and rasterises it; `_backdrop` draws the
background and measures it under the object's footprint; `_draw_clutter` (`scene`) adds the
distractors; `_draw_object` picks the object's colour against that background and paints it;
`_occlude` lays the bar over it; `_pixel_noise` adds noise; then 8-bit quantisation and
`_ground_truth` (mask, box, keypoints, contrast). Every step reads its own slots of the item's
uniforms (`scene`), in the same order as ever, so the bytes are those of the original renderer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..nuisance import (
    LUMA,
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
from .geometry import _SHAPES, SHAPE_CLASSES, _coverage_from_sdf, _rotate, _sdf, _ShapeDef, _window
from .scene import (
    _N_UNIFORMS,
    _S_BG,
    _S_COL,
    _S_NCLUT,
    _S_NOISE,
    _S_OCC,
    _S_POS,
    _S_ROT,
    _S_SCALE,
    _S_TRUNC,
    BACKGROUNDS,
    _background,
    _draw_clutter,
    _pick_colour,
)

MIN_SCALE = 0.02
MAX_SCALE = 0.60
FIT_FRACTION = 0.90  # the rotated shape's bounding box spans <= 90 % of the image
SMALL_SCALE = 0.04  # objects smaller than this ...
SMALL_MAX_OCCLUDED = 0.25  # ... are occluded at most this much


@dataclass
class ShapeItem:
    image: np.ndarray  # (size, size, 3) uint8 RGB
    label: int
    mask: np.ndarray  # (size, size) bool, visible object pixels
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) inclusive-exclusive
    keypoints: dict[str, tuple[float, float]] = field(default_factory=dict)
    attributes: dict[str, float | int | str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return SHAPE_CLASSES[self.label]


@dataclass
class _Placed:
    """The object posed and placed: its coverage on a local window of pixels, and where that
    window lies in the image."""

    shape: _ShapeDef
    rotation: float  # degrees
    c: float  # cos and sin of the rotation
    s: float
    rot_outline: np.ndarray | None  # rotated outline (unit radius), polygons only
    scale: float
    radius: float  # circumradius, pixels
    cx: float
    cy: float
    X: np.ndarray  # (1, wl) and (hl, 1): pixel-centre offsets from (cx, cy) over the window
    Y: np.ndarray
    cov: np.ndarray  # (hl, wl) anti-aliased coverage
    total: float  # cov's sum: the whole object's area, pixels
    ox: int  # image position of the window's corner
    oy: int
    win: tuple[int, int, int, int]  # (wy0, wy1, wx0, wx1): the window's in-image part
    cov_in: np.ndarray  # coverage of that part
    inside: float  # its sum
    truncated: float  # fraction of the object outside the image

    @property
    def view(self) -> tuple[slice, slice]:
        """The image rows and columns of the window's in-image part."""
        wy0, wy1, wx0, wx1 = self.win
        return slice(self.oy + wy0, self.oy + wy1), slice(self.ox + wx0, self.ox + wx1)

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` image box of the window's in-image part."""
        wy0, wy1, wx0, wx1 = self.win
        return (self.ox + wx0, self.oy + wy0, self.ox + wx1, self.oy + wy1)


def _check_args(seed, index, size):
    if int(seed) != seed or int(index) != index or seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative integers, got {seed!r}, {index!r}")
    if int(size) != size or size < 24:
        raise ValueError(f"size must be an integer >= 24, got {size!r}")
    return int(seed), int(index), int(size)


def _render(seed, index, size, full=True, out=None, planted=False):
    """Render one item.  ``full=False`` skips the ground truth (fast path); ``planted``: the
    planted variant's background rule (`plant`)."""
    seed, index, size = _check_args(seed, index, size)
    rng = np.random.default_rng([seed, index])
    u = rng.random(_N_UNIFORMS).tolist()
    label = index % len(SHAPE_CLASSES)
    if planted:
        u[_S_BG] = plant(label, u[_S_BG])
    obj = _place(_SHAPES[label], u, size)
    bg_kind, img, (bg_luma, bg_spread, bg_mean_rgb) = _backdrop(obj, u, size, rng)
    nc = u[_S_NCLUT]
    n_clutter = 0 if nc < 0.4 else min(1 + int((nc - 0.4) / 0.15), 4)
    if n_clutter:
        _draw_clutter(img, u, n_clutter, size, obj.box)
    hue, sat, value = _draw_object(img, obj, u, bg_luma, bg_spread)
    occluded, occ_full = _occlude(img, obj, u, size, bg_mean_rgb)
    _pixel_noise(img, u, size, rng)

    if out is None:
        out = np.empty((size, size, 3), dtype=np.uint8)
    np.clip(img, 0.0, 1.0, out=img)
    lum = (img @ LUMA) if full else None  # for the contrast measurement
    to_uint8(img, out)
    if not full:
        return out, label

    mask, full_mask, box, keypoints, all_kp, contrast = _ground_truth(obj, occ_full, lum, size)
    attributes = {
        "scale": float(obj.scale),
        "cx": float(obj.cx),
        "cy": float(obj.cy),
        "rotation": float(obj.rotation),
        "hue": float(hue % 1.0),
        "saturation": float(sat),
        "value": float(value),
        "contrast": float(contrast),
        "background": bg_kind,
        "clutter": int(n_clutter),
        "occluded": float(occluded),
        "truncated": float(obj.truncated),
    }
    extra = {"full_mask": full_mask, "all_keypoints": all_kp, "radius": obj.radius}
    return ShapeItem(out, label, mask, box, keypoints, attributes), extra


def _render_background(seed, index, size, kind):
    """Item ``index``'s background alone, of kind `kind` (``BACKGROUNDS``): no object, no
    clutter, no occluder; the item's pixel noise. ``(size, size, 3)`` uint8."""
    seed, index, size = _check_args(seed, index, size)
    if kind not in BACKGROUNDS:
        raise ValueError(f"unknown background {kind!r}: one of {', '.join(BACKGROUNDS)}")
    rng = np.random.default_rng([seed, index])
    u = rng.random(_N_UNIFORMS).tolist()
    img = _background(kind, u, size, rng)
    img = img.astype(np.float32, copy=True)
    _pixel_noise(img, u, size, rng)
    out = np.empty((size, size, 3), dtype=np.uint8)
    np.clip(img, 0.0, 1.0, out=img)
    to_uint8(img, out)
    return out


# -- the object's pose and place -----------------------------------------------------------------
def _place(shape: _ShapeDef, u, size: int) -> _Placed:
    """Rotation, scale and position (truncated items: the position that cuts off the drawn
    fraction), and the object's coverage there."""
    rotation = 360.0 * u[_S_ROT]
    ang = math.radians(rotation)
    c, s = math.cos(ang), math.sin(ang)
    if shape.kind == "poly":
        rot_outline = _rotate(shape.outline, c, s)
        ext_lo = rot_outline.min(axis=0)
        ext_hi = rot_outline.max(axis=0)
    else:
        rot_outline = None
        ext_lo = np.array([-1.0, -1.0])
        ext_hi = np.array([1.0, 1.0])
    span = float(max(ext_hi[0] - ext_lo[0], ext_hi[1] - ext_lo[1]))
    max_scale = min(MAX_SCALE, shape.area * (FIT_FRACTION / span) ** 2)
    lmin, lmax = math.log(MIN_SCALE), math.log(max_scale)
    scale = math.exp(lmin + u[_S_SCALE] * (lmax - lmin))
    radius = size * math.sqrt(scale / shape.area)
    xlo, ylo = (ext_lo * radius).tolist()
    xhi, yhi = (ext_hi * radius).tolist()
    extent = (xlo, ylo, xhi, yhi)

    trunc = truncation(*u[_S_TRUNC:_S_TRUNC + 3])
    margin = 3.0 if trunc is not None else 2.0
    fx, fy = u[_S_POS + 2], u[_S_POS + 3]
    cx = margin - xlo + u[_S_POS] * (size - 2 * margin - (xhi - xlo))
    cy = margin - ylo + u[_S_POS + 1] * (size - 2 * margin - (yhi - ylo))
    if trunc is not None:
        # sample the shape at the drawn sub-pixel phase first ...
        cx, cy = math.floor(cx) + fx, math.floor(cy) + fy
    else:
        fx, fy = cx - math.floor(cx), cy - math.floor(cy)
    window = _raster(shape, radius, c, s, extent, fx, fy)
    if trunc is not None:
        # ... then move it along one axis to cut off the target fraction
        cx, cy = _truncate(window, trunc, cx, cy, fx, fy, size)
        fx, fy = cx - math.floor(cx), cy - math.floor(cy)
        window = _raster(shape, radius, c, s, extent, fx, fy)
    j0, wl, i0, hl, X, Y, cov = window
    total = float(cov.sum())
    ix, iy = math.floor(cx), math.floor(cy)
    ox, oy = ix + j0, iy + i0  # image position of the local window's corner

    # in-image part of the object's coverage
    wy0, wx0 = max(0, -oy), max(0, -ox)
    wy1, wx1 = min(hl, size - oy), min(wl, size - ox)
    cov_in = cov[wy0:wy1, wx0:wx1]
    inside = float(cov_in.sum())
    truncated = max(0.0, 1.0 - inside / total)
    return _Placed(shape, rotation, c, s, rot_outline, scale, radius, cx, cy, X, Y, cov, total,
                   ox, oy, (wy0, wy1, wx0, wx1), cov_in, inside, truncated)


def _raster(shape, radius, c, s, extent, fx, fy):
    """The object's coverage on the window of pixels around it, at sub-pixel phase
    ``(fx, fy)``: ``(j0, wl, i0, hl, X, Y, cov)`` (window offset and size per axis)."""
    xlo, ylo, xhi, yhi = extent
    j0, wl = _window(xlo, xhi, fx)
    i0, hl = _window(ylo, yhi, fy)
    X = (np.arange(wl, dtype=np.float32) + np.float32(j0 + 0.5 - fx))[None, :]
    Y = (np.arange(hl, dtype=np.float32) + np.float32(i0 + 0.5 - fy))[:, None]
    cov = _coverage_from_sdf(_sdf(shape, radius, c, s, X, Y))
    return j0, wl, i0, hl, X, Y, cov


def _truncate(window, trunc, cx, cy, fx, fy, size):
    """The centre that cuts off the target fraction at the chosen border: outside(n) for n
    whole columns (rows) cut off, interpolated."""
    j0, wl, i0, hl, _, _, cov = window
    side, target = trunc  # side: left, right, top, bottom
    horizontal = side < 2
    prof = cut_profile(cov, side) / float(cov.sum())
    outside = np.concatenate([[0.0], np.cumsum(prof)])
    n = int(np.clip(np.searchsorted(outside, target) - 1, 0, len(outside) - 2))
    step = outside[n + 1] - outside[n]
    nn = n + ((target - outside[n]) / step if step > 0 else 0.0)
    w0, length, f = (j0, wl, fx) if horizontal else (i0, hl, fy)
    pos = (-w0 - nn + f) if side in (0, 2) else (size - w0 - length + nn + f)
    return (pos, cy) if horizontal else (cx, pos)


# -- background, object, occluder, noise ---------------------------------------------------------
#: the planted variant (``builtin:shapes-planted``): this background behind every item of the
#: ``always`` class and behind no item of any other class (``never`` names the class the tests
#: compare with); the other backgrounds keep their usual draw
PLANTED = {"concept": "stripes", "always": "circle", "never": "square"}


def plant(label: int, u_bg: float) -> float:
    """The background uniform of an item of class `label` under `PLANTED`'s rule: the planted
    background's slot for the ``always`` class; for every other class a draw that would give
    the planted background is moved, uniformly, onto the other kinds."""
    kinds = len(BACKGROUNDS)
    k = BACKGROUNDS.index(PLANTED["concept"])
    if SHAPE_CLASSES[label] == PLANTED["always"]:
        return (k + 0.5) / kinds
    slot = min(int(u_bg * kinds), kinds - 1)
    if slot == k:
        frac = u_bg * kinds - slot  # uniform in [0, 1) given the slot
        other = [j for j in range(kinds) if j != k][min(int(frac * (kinds - 1)), kinds - 2)]
        return (other + 0.5) / kinds
    return u_bg


def _backdrop(obj: _Placed, u, size: int, rng):
    """The background (kind, float32 image) and, under the object's footprint (coverage-
    weighted), its mean luminance, the luminance's spread and the mean colour of the box."""
    bg_kind = BACKGROUNDS[min(int(u[_S_BG] * len(BACKGROUNDS)), len(BACKGROUNDS) - 1)]
    img = _background(bg_kind, u, size, rng)
    if not img.flags.writeable or img.dtype != np.float32:
        img = img.astype(np.float32)
    region = img[obj.view]
    wts = obj.cov_in * np.float32(1.0 / max(obj.inside, 1e-6))
    bg_lum = region @ LUMA
    bg_luma = float(np.vdot(wts, bg_lum))
    bg_spread = math.sqrt(max(float(np.vdot(wts, bg_lum * bg_lum)) - bg_luma**2, 0.0))
    bg_mean_rgb = region.reshape(-1, 3).mean(axis=0)
    return bg_kind, img, (bg_luma, bg_spread, bg_mean_rgb)


def _draw_object(img, obj: _Placed, u, bg_luma: float, bg_spread: float):
    """Paint the object in a colour that stands out from the background under it: its HSV."""
    hue, sat, value = _pick_colour(u[_S_COL], 0.15 + 0.85 * u[_S_COL + 1],
                                   min(0.3 + 0.3 * u[_S_COL + 2] + bg_spread, 0.7),
                                   u[_S_COL + 3], bg_luma)
    paint_over(img[obj.view], obj.cov_in, hsv(hue, sat, value))
    return hue, sat, value


def _occlude(img, obj: _Placed, u, size: int, bg_mean_rgb):
    """For occluded items, a bar in front of the object hiding the drawn fraction of it:
    ``(occluded fraction, bar coverage over the image)``; ``(0.0, None)`` otherwise."""
    if not u[_S_OCC] < P_OCCLUDED:
        return 0.0, None
    cap = SMALL_MAX_OCCLUDED if obj.scale < SMALL_SCALE else math.inf
    o_target = occlusion_target(u[_S_OCC + 1], obj.truncated, cap)
    phi = math.pi * u[_S_OCC + 2]
    cp, sp = math.cos(phi), math.sin(phi)
    if obj.rot_outline is not None:
        half = float(np.abs(obj.rot_outline @ np.array([cp, sp])).max()) * obj.radius
    else:
        half = obj.radius
    c_rel = (u[_S_OCC + 3] - 0.5) * half
    wy0, wy1, wx0, wx1 = obj.win
    Xin = obj.X[:, wx0:wx1]
    Yin = obj.Y[wy0:wy1]
    dist = np.abs(Xin * np.float32(cp) + Yin * np.float32(sp) - np.float32(c_rel))
    nz = obj.cov_in > 0
    dsel, wsel = dist[nz], obj.cov_in[nz]
    # hidden(h) = sum(cov * clip(h + 0.5 - d, 0, 1)) is monotone in the bar
    # half-width h: bisect for the target (anti-aliasing included)
    lo_h, hi_h = bisect(
        lambda h: np.minimum(np.maximum(np.float32(h + 0.5) - dsel, 0.0), 1.0) @ wsel,
        o_target * obj.total, float(dsel.max()) + 0.5, 14)
    halfwidth = max(0.5 * (lo_h + hi_h), 0.75)
    occ_full = bar(size, np.float32(obj.cx), np.float32(obj.cy), np.float32(cp), np.float32(sp),
                   np.float32(c_rel), halfwidth)
    if u[_S_OCC + 4] < 0.5:
        occ_col = bg_mean_rgb.astype(np.float32)
    else:
        occ_col = hsv(u[_S_OCC + 5], 0.6 * u[_S_OCC + 6], 0.1 + 0.9 * u[_S_OCC + 6])
    paint_over(img, occ_full, occ_col)
    occluded = float((obj.cov_in * occ_full[obj.view]).sum()) / obj.total
    return occluded, occ_full


def _pixel_noise(img, u, size: int, rng) -> None:
    """Uniform pixel noise (half the items), in place."""
    if u[_S_NOISE] < 0.5:
        sigma = 0.01 + 0.04 * u[_S_NOISE + 1]
        noise = rng.random((size, size, 3), dtype=np.float32)
        noise -= np.float32(0.5)
        noise *= np.float32(sigma * math.sqrt(12.0))
        img += noise


# -- ground truth --------------------------------------------------------------------------------
def _ground_truth(obj: _Placed, occ_full, lum, size: int):
    """``(mask, full_mask, box, keypoints in the image, all keypoints, contrast)``."""
    full_mask = np.zeros((size, size), dtype=bool)
    full_mask[obj.view] = obj.cov_in >= 0.5
    mask = full_mask if occ_full is None else full_mask & (occ_full < 0.5)
    box = tight_box(mask)

    shape = obj.shape
    all_kp = {}
    names = list(shape.keypoints)
    pts = _rotate(np.array([shape.keypoints[k] for k in names]), obj.c, obj.s) * obj.radius
    for name, (px, py) in zip(names, pts.tolist()):
        all_kp[name] = (obj.cx + px, obj.cy + py)
    all_kp["center"] = (obj.cx, obj.cy)
    keypoints = {k: (float(x), float(y)) for k, (x, y) in all_kp.items()
                 if 0.0 <= x < size and 0.0 <= y < size}
    contrast = _contrast(obj, lum, mask, full_mask, box, size) if box[2] > box[0] else 0.0
    return mask, full_mask, box, keypoints, all_kp, contrast


def _contrast(obj: _Placed, lum, mask, full_mask, box, size: int) -> float:
    """|mean luminance of the mask - mean luminance around it| (the box grown by a margin,
    without the object and its anti-aliased fringe)."""
    bw, bh = box[2] - box[0], box[3] - box[1]
    pad = max(2, int(round(0.25 * max(bw, bh))))
    gy0, gx0 = max(box[1] - pad, 0), max(box[0] - pad, 0)
    gy1, gx1 = min(box[3] + pad, size), min(box[2] + pad, size)
    around = ~full_mask[gy0:gy1, gx0:gx1]
    # exclude the anti-aliased fringe of the object as well
    fringe = np.zeros((size, size), dtype=bool)
    fringe[obj.view] = obj.cov_in > 0
    around &= ~fringe[gy0:gy1, gx0:gx1]
    lg = lum[gy0:gy1, gx0:gx1][around]
    if lg.size == 0:
        lg = lum[~fringe]
    if lg.size:
        return abs(float(lum[mask].mean()) - float(lg.mean()))
    return 0.0
