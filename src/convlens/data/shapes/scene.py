"""The scene around the object of ``builtin:shapes``: the item's uniforms, backgrounds,
clutter and the object's colour.

Every random choice of an item reads fixed slots of one vector of uniforms (`_N_UNIFORMS`
numbers drawn first from the item's generator), so that a factor's value never depends on
another's: changing how one factor is drawn leaves the others' values alone.
"""
from __future__ import annotations

import math
import threading
from functools import lru_cache

import numpy as np

from ..nuisance import LUMA, hsv, paint_over
from .geometry import _BAR, _SPECK, _coverage_from_sdf, _sdf_parts, _window

BACKGROUNDS: tuple[str, ...] = ("flat", "gradient", "noise", "stripes", "texture")


# --------------------------------------------------------------------------
# random parameter layout: one fixed block of uniforms per item
# --------------------------------------------------------------------------

_SLOTS: dict[str, int] = {}


def _slot(name, n=1):
    start = len(_SLOTS)
    for i in range(n):
        _SLOTS[f"{name}{i}" if n > 1 else name] = start + i
    return start


_S_BG = _slot("bg")
_S_BGP = _slot("bgp", 12)  # background parameters
_S_ROT = _slot("rot")
_S_SCALE = _slot("scale")
_S_TRUNC = _slot("trunc", 4)  # flag, side, amount, spare
_S_POS = _slot("pos", 4)  # cx, cy, fx, fy
_S_OCC = _slot("occ", 7)  # flag, amount, angle, offset, colour kind, h, v
_S_COL = _slot("col", 4)  # hue, saturation, contrast magnitude, polarity
_S_NOISE = _slot("noise", 2)  # flag, sigma
_S_NCLUT = _slot("nclut")
_CLUT_STRIDE = 15  # kind, size, angle, spare, h, s, v, 4 x (x, y) candidate centres
_S_CLUT = _slot("clut", 4 * _CLUT_STRIDE)
_N_UNIFORMS = max(_SLOTS.values()) + 1


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _grid(size):
    xs = (np.arange(size, dtype=np.float32) + 0.5)[None, :]
    ys = (np.arange(size, dtype=np.float32) + 0.5)[:, None]
    return xs, ys


@lru_cache(maxsize=64)
def _upsample_matrix(size, k):
    """(size, k) bilinear interpolation matrix from a k-grid to ``size`` pixels."""
    pos = (np.arange(size) + 0.5) / size * (k - 1)
    i0 = np.clip(np.floor(pos).astype(int), 0, k - 2)
    t = pos - i0
    m = np.zeros((size, k), dtype=np.float32)
    m[np.arange(size), i0] = 1 - t
    m[np.arange(size), i0 + 1] = t
    return m


def _luma(rgb):
    return float(rgb @ LUMA)


_TEXTURE_NAMES = ("brick", "grass", "gravel", "astronaut", "chelsea", "coffee", "rocket")
_TEXTURE_MIN_SIDE = 160
_texture_cache: list | None = None
_texture_lock = threading.Lock()


def _textures():
    """Lazily load and cache scikit-image's bundled photos as float32 RGB."""
    global _texture_cache
    if _texture_cache is None:
        with _texture_lock:
            if _texture_cache is None:
                import skimage.data
                from skimage.transform import rescale

                out = []
                for name in _TEXTURE_NAMES:
                    img = getattr(skimage.data, name)().astype(np.float32) / 255.0
                    gray = img.ndim == 2
                    if gray:
                        img = img[..., None]
                    f = _TEXTURE_MIN_SIDE / min(img.shape[:2])
                    if f < 1:
                        img = rescale(img, f, channel_axis=-1, anti_aliasing=True,
                                      order=1, preserve_range=True)
                    img = np.ascontiguousarray(img, dtype=np.float32)
                    out.append((img, gray))
                _texture_cache = out
    return _texture_cache


def _crop_resize(src, y0, x0, side, size):
    """Bilinear resample of the window ``[y0, y0+side) x [x0, x0+side)`` to size x size."""
    h, w = src.shape[:2]
    pos = (np.arange(size, dtype=np.float64) + 0.5) * (side / size) - 0.5
    px = np.clip(x0 + pos, 0, w - 1.001)
    py = np.clip(y0 + pos, 0, h - 1.001)
    ix = np.floor(px).astype(np.intp)
    iy = np.floor(py).astype(np.intp)
    wx = (px - ix).astype(np.float32)[None, :, None]
    wy = (py - iy).astype(np.float32)[:, None, None]
    r0, r1 = iy[0], iy[-1] + 2
    sub = src[r0:r1]
    cols = sub[:, ix] * (1 - wx) + sub[:, ix + 1] * wx
    iy = iy - r0
    return cols[iy] * (1 - wy) + cols[iy + 1] * wy


# --------------------------------------------------------------------------
# backgrounds
# --------------------------------------------------------------------------


def _background(kind, u, size, rng):
    p = u[_S_BGP:_S_BGP + 12]
    xs, ys = _grid(size)
    c1 = hsv(p[0], p[1], 0.1 + 0.85 * p[2])
    if kind == "flat":
        return np.broadcast_to(c1, (size, size, 3)).copy()
    c2 = hsv(p[3], p[4], 0.1 + 0.85 * p[5])
    if kind == "gradient":
        a = 2 * math.pi * p[6]
        t = ((xs - size / 2) * (math.cos(a) / size) + (ys - size / 2) * (math.sin(a) / size))
        t = (t * (1 / math.sqrt(2)) + 0.5)[..., None]
        return c1 + t * (c2 - c1)
    if kind == "noise":
        k = 3 + int(p[6] * 6)  # 3..8 control points per side
        g = rng.random((k, k, 3), dtype=np.float32)
        lum = g.mean(axis=2, keepdims=True)
        colourfulness = 0.6 * p[7]
        g = lum + colourfulness * (g - lum)
        m = _upsample_matrix(size, k)
        a = (m @ g.reshape(k, k * 3)).reshape(size, k, 3)  # rows upsampled
        up = np.matmul(a.transpose(2, 0, 1), m.T).transpose(1, 2, 0)  # then columns
        lo, hi = float(g.min()), float(g.max())
        up = (up - lo) * (1.0 / max(hi - lo, 1e-6))
        return c1 + up * (c2 - c1)
    if kind == "stripes":
        a = math.pi * p[6]
        period = size * (0.06 + 0.2 * p[7])
        proj = xs * (math.cos(a) * 2 * math.pi / period) + ys * (math.sin(a) * 2 * math.pi / period)
        s = np.sin(proj + 2 * math.pi * p[8])
        sharp = 0.5 + 2.5 * p[9]
        amp = 0.35 + 0.5 * p[10]
        t = np.minimum(np.maximum(0.5 + sharp * s, 0.0), 1.0) * amp
        return c1 + t[..., None] * (c2 - c1)
    if kind == "texture":
        tex = _textures()
        src, gray = tex[min(int(p[6] * len(tex)), len(tex) - 1)]
        h, w = src.shape[:2]
        side = min(h, w) * (0.2 + 0.6 * p[7])
        y0 = p[8] * (h - side)
        x0 = p[9] * (w - side)
        crop = _crop_resize(src, y0, x0, side, size)
        amp = 0.35 + 0.55 * p[10]
        if gray:
            crop = crop - crop.mean()
            return c1 + amp * crop  # broadcasts the grey channel over the tint
        return crop * amp + c1 * (1 - amp)
    raise ValueError(kind)


# --------------------------------------------------------------------------
# clutter, the object's colour
# --------------------------------------------------------------------------


def _paste(dst, src, oy, ox):
    """Blend helper: returns (dst view, src view) of the overlap of src placed at (oy, ox)."""
    h, w = src.shape[:2]
    H, W = dst.shape[:2]
    y0, x0 = max(oy, 0), max(ox, 0)
    y1, x1 = min(oy + h, H), min(ox + w, W)
    if y1 <= y0 or x1 <= x0:
        return None, None
    return dst[y0:y1, x0:x1], src[y0 - oy:y1 - oy, x0 - ox:x1 - ox]


def _draw_clutter(img, u, n, size, obj_box):
    """Draw ``n`` small distractors, away from ``obj_box`` (x0, y0, x1, y1) where possible."""
    for k in range(n):
        q = u[_S_CLUT + k * _CLUT_STRIDE:_S_CLUT + (k + 1) * _CLUT_STRIDE]
        kind = min(int(q[0] * 3), 2)
        area = size * size * (0.002 + 0.004 * q[1])  # 0.2 % .. 0.6 % of the image
        ang = 2 * math.pi * q[2]
        c, s = math.cos(ang), math.sin(ang)
        if kind == 0:  # dot
            radius = math.sqrt(area / math.pi)
            ext = radius
        elif kind == 1:  # thin bar, length 2R, width 0.24R
            radius = math.sqrt(area / 0.48)
            ext = radius
        else:  # small square speck
            radius = math.sqrt(area / 2.0)
            ext = radius
        # candidate centres: the first one clear of the object's box wins,
        # otherwise the one farthest from the box centre
        bx0, by0, bx1, by1 = obj_box
        pad = ext + 1.0
        best, best_d = None, -1.0
        for j in range(4):
            px = (-0.05 + 1.1 * q[7 + 2 * j]) * size
            py = (-0.05 + 1.1 * q[8 + 2 * j]) * size
            dx = max(bx0 - pad - px, px - (bx1 + pad), 0.0)
            dy = max(by0 - pad - py, py - (by1 + pad), 0.0)
            if dx > 0 or dy > 0:
                best = (px, py)
                break
            d = math.hypot(px - 0.5 * (bx0 + bx1), py - 0.5 * (by0 + by1))
            if d > best_d:
                best, best_d = (px, py), d
        px, py = best
        ix, iy = math.floor(px), math.floor(py)
        fx, fy = px - ix, py - iy
        j0, wl = _window(-ext, ext, fx)
        i0, hl = _window(-ext, ext, fy)
        X = (np.arange(wl, dtype=np.float32) + np.float32(j0 + 0.5 - fx))[None, :]
        Y = (np.arange(hl, dtype=np.float32) + np.float32(i0 + 0.5 - fy))[:, None]
        if kind == 0:
            sd = np.sqrt(X * X + Y * Y) - np.float32(radius)
        else:
            sd = _sdf_parts((_BAR if kind == 1 else _SPECK,), radius, c, s, X, Y)
        cov = _coverage_from_sdf(sd)
        col = hsv(q[4], q[5], 0.1 + 0.9 * q[6])
        d_view, a_view = _paste(img, cov, iy + i0, ix + j0)
        if d_view is not None:
            paint_over(d_view, a_view, col)


def _pick_colour(hue, sat, mag, polarity, bg_luma):
    """Object HSV colour whose luminance differs from ``bg_luma`` by ~``mag``."""
    pure = _luma(hsv(hue, 1.0, 1.0))
    bright = polarity < 0.5
    if bright and bg_luma + mag > 0.97:
        bright = False
    if not bright and bg_luma - mag < 0.03:
        bright = True
        if bg_luma + mag > 0.97:  # neither side has room: take the roomier side
            bright = (1 - bg_luma) > bg_luma
            mag = (0.97 - bg_luma) if bright else (bg_luma - 0.03)
    if bright:
        target = bg_luma + mag
        k = 1.0 - sat * (1.0 - pure)  # luminance of (hue, sat, value=1)
        if k < target:  # too saturated to be this bright: desaturate
            sat = (1.0 - target) / max(1.0 - pure, 1e-6)
            k = target
        value = min(target / k, 1.0)
    else:
        target = bg_luma - mag
        k = 1.0 - sat * (1.0 - pure)
        value = min(max(target / k, 0.0), 1.0)
    return hue, sat, value
