"""Pictures from arrays: tile grids, heat maps, overlays, boxes. numpy + PIL + matplotlib only.

Nothing here imports torch (the report uses these too); inputs are numpy arrays.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw


def to_uint8(a: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Scale `a` linearly so that [lo, hi] (default: its min and max) maps to [0, 255]."""
    a = np.asarray(a, dtype=np.float64)
    lo = float(np.nanmin(a)) if lo is None else lo
    hi = float(np.nanmax(a)) if hi is None else hi
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.clip((a - lo) / (hi - lo) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def image_hwc(x: np.ndarray) -> np.ndarray:
    """A ``(C, H, W)`` or ``(H, W)`` or ``(H, W, C)`` image in [0, 1] to uint8 ``(H, W, 3)``."""
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(1, 2, 0)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.dtype != np.uint8:
        x = np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    return x


def tile_grid(tiles: np.ndarray, cols: int | None = None, pad: int = 1, scale: int = 1,
              pad_value: int = 255) -> np.ndarray:
    """Arrange ``(N, H, W)`` or ``(N, H, W, 3)`` uint8 tiles in a grid; returns ``(H', W', 3)``."""
    tiles = np.asarray(tiles)
    if tiles.ndim == 3:
        tiles = np.repeat(tiles[..., None], 3, axis=3)
    n, h, w, _ = tiles.shape
    if scale > 1:
        tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
        h, w = h * scale, w * scale
    cols = cols or int(np.ceil(np.sqrt(max(n, 1))))
    rows = int(np.ceil(n / cols)) if n else 1
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), pad_value, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[y:y + h, x:x + w] = tiles[i]
    return out


def colormap(values: np.ndarray, cmap: str = "inferno", lo: float | None = None,
             hi: float | None = None) -> np.ndarray:
    """A 2-D array to uint8 RGB through a matplotlib colormap."""
    import matplotlib

    u = to_uint8(values, lo, hi)
    lut = (matplotlib.colormaps[cmap](np.arange(256))[:, :3] * 255).astype(np.uint8)
    return lut[u]


def resize(a: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Resize an ``(H, W)`` float map or ``(H, W, 3)`` uint8 image to ``(height, width)``."""
    h, w = size
    if a.dtype == np.uint8:
        return np.asarray(Image.fromarray(a).resize((w, h), Image.NEAREST if nearest else Image.BILINEAR))
    img = Image.fromarray(np.asarray(a, dtype=np.float32), mode="F")
    return np.asarray(img.resize((w, h), Image.NEAREST if nearest else Image.BILINEAR))


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5, cmap: str = "jet",
            lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Blend a heat map (any size, resized) over an uint8 RGB image."""
    image = image_hwc(image)
    heat = resize(np.asarray(heat, dtype=np.float32), image.shape[:2])
    colour = colormap(heat, cmap, lo, hi).astype(np.float32)
    return np.clip((1 - alpha) * image + alpha * colour + 0.5, 0, 255).astype(np.uint8)


def draw_box(image: np.ndarray, box: Sequence[float], colour=(255, 0, 0), width: int = 1) -> np.ndarray:
    """A copy of `image` with a rectangle ``(x0, y0, x1, y1)`` (end exclusive) drawn on it."""
    img = Image.fromarray(image_hwc(image).copy())
    x0, y0, x1, y1 = box
    ImageDraw.Draw(img).rectangle([x0, y0, x1 - 1, y1 - 1], outline=tuple(colour), width=width)
    return np.asarray(img)


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an uint8 ``(H, W)`` or ``(H, W, 3)`` array as PNG."""
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(path, optimize=False)
