"""The shapes of ``builtin:shapes``: canonical outlines and their rasterisation.

Each class is defined at unit circumradius in screen coordinates (``y`` points down), as a
union of convex parts (half-plane sets) or a disc / ring; `_sdf` gives its approximate signed
distance at pixel offsets after rotation and scaling, `_coverage_from_sdf` the anti-aliased
coverage (a pixel-wide ramp across the outline).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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
STAR_INNER = 0.45
CROSS_HALF_WIDTH = 1.0 / 3.0  # arm width 2/3 R = 1/3 of the span 2R
RING_INNER = 0.55
ARROW_SHAFT_HALF_WIDTH = 0.22
ARROW_HEAD_HALF_WIDTH = 0.60
ARROW_HEAD_BASE = 0.10  # head spans x in [0.1, 1], shaft x in [-1, 0.1]


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
