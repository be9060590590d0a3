"""Synthetic warps with an exact mapping, for the warp pairs of `correspondence`.

Coordinates are continuous pixels, ``(x, y)``; pixel ``(row y, col x)`` covers
``[x, x+1) x [y, y+1)`` (see `convlens.techniques.pairs`). A warp is a map from B's
coordinates to A's (to resample B) and its inverse (to move A's keypoints into B).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F


def random_affine(rng: np.random.Generator, hw: tuple[int, int],
                  strength: float = 1.0) -> np.ndarray:
    """A ``3x3`` matrix mapping A's continuous ``(x, y, 1)`` to B's: about the image centre,
    rotation up to 20°, scale 0.82-1.22, shear up to 0.1 and translation up to 20 % of the
    size (all times `strength`). Points move by about 0.15 of the size (median): well beyond
    the 0.1 of PCK, so that staying put is not an answer."""
    h, w = hw
    a = math.radians(rng.uniform(-20, 20) * strength)
    s = math.exp(rng.uniform(-0.2, 0.2) * strength)
    sh = rng.uniform(-0.1, 0.1) * strength
    t = rng.uniform(-0.2, 0.2, 2) * strength * np.array([w, h])
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    lin = s * rot @ np.array([[1.0, sh], [0.0, 1.0]])
    c = np.array([w / 2, h / 2])
    m = np.eye(3)
    m[:2, :2] = lin
    m[:2, 2] = c - lin @ c + t
    return m


class ThinPlate:
    """A thin-plate spline ``T`` through control points ``src -> dst`` (Bookstein 1989):
    ``T(p) = A p + b + sum_i w_i U(|p - src_i|)``, ``U(r) = r^2 log r``."""

    def __init__(self, src: np.ndarray, dst: np.ndarray):
        n = len(src)
        k = self._u(np.linalg.norm(src[:, None] - src[None], axis=2))
        p = np.hstack([np.ones((n, 1)), src])
        lhs = np.zeros((n + 3, n + 3))
        lhs[:n, :n], lhs[:n, n:], lhs[n:, :n] = k, p, p.T
        rhs = np.zeros((n + 3, 2))
        rhs[:n] = dst
        self.src, self.coef = src, np.linalg.solve(lhs, rhs)

    @staticmethod
    def _u(r):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(r > 0, r * r * np.log(np.maximum(r, 1e-12)), 0.0)

    def __call__(self, pts: np.ndarray) -> np.ndarray:
        n = len(self.src)
        k = self._u(np.linalg.norm(pts[:, None] - self.src[None], axis=2))
        return k @ self.coef[:n] + self.coef[n] + pts @ self.coef[n + 1:]


def random_tps(rng: np.random.Generator, hw: tuple[int, int], strength: float = 1.0) -> ThinPlate:
    """A thin-plate spline from B to A: a 4x4 grid of control points over the image, all
    shifted by one translation of up to 20 % of the size and each moved by a normal offset of
    5 % of it (times `strength`); B's pixel at ``q`` shows A's pixel at ``T(q)``."""
    h, w = hw
    g = np.linspace(0.1, 0.9, 4)
    src = np.stack(np.meshgrid(g * w, g * h), -1).reshape(-1, 2)
    shift = rng.uniform(-0.2, 0.2, 2) * strength
    dst = src + (shift + rng.normal(0, 0.05 * strength, src.shape)) * np.array([w, h])
    return ThinPlate(src, dst)


def invert(fn: Callable[[np.ndarray], np.ndarray], p: np.ndarray, iters: int = 100,
           tol: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``fn(q) = p`` for each point by fixed-point iteration ``q <- q - (fn(q) - p)``
    (it converges where the warp's displacement changes slowly); returns ``(q, converged)``."""
    q = p.copy()
    for _ in range(iters):
        r = fn(q) - p
        q = q - r
    ok = np.linalg.norm(fn(q) - p, axis=1) < tol
    return q, ok


def warp_image(image: torch.Tensor, backward: Callable[[np.ndarray], np.ndarray]) -> torch.Tensor:
    """Image B from image A ``(C, H, W)``: B's pixel centre ``q`` samples A at ``backward(q)``
    (bilinear; outside A the border pixels repeat)."""
    h, w = image.shape[-2:]
    ys, xs = np.mgrid[0:h, 0:w]
    q = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], 1)
    src = backward(q)
    grid = np.stack([2 * src[:, 0] / w - 1, 2 * src[:, 1] / h - 1], 1).reshape(1, h, w, 2)
    grid_t = torch.as_tensor(grid, dtype=image.dtype, device=image.device)
    return F.grid_sample(image[None], grid_t, mode="bilinear", padding_mode="border",
                         align_corners=False)[0]


def textured_points(image: torch.Tensor, k: int, rng: np.random.Generator) -> np.ndarray:
    """`k` points where the image has structure: pixels whose smoothed gradient magnitude is in
    the top quarter, at least 5 % of the size from the border, with sub-pixel jitter. (On a flat
    background every descriptor is the same and no method can find the point.)"""
    g = image.detach().double().mean(0).cpu().numpy()
    h, w = g.shape
    mag = np.zeros_like(g)
    mag[1:-1, 1:-1] = np.hypot(g[1:-1, 2:] - g[1:-1, :-2], g[2:, 1:-1] - g[:-2, 1:-1])
    mag = (mag + np.roll(mag, 1, 0) + np.roll(mag, -1, 0) + np.roll(mag, 1, 1)
           + np.roll(mag, -1, 1))
    m = max(1, int(round(0.05 * max(h, w))))
    inner = np.zeros_like(mag, dtype=bool)
    inner[m:h - m, m:w - m] = True
    vals = mag[inner]
    if vals.size == 0 or vals.max() <= 0:
        return np.zeros((0, 2))
    ys, xs = np.nonzero(inner & (mag >= np.quantile(vals, 0.75)) & (mag > 0))
    pick = rng.choice(len(xs), size=min(k, len(xs)), replace=False)
    return np.stack([xs[pick] + rng.uniform(0.05, 0.95, len(pick)),
                     ys[pick] + rng.uniform(0.05, 0.95, len(pick))], 1)
