"""``builtin:shapes`` -- a procedural RGB shape dataset with exact ground truth.

Every item is generated on demand from ``(seed, index)`` alone (plus the image
``size``): ``render(seed, index)`` gives the same bytes in any process, on any
machine, in any call order.  Splits differ only by seed: train items are
``(TRAIN_SEED, i)``, test items ``(TEST_SEED, i)``; every nuisance factor
(small objects, clutter, occlusion, truncation, background kind) is drawn with
the same probabilities in both splits.

Classes (``SHAPE_CLASSES``, in this order): circle, square, triangle, star
(5 points, inner radius 0.45 of outer), cross (arm width 1/3 of its span), hexagon,
ring (inner radius 0.55 of outer), arrow (shaft + triangular head).  Labels are
balanced deterministically: ``label = index % 8``.

Conventions
-----------
* Pixel coordinates are continuous: pixel ``(row y, col x)`` covers
  ``[x, x+1) x [y, y+1)``, so its centre is ``(x + 0.5, y + 0.5)``.  ``cx``,
  ``cy`` and keypoints use these coordinates (``x`` right, ``y`` down).
* ``rotation`` is in degrees, counter-clockwise as seen on screen.  At
  rotation 0: square axis-aligned, triangle / star / hexagon with a vertex at the
  top, cross upright, arrow pointing right.
* ``mask`` is the *visible* object: pixels whose anti-aliased object coverage
  is >= 0.5 and that are not hidden by the occluder (occluder coverage < 0.5).
  It is restricted to the image by construction.  Distractors (clutter) are drawn
  *under* the object, so they never hide it.  ``shape_mask`` gives the
  un-occluded (but in-image) mask.
* ``box = (x0, y0, x1, y1)``: tight box of ``mask`` in pixel indices,
  inclusive-exclusive (``mask[y0:y1, x0:x1]`` holds every mask pixel);
  ``(0, 0, 0, 0)`` if the mask were empty (it never is in practice).
* ``keypoints``: name -> ``(x, y)`` of the shape's landmarks moved with its
  transform.  **Only keypoints that lie inside the image** (``0 <= x, y < size``)
  are reported; occluded keypoints are still reported.  ``shape_keypoints`` gives
  all of them.  Names per class: circle / ring: ``top right bottom left``
  (outer outline at 0/90/180/270 deg, rotated); square / triangle / hexagon:
  ``v0..v{n-1}`` (clockwise from the top / top-left); star: ``tip0..tip4`` and
  ``notch0..notch4``; cross: arm-end midpoints ``top right bottom left``; arrow:
  ``tip tail barb_left barb_right``; every class also has ``center`` (= ``(cx, cy)``,
  the centre of the circumscribed circle; for the arrow the midpoint of tip and
  tail).  All but ``center`` lie on the outline.
* ``attributes``:
    - ``scale``: area of the full (un-occluded, un-truncated) shape / image
      area; log-uniform from 0.02 up to ``min(0.6, largest area at which the
      rotated shape fits in 90 % of the image)`` -- so for the elongated classes
      (triangle, star, arrow) the top of the range is lower (about 0.25-0.45).
    - ``cx``, ``cy`` (pixels), ``rotation`` (degrees, [0, 360)).
    - ``hue``, ``saturation``, ``value``: HSV colour of the object in [0, 1].
    - ``contrast``: |mean luminance (Rec. 601, 0..1) of the mask pixels - mean
      luminance of the non-object pixels in the object's box grown by a margin|,
      measured on the rendered image (before 8-bit quantisation).  The object
      colour is chosen so that its luminance differs from the mean background
      luminance under its footprint by 0.3-0.6 (plus the background's standard
      deviation there, up to 0.7; less only where 0..1 leaves no room).
    - ``background``: one of ``BACKGROUNDS``.
    - ``clutter``: number of distractors (0-4; small dots, bars and specks of
      0.2-0.6 % image area, placed away from the object where possible and drawn
      under it).
    - ``occluded``: fraction of the full shape area hidden by an occluding bar
      (0 for ~75 % of items, otherwise 0.1-0.4; at most 0.25 for objects with
      ``scale < 0.04``).
    - ``truncated``: fraction of the full shape area outside the image (0 for
      ~85 % of items, otherwise 0.05-0.35).  ``occluded + truncated <= ~0.55``.

Pure numpy at render time; scikit-image is used once, lazily, to load its
bundled photos for the ``texture`` backgrounds.  No torch.
"""

from __future__ import annotations

import colorsys
import math
import threading
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

__all__ = [
    "SHAPE_CLASSES",
    "BACKGROUNDS",
    "TRAIN_SEED",
    "TEST_SEED",
    "ShapeItem",
    "render",
    "render_batch",
    "shape_mask",
    "shape_keypoints",
    "ShapesDataset",
]

SHAPE_CLASSES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "hexagon",
    "ring",
    "arrow",
)
BACKGROUNDS: tuple[str, ...] = ("flat", "gradient", "noise", "stripes", "texture")
TRAIN_SEED = 0
TEST_SEED = 1

DEFAULT_SIZE = 64
MIN_SCALE = 0.02
MAX_SCALE = 0.60
FIT_FRACTION = 0.90  # the rotated shape's bounding box spans <= 90 % of the image
P_TRUNCATED = 0.15
P_OCCLUDED = 0.25
TRUNC_RANGE = (0.05, 0.35)
OCC_RANGE = (0.10, 0.40)
MAX_HIDDEN = 0.55  # occluded + truncated never exceeds this
SMALL_SCALE = 0.04  # objects smaller than this ...
SMALL_MAX_OCCLUDED = 0.25  # ... are occluded at most this much
STAR_INNER = 0.45
CROSS_HALF_WIDTH = 1.0 / 3.0  # arm width 2/3 R = 1/3 of the span 2R
RING_INNER = 0.55
ARROW_SHAFT_HALF_WIDTH = 0.22
ARROW_HEAD_HALF_WIDTH = 0.60
ARROW_HEAD_BASE = 0.10  # head spans x in [0.1, 1], shaft x in [-1, 0.1]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


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


# --------------------------------------------------------------------------
# canonical geometry (unit circumradius, screen coordinates: y points down)
# --------------------------------------------------------------------------


def _polar(angle_deg, radius=1.0):
    """Point at ``angle`` clockwise from 'up' (screen coordinates)."""
    a = np.deg2rad(np.asarray(angle_deg, dtype=np.float64))
    return np.stack([np.sin(a) * radius, -np.cos(a) * radius], axis=-1)


def _regular(n, offset_deg=0.0):
    return _polar(offset_deg + np.arange(n) * 360.0 / n)


def _halfplanes(poly, cap_sharp=True):
    """Convex polygon -> (k, 3) rows (nx, ny, d): inside iff n . p <= d.

    Vertices with an interior angle < 90 deg also get a 'cap' plane
    perpendicular to their bisector, so the anti-aliased edge does not overshoot
    past the corner.
    """
    poly = np.asarray(poly, dtype=np.float64)
    x, y = poly[:, 0], poly[:, 1]
    signed = 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)
    rows = []
    n = len(poly)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        e = b - a
        nrm = np.array([e[1], -e[0]]) if signed > 0 else np.array([-e[1], e[0]])
        nrm /= np.linalg.norm(nrm)
        rows.append((nrm[0], nrm[1], float(nrm @ a)))
    if cap_sharp:
        for i in range(n):
            p, v, q = poly[i - 1], poly[i], poly[(i + 1) % n]
            u1, u2 = p - v, q - v
            cosang = u1 @ u2 / (np.linalg.norm(u1) * np.linalg.norm(u2))
            if cosang > 1e-6:  # interior angle < 90 deg
                bis = -(u1 / np.linalg.norm(u1) + u2 / np.linalg.norm(u2))
                bis /= np.linalg.norm(bis)
                rows.append((bis[0], bis[1], float(bis @ v)))
    return np.array(rows, dtype=np.float64)


def _shoelace(poly):
    x, y = poly[:, 0], poly[:, 1]
    return abs(0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


@dataclass(frozen=True)
class _ShapeDef:
    name: str
    kind: str  # "disc", "ring" or "poly"
    outline: np.ndarray  # (n, 2) vertices used for extents / projections
    parts: tuple  # tuple of (k, 3) half-plane arrays (union of convex parts)
    area: float  # in units of R^2
    keypoints: dict  # name -> (x, y) in units of R


def _make_shapes():
    defs = []
    circle_outline = _polar(np.arange(64) * 360.0 / 64)
    compass = {
        "top": (0.0, -1.0),
        "right": (1.0, 0.0),
        "bottom": (0.0, 1.0),
        "left": (-1.0, 0.0),
    }
    defs.append(_ShapeDef("circle", "disc", circle_outline, (), math.pi, dict(compass)))

    sq = _regular(4, -45.0)
    defs.append(
        _ShapeDef("square", "poly", sq, (_halfplanes(sq),), _shoelace(sq),
                  {f"v{i}": tuple(p) for i, p in enumerate(sq)})
    )

    tri = _regular(3)
    defs.append(
        _ShapeDef("triangle", "poly", tri, (_halfplanes(tri),), _shoelace(tri),
                  {f"v{i}": tuple(p) for i, p in enumerate(tri)})
    )

    # star: union of the inner pentagon and five tip wedges whose sides are the
    # star edges extended through the notches, cut by a line through the centre.
    tips = _regular(5)
    notches = _polar(36.0 + np.arange(5) * 72.0, STAR_INNER)
    star = np.empty((10, 2))
    star[0::2], star[1::2] = tips, notches
    parts = [_halfplanes(notches)]
    for k in range(5):
        t, nl, nr = tips[k], notches[k - 1], notches[k]
        ext = []
        for nn in (nr, nl):
            # where the line t -> nn crosses the base line (through the centre,
            # perpendicular to the tip direction)
            s = (t @ t) / (t @ (t - nn))
            ext.append(t + s * (nn - t))
        parts.append(_halfplanes(np.array([t, ext[0], ext[1]])))
    kp = {f"tip{i}": tuple(p) for i, p in enumerate(tips)}
    kp.update({f"notch{i}": tuple(p) for i, p in enumerate(notches)})
    defs.append(_ShapeDef("star", "poly", star, tuple(parts), _shoelace(star), kp))

    w = CROSS_HALF_WIDTH
    hbar = np.array([[-1, -w], [1, -w], [1, w], [-1, w]], dtype=np.float64)
    vbar = hbar[:, ::-1].copy()
    cross = np.array(
        [[-w, -1], [w, -1], [w, -w], [1, -w], [1, w], [w, w],
         [w, 1], [-w, 1], [-w, w], [-1, w], [-1, -w], [-w, -w]], dtype=np.float64)
    defs.append(
        _ShapeDef("cross", "poly", cross, (_halfplanes(hbar), _halfplanes(vbar)),
                  _shoelace(cross), dict(compass))
    )

    hexa = _regular(6)
    defs.append(
        _ShapeDef("hexagon", "poly", hexa, (_halfplanes(hexa),), _shoelace(hexa),
                  {f"v{i}": tuple(p) for i, p in enumerate(hexa)})
    )

    defs.append(
        _ShapeDef("ring", "ring", circle_outline, (), math.pi * (1 - RING_INNER**2),
                  dict(compass))
    )

    sw, hw, xb = ARROW_SHAFT_HALF_WIDTH, ARROW_HEAD_HALF_WIDTH, ARROW_HEAD_BASE
    arrow = np.array(
        [[-1, -sw], [xb, -sw], [xb, -hw], [1, 0], [xb, hw], [xb, sw], [-1, sw]],
        dtype=np.float64)
    # the shaft part reaches into the head so the join has no seam
    x_in = xb + 0.45 * (1 - xb)
    shaft = np.array([[-1, -sw], [x_in, -sw], [x_in, sw], [-1, sw]], dtype=np.float64)
    head = np.array([[xb, -hw], [1, 0], [xb, hw]], dtype=np.float64)
    defs.append(
        _ShapeDef("arrow", "poly", arrow, (_halfplanes(shaft), _halfplanes(head)),
                  _shoelace(arrow),
                  {"tip": (1.0, 0.0), "tail": (-1.0, 0.0),
                   "barb_left": (xb, -hw), "barb_right": (xb, hw)})
    )
    assert tuple(d.name for d in defs) == SHAPE_CLASSES
    return tuple(defs)


_SHAPES = _make_shapes()

# small distractor shapes (clutter): a dot, a thin bar and a small square speck
_BAR = _halfplanes(np.array([[-1, -0.12], [1, -0.12], [1, 0.12], [-1, 0.12]]))
_SPECK = _halfplanes(_regular(4, -45.0))


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


def _hsv(h, s, v):
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def _luma(rgb):
    return float(rgb @ _LUMA)


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
    c1 = _hsv(p[0], p[1], 0.1 + 0.85 * p[2])
    if kind == "flat":
        return np.broadcast_to(c1, (size, size, 3)).copy()
    c2 = _hsv(p[3], p[4], 0.1 + 0.85 * p[5])
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
# rasterisation
# --------------------------------------------------------------------------


def _sdf(shape, radius, c, s, X, Y):
    """Signed distance (pixels, approx.) of the rotated shape at pixel offsets (X, Y)."""
    if shape.kind == "disc":
        return np.sqrt(X * X + Y * Y) - radius
    if shape.kind == "ring":
        r = np.sqrt(X * X + Y * Y)
        return np.maximum(r - radius, RING_INNER * radius - r)
    return _sdf_parts(shape.parts, radius, c, s, X, Y)


def _sdf_parts(parts, radius, c, s, X, Y):
    sd = None
    for hp in parts:
        acc = None
        for nx, ny, d in hp:
            a = c * nx + s * ny  # rotated normal, screen rotation matrix [[c, s], [-s, c]]
            b = -s * nx + c * ny
            term = (X * np.float32(a) - np.float32(d * radius)) + Y * np.float32(b)
            if acc is None:
                acc = term
            else:
                np.maximum(acc, term, out=acc)
        if sd is None:
            sd = acc
        else:
            np.minimum(sd, acc, out=sd)
    return sd


def _coverage_from_sdf(sd):
    cov = np.subtract(np.float32(0.5), sd, out=sd)
    np.maximum(cov, 0.0, out=cov)
    np.minimum(cov, 1.0, out=cov)
    return cov


def _rotate(points, c, s):
    pts = np.asarray(points, dtype=np.float64)
    return np.stack([c * pts[..., 0] + s * pts[..., 1], -s * pts[..., 0] + c * pts[..., 1]], -1)


def _window(lo, hi, frac):
    """First pixel offset and length of the local window covering [lo, hi] (+AA)."""
    j0 = math.floor(lo + frac) - 2
    j1 = math.ceil(hi + frac) + 2
    return j0, j1 - j0


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
        col = _hsv(q[4], q[5], 0.1 + 0.9 * q[6])
        d_view, a_view = _paste(img, cov, iy + i0, ix + j0)
        if d_view is not None:
            a = a_view[..., None]
            d_view += a * (col - d_view)


def _pick_colour(hue, sat, mag, polarity, bg_luma):
    """Object HSV colour whose luminance differs from ``bg_luma`` by ~``mag``."""
    pure = _luma(_hsv(hue, 1.0, 1.0))
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


# --------------------------------------------------------------------------
# the renderer
# --------------------------------------------------------------------------


def _check_args(seed, index, size):
    if int(seed) != seed or int(index) != index or seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative integers, got {seed!r}, {index!r}")
    if int(size) != size or size < 24:
        raise ValueError(f"size must be an integer >= 24, got {size!r}")
    return int(seed), int(index), int(size)


def _render(seed, index, size, full=True, out=None):
    """Render one item.  ``full=False`` skips the ground truth (fast path)."""
    seed, index, size = _check_args(seed, index, size)
    rng = np.random.default_rng([seed, index])
    u = rng.random(_N_UNIFORMS).tolist()
    label = index % len(SHAPE_CLASSES)
    shape = _SHAPES[label]

    # ---- pose ---------------------------------------------------------
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

    truncated_flag = u[_S_TRUNC] < P_TRUNCATED
    margin = 3.0 if truncated_flag else 2.0
    fx, fy = u[_S_POS + 2], u[_S_POS + 3]
    cx = margin - xlo + u[_S_POS] * (size - 2 * margin - (xhi - xlo))
    cy = margin - ylo + u[_S_POS + 1] * (size - 2 * margin - (yhi - ylo))
    if truncated_flag:
        # sample the shape at the drawn sub-pixel phase first ...
        cx, cy = math.floor(cx) + fx, math.floor(cy) + fy
    else:
        fx, fy = cx - math.floor(cx), cy - math.floor(cy)

    def raster(fx, fy):
        j0, wl = _window(xlo, xhi, fx)
        i0, hl = _window(ylo, yhi, fy)
        X = (np.arange(wl, dtype=np.float32) + np.float32(j0 + 0.5 - fx))[None, :]
        Y = (np.arange(hl, dtype=np.float32) + np.float32(i0 + 0.5 - fy))[:, None]
        cov = _coverage_from_sdf(_sdf(shape, radius, c, s, X, Y))
        return j0, wl, i0, hl, X, Y, cov

    j0, wl, i0, hl, X, Y, cov = raster(fx, fy)
    total = float(cov.sum())

    if truncated_flag:
        # ... then solve for the position along one axis that cuts off the target
        # fraction: outside(n) for n whole columns (rows) cut off, interpolated
        side = min(int(u[_S_TRUNC + 1] * 4), 3)  # left, right, top, bottom
        target = TRUNC_RANGE[0] + u[_S_TRUNC + 2] * (TRUNC_RANGE[1] - TRUNC_RANGE[0])
        horizontal = side < 2
        prof = cov.sum(axis=0 if horizontal else 1) / total
        if side in (1, 3):
            prof = prof[::-1]
        outside = np.concatenate([[0.0], np.cumsum(prof)])
        n = int(np.clip(np.searchsorted(outside, target) - 1, 0, len(outside) - 2))
        step = outside[n + 1] - outside[n]
        nn = n + ((target - outside[n]) / step if step > 0 else 0.0)
        w0, length, f = (j0, wl, fx) if horizontal else (i0, hl, fy)
        pos = (-w0 - nn + f) if side in (0, 2) else (size - w0 - length + nn + f)
        if horizontal:
            cx = pos
        else:
            cy = pos
        fx, fy = cx - math.floor(cx), cy - math.floor(cy)
        j0, wl, i0, hl, X, Y, cov = raster(fx, fy)
        total = float(cov.sum())
    ix, iy = math.floor(cx), math.floor(cy)
    ox, oy = ix + j0, iy + i0  # image position of the local window's corner

    # in-image part of the object's coverage
    wy0, wx0 = max(0, -oy), max(0, -ox)
    wy1, wx1 = min(hl, size - oy), min(wl, size - ox)
    cov_in = cov[wy0:wy1, wx0:wx1]
    inside = float(cov_in.sum())
    truncated = max(0.0, 1.0 - inside / total)
    obj_box = (ox + wx0, oy + wy0, ox + wx1, oy + wy1)  # image box of the window part

    # ---- background, clutter -------------------------------------------
    bg_kind = BACKGROUNDS[min(int(u[_S_BG] * len(BACKGROUNDS)), len(BACKGROUNDS) - 1)]
    img = _background(bg_kind, u, size, rng)
    if not img.flags.writeable or img.dtype != np.float32:
        img = img.astype(np.float32)
    region = img[obj_box[1]:obj_box[3], obj_box[0]:obj_box[2]]
    # background luminance under the object's footprint (coverage-weighted)
    wts = cov_in * np.float32(1.0 / max(inside, 1e-6))
    bg_lum = region @ _LUMA
    bg_luma = float(np.vdot(wts, bg_lum))
    bg_spread = math.sqrt(max(float(np.vdot(wts, bg_lum * bg_lum)) - bg_luma**2, 0.0))
    bg_mean_rgb = region.reshape(-1, 3).mean(axis=0)

    nc = u[_S_NCLUT]
    n_clutter = 0 if nc < 0.4 else min(1 + int((nc - 0.4) / 0.15), 4)
    if n_clutter:
        _draw_clutter(img, u, n_clutter, size, obj_box)

    # ---- object ----------------------------------------------------------
    hue, sat, value = _pick_colour(u[_S_COL], 0.15 + 0.85 * u[_S_COL + 1],
                                   min(0.3 + 0.3 * u[_S_COL + 2] + bg_spread, 0.7),
                                   u[_S_COL + 3], bg_luma)
    colour = _hsv(hue, sat, value)
    d_view = img[oy + wy0:oy + wy1, ox + wx0:ox + wx1]
    d_view += cov_in[..., None] * (colour - d_view)

    # ---- occluder --------------------------------------------------------
    occluded = 0.0
    occ_full = None
    if u[_S_OCC] < P_OCCLUDED:
        o_max = min(OCC_RANGE[1], MAX_HIDDEN - truncated)
        if scale < SMALL_SCALE:
            o_max = min(o_max, SMALL_MAX_OCCLUDED)
        o_target = OCC_RANGE[0] + u[_S_OCC + 1] * max(o_max - OCC_RANGE[0], 0.0)
        phi = math.pi * u[_S_OCC + 2]
        cp, sp = math.cos(phi), math.sin(phi)
        if rot_outline is not None:
            half = float(np.abs(rot_outline @ np.array([cp, sp])).max()) * radius
        else:
            half = radius
        c_rel = (u[_S_OCC + 3] - 0.5) * half
        Xin = X[:, wx0:wx1]
        Yin = Y[wy0:wy1]
        dist = np.abs(Xin * np.float32(cp) + Yin * np.float32(sp) - np.float32(c_rel))
        nz = cov_in > 0
        dsel, wsel = dist[nz], cov_in[nz]
        # hidden(h) = sum(cov * clip(h + 0.5 - d, 0, 1)) is monotone in the bar
        # half-width h: bisect for the target (anti-aliasing included)
        goal = o_target * total
        lo_h, hi_h = 0.0, float(dsel.max()) + 0.5
        for _ in range(14):
            mid = 0.5 * (lo_h + hi_h)
            hid = np.minimum(np.maximum(np.float32(mid + 0.5) - dsel, 0.0), 1.0) @ wsel
            if hid < goal:
                lo_h = mid
            else:
                hi_h = mid
        halfwidth = max(0.5 * (lo_h + hi_h), 0.75)
        # the bar over the whole image
        xs, ys = _grid(size)
        xr = xs - np.float32(cx)
        yr = ys - np.float32(cy)
        occ_full = np.abs(xr * np.float32(cp) + yr * np.float32(sp) - np.float32(c_rel))
        np.subtract(np.float32(halfwidth + 0.5), occ_full, out=occ_full)
        np.maximum(occ_full, 0.0, out=occ_full)
        np.minimum(occ_full, 1.0, out=occ_full)
        if u[_S_OCC + 4] < 0.5:
            occ_col = bg_mean_rgb.astype(np.float32)
        else:
            occ_col = _hsv(u[_S_OCC + 5], 0.6 * u[_S_OCC + 6], 0.1 + 0.9 * u[_S_OCC + 6])
        img += occ_full[..., None] * (occ_col - img)
        occ_win = occ_full[oy + wy0:oy + wy1, ox + wx0:ox + wx1]
        occluded = float((cov_in * occ_win).sum()) / total

    # ---- pixel noise, quantisation ----------------------------------------
    if u[_S_NOISE] < 0.5:
        sigma = 0.01 + 0.04 * u[_S_NOISE + 1]
        noise = rng.random((size, size, 3), dtype=np.float32)
        noise -= np.float32(0.5)
        noise *= np.float32(sigma * math.sqrt(12.0))
        img += noise
    if out is None:
        out = np.empty((size, size, 3), dtype=np.uint8)
    np.clip(img, 0.0, 1.0, out=img)
    lum = (img @ _LUMA) if full else None  # for the contrast measurement
    img *= np.float32(255.0)
    img += np.float32(0.5)
    np.copyto(out, img, casting="unsafe")

    if not full:
        return out, label

    # ---- ground truth ------------------------------------------------------
    full_mask = np.zeros((size, size), dtype=bool)
    full_mask[oy + wy0:oy + wy1, ox + wx0:ox + wx1] = cov_in >= 0.5
    mask = full_mask if occ_full is None else full_mask & (occ_full < 0.5)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if len(rows):
        box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    else:
        box = (0, 0, 0, 0)

    all_kp = {}
    names = list(shape.keypoints)
    pts = _rotate(np.array([shape.keypoints[k] for k in names]), c, s) * radius
    for name, (px, py) in zip(names, pts.tolist()):
        all_kp[name] = (cx + px, cy + py)
    all_kp["center"] = (cx, cy)
    keypoints = {k: (float(x), float(y)) for k, (x, y) in all_kp.items()
                 if 0.0 <= x < size and 0.0 <= y < size}

    contrast = 0.0
    if len(rows):
        bw, bh = box[2] - box[0], box[3] - box[1]
        pad = max(2, int(round(0.25 * max(bw, bh))))
        gy0, gx0 = max(box[1] - pad, 0), max(box[0] - pad, 0)
        gy1, gx1 = min(box[3] + pad, size), min(box[2] + pad, size)
        around = ~full_mask[gy0:gy1, gx0:gx1]
        # exclude the anti-aliased fringe of the object as well
        fringe = np.zeros((size, size), dtype=bool)
        fringe[oy + wy0:oy + wy1, ox + wx0:ox + wx1] = cov_in > 0
        around &= ~fringe[gy0:gy1, gx0:gx1]
        lg = lum[gy0:gy1, gx0:gx1][around]
        if lg.size == 0:
            lg = lum[~fringe]
        if lg.size:
            contrast = abs(float(lum[mask].mean()) - float(lg.mean()))

    attributes = {
        "scale": float(scale),
        "cx": float(cx),
        "cy": float(cy),
        "rotation": float(rotation),
        "hue": float(hue % 1.0),
        "saturation": float(sat),
        "value": float(value),
        "contrast": float(contrast),
        "background": bg_kind,
        "clutter": int(n_clutter),
        "occluded": float(occluded),
        "truncated": float(truncated),
    }
    extra = {"full_mask": full_mask, "all_keypoints": all_kp, "radius": radius}
    return ShapeItem(out, label, mask, box, keypoints, attributes), extra


def render(seed: int, index: int, size: int = DEFAULT_SIZE) -> ShapeItem:
    """Render item ``index`` of the split with ``seed`` at ``size`` x ``size`` pixels."""
    return _render(seed, index, size, full=True)[0]


def render_batch(seed: int, indices, size: int = DEFAULT_SIZE):
    """Images and labels only (fast path for training).

    Returns ``(images, labels)``: ``(N, size, size, 3)`` uint8 and ``(N,)`` int64,
    byte-identical to ``render(seed, i, size).image`` / ``.label``.
    """
    idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
    idx = idx.reshape(-1)
    images = np.empty((len(idx), size, size, 3), dtype=np.uint8)
    labels = np.empty(len(idx), dtype=np.int64)
    for n, i in enumerate(idx.tolist()):
        _, labels[n] = _render(seed, i, size, full=False, out=images[n])
    return images, labels


def shape_mask(seed: int, index: int, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Un-occluded object mask (coverage >= 0.5), restricted to the image."""
    return _render(seed, index, size, full=True)[1]["full_mask"]


def shape_keypoints(seed: int, index: int, size: int = DEFAULT_SIZE) -> dict[str, tuple[float, float]]:
    """All keypoints of the item, including those outside the image."""
    kp = _render(seed, index, size, full=True)[1]["all_keypoints"]
    return {k: (float(x), float(y)) for k, (x, y) in kp.items()}


class ShapesDataset:
    """Map-style view of a split: ``ds[i] -> (image uint8 HxWx3, label)``.

    ``split`` is ``"train"`` / ``"test"`` (or an explicit integer ``seed``).
    """

    def __init__(self, split: str | int = "train", length: int = 50_000,
                 size: int = DEFAULT_SIZE):
        if isinstance(split, str):
            seeds = {"train": TRAIN_SEED, "test": TEST_SEED}
            if split not in seeds:
                raise ValueError(f"split must be 'train' or 'test', got {split!r}")
            self.seed = seeds[split]
        else:
            self.seed = int(split)
        self.length = int(length)
        self.size = int(size)
        self.classes = SHAPE_CLASSES

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        if not 0 <= i < self.length:
            raise IndexError(i)
        img, label = _render(self.seed, i, self.size, full=False)
        return img, label

    def item(self, i: int) -> ShapeItem:
        return render(self.seed, i, self.size)
