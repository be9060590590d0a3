"""The pixels ``builtin:stamps`` composes: decoded stamps, background photos and procedural
backgrounds (cached once per process), and how a stamp is scaled, jittered and pasted."""
from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from ..nuisance import LUMA, hsv

BACKGROUNDS: tuple[str, ...] = ("grass", "brick", "gravel", "coffee", "astronaut", "hubble",
                                "camera", "moon", "gradient", "noise")
_PHOTO_SOURCES = {"grass": "grass", "brick": "brick", "gravel": "gravel", "coffee": "coffee",
                  "astronaut": "astronaut", "hubble": "hubble_deep_field", "camera": "camera",
                  "moon": "moon"}


_stamp_cache: dict[tuple[str, int], Image.Image] = {}
_stamp_lock = threading.Lock()


def _stamp(root: Path, rel: str, max_side: int) -> Image.Image:
    """The stamp cropped to its opaque part, premultiplied (``RGBa``), longer side <= max_side."""
    key = (str(root / rel), max_side)
    im = _stamp_cache.get(key)
    if im is None:
        with Image.open(root / rel) as f:
            im = f.convert("RGBA")
        bbox = im.getchannel("A").point(lambda a: 255 if a >= 8 else 0).getbbox()
        if bbox:
            im = im.crop(bbox)
        im = im.convert("RGBa")
        f = max_side / max(im.size)
        if f < 1:
            im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))),
                           Image.Resampling.BOX)
        with _stamp_lock:
            _stamp_cache[key] = im
    return im


_bg_cache: dict[str, tuple[Image.Image, bool]] = {}
_bg_lock = threading.Lock()


def _source(kind: str) -> tuple[Image.Image, bool]:
    """A scikit-image bundled photo as a PIL image (RGB or L) and whether it is grey."""
    got = _bg_cache.get(kind)
    if got is None:
        import skimage.data
        arr = getattr(skimage.data, _PHOTO_SOURCES[kind])()
        img = Image.fromarray(np.ascontiguousarray(arr))
        gray = img.mode == "L"
        if max(img.size) > 640:  # hubble is 1000 px wide: crops never need more
            img = img.reduce(2)
        got = (img, gray)
        with _bg_lock:
            _bg_cache[kind] = got
    return got


def _background(kind: str, p: list[float], size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(size, size, 3)`` float32 background in [0, 1] from 8 uniforms ``p``."""
    if kind in _PHOTO_SOURCES:
        src, gray = _source(kind)
        w, h = src.size
        side = min(w, h) * (0.25 + 0.75 * p[0])
        x0, y0 = p[1] * (w - side), p[2] * (h - side)
        crop = src.resize((size, size), Image.Resampling.BILINEAR,
                          box=(x0, y0, x0 + side, y0 + side))
        a = np.asarray(crop, dtype=np.float32) * np.float32(1 / 255)
        if p[3] < 0.5:
            a = a[:, ::-1]
        gain = np.float32(0.6 + 0.6 * p[4])
        if gray:
            tint = hsv(p[5], 0.5 * p[6], 1.0)
            return np.minimum(a[..., None] * (tint * gain), 1.0)
        return np.minimum(a * gain, 1.0)
    c1 = hsv(p[0], p[1], 0.15 + 0.8 * p[2])
    c2 = hsv(p[3], p[4], 0.15 + 0.8 * p[5])
    if kind == "gradient":
        ang = 2 * math.pi * p[6]
        r = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
        t = r[None, :] * math.cos(ang) + r[:, None] * math.sin(ang)
        t = (t * np.float32(1 / math.sqrt(2)) + 0.5)[..., None]
        return c1 + t * (c2 - c1)
    if kind == "noise":
        k = 3 + int(p[6] * 6)
        g = (rng.random((k, k, 3)) * 255).astype(np.uint8)
        up = np.asarray(Image.fromarray(g).resize((size, size), Image.Resampling.BICUBIC),
                        dtype=np.float32) * np.float32(1 / 255)
        base = c1 + (c2 - c1) * up.mean(axis=2, keepdims=True)
        return np.float32(0.6) * base + np.float32(0.4) * up
    raise ValueError(kind)


def _place(root: Path, rel: str, extent_px: float, rotation: float, flip: bool,
           max_side: int, aspect: float = 1.0) -> np.ndarray:
    """The stamp scaled so that its rotated box's longer side is ``extent_px``: ``(h, w, 4)``.

    Channels: premultiplied RGB and alpha, float32 in [0, 1].
    """
    im = _stamp(root, rel, max_side)
    w0, h0 = im.size
    w0, h0 = w0 * math.sqrt(aspect), h0 / math.sqrt(aspect)
    c, s = abs(math.cos(math.radians(rotation))), abs(math.sin(math.radians(rotation)))
    f = extent_px / max(w0 * c + h0 * s, w0 * s + h0 * c)
    im = im.resize((max(1, round(w0 * f)), max(1, round(h0 * f))), Image.Resampling.BILINEAR)
    if flip:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rotation:
        im = im.rotate(rotation, Image.Resampling.BILINEAR, expand=True)
    return np.asarray(im, dtype=np.float32) * np.float32(1 / 255)


def _paste(img: np.ndarray, fg: np.ndarray, x: int, y: int) -> tuple[np.ndarray, tuple]:
    """Composite premultiplied ``fg`` over ``img`` at (x, y); returns fg's in-image alpha."""
    size = img.shape[0]
    h, w = fg.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, size), min(y + h, size)
    if x0 >= x1 or y0 >= y1:
        return np.zeros((0, 0), np.float32), (x0, y0, x0, y0)
    part = fg[y0 - y:y1 - y, x0 - x:x1 - x]
    a = part[..., 3]
    view = img[y0:y1, x0:x1]
    view *= (1 - a)[..., None]
    view += part[..., :3]
    return a, (x0, y0, x1, y1)


_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_INV = np.linalg.inv(_YIQ)


def _hue_matrix(turn: float) -> np.ndarray:
    """Rotation of the chroma plane by ``turn`` of a circle, luminance kept (YIQ)."""
    c, s = math.cos(2 * math.pi * turn), math.sin(2 * math.pi * turn)
    rot = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return (_YIQ_INV @ rot @ _YIQ).T.astype(np.float32)


def _jitter(fg: np.ndarray, b: float, s: float, c: float, hue: float = 0.0) -> np.ndarray:
    """Brightness, saturation, contrast and hue on premultiplied pixels (all linear in colour)."""
    rgb, a = fg[..., :3], fg[..., 3:]
    if hue:
        rgb = rgb @ _hue_matrix(hue)
    lum = rgb @ LUMA
    wsum = float(a.sum())
    mean = float(lum.sum()) / wsum if wsum > 0 else 0.0  # mean luminance of the object
    rgb = lum[..., None] + s * (rgb - lum[..., None])        # saturation
    rgb = c * rgb + (1 - c) * mean * a                       # contrast around the mean
    rgb = np.clip(rgb * b, 0.0, a)                           # brightness; stay premultiplied
    return np.concatenate([rgb, a], axis=-1).astype(np.float32, copy=False)
