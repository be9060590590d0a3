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


def colormap_stops(cmap: str, n: int = 11) -> list[str]:
    """`n` evenly spaced colours of a matplotlib colour map as CSS hex strings (low to high)."""
    import matplotlib

    cols = matplotlib.colormaps[cmap](np.linspace(0, 1, n))[:, :3]
    return ["#%02x%02x%02x" % tuple(int(round(v * 255)) for v in c) for c in cols]


def resize(a: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Resize an ``(H, W)`` float map or ``(H, W, 3)`` uint8 image to ``(height, width)``."""
    h, w = size
    if a.dtype == np.uint8:
        return np.asarray(Image.fromarray(a).resize((w, h),
                                                    Image.NEAREST if nearest else Image.BILINEAR))
    img = Image.fromarray(np.asarray(a, dtype=np.float32), mode="F")
    return np.asarray(img.resize((w, h), Image.NEAREST if nearest else Image.BILINEAR))


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5, cmap: str = "jet",
            lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Blend a heat map (any size, resized) over an uint8 RGB image."""
    image = image_hwc(image)
    heat = resize(np.asarray(heat, dtype=np.float32), image.shape[:2])
    colour = colormap(heat, cmap, lo, hi).astype(np.float32)
    return np.clip((1 - alpha) * image + alpha * colour + 0.5, 0, 255).astype(np.uint8)


def draw_box(image: np.ndarray, box: Sequence[float], colour=(255, 0, 0),
             width: int = 1) -> np.ndarray:
    """A copy of `image` with a rectangle ``(x0, y0, x1, y1)`` (end exclusive) drawn on it."""
    img = Image.fromarray(image_hwc(image).copy())
    x0, y0, x1, y1 = box
    ImageDraw.Draw(img).rectangle([x0, y0, x1 - 1, y1 - 1], outline=tuple(colour), width=width)
    return np.asarray(img)


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an uint8 ``(H, W)`` or ``(H, W, 3)`` array as PNG."""
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(path, optimize=False)


#: frame colours of thumbnails: no label, a right and a wrong prediction
BORDER_GREY = np.array([150, 150, 150], np.uint8)
BORDER_RIGHT = np.array([44, 160, 44], np.uint8)
BORDER_WRONG = np.array([214, 39, 40], np.uint8)


def palette(n: int) -> np.ndarray:
    """`n` distinct colours ``(n, 3)`` uint8: tab10 up to 10 classes, tab20 up to 20, else a
    hue wheel."""
    import matplotlib

    if n <= 10:
        cols = matplotlib.colormaps["tab10"](np.arange(max(n, 1)))[:, :3]
    elif n <= 20:
        cols = matplotlib.colormaps["tab20"](np.arange(n))[:, :3]
    else:
        cols = matplotlib.colormaps["hsv"](np.arange(n) / n)[:, :3]
    return (cols * 255 + 0.5).astype(np.uint8)


def rgb_tiles(tiles: np.ndarray) -> np.ndarray:
    """Grey tiles ``(n, h, w)`` as RGB ``(n, h, w, 3)``; RGB tiles as they are."""
    return np.repeat(tiles[..., None], 3, -1) if tiles.ndim == 3 else tiles


def fit_tiles(tiles: np.ndarray, size: int) -> np.ndarray:
    """Tiles ``(n, h, w, 3)`` resized so their longer side is `size` (PIL, bilinear)."""
    h, w = tiles.shape[1:3]
    if max(h, w) == size:
        return tiles
    s = size / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    return np.stack([np.asarray(Image.fromarray(t).resize((nw, nh), Image.BILINEAR))
                     for t in tiles])


def captioned(img: np.ndarray, lines: Sequence[str],
              legend: Sequence[tuple[np.ndarray, str]] = ()) -> np.ndarray:
    """`img` ``(H, W, 3)`` with a white strip below: text `lines`, then a colour legend of
    ``(colour, name)`` entries wrapped to the width (more than 40 entries: a note instead)."""
    from PIL import ImageFont

    lines = list(lines)
    items = list(legend)
    font_size = int(np.clip(img.shape[1] / 90, 11, 36))
    try:
        font = ImageFont.load_default(font_size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        font = ImageFont.load_default()
    line_h = int(font_size * 1.4)
    if len(items) > 40:  # a legend of hundreds of classes says nothing
        lines.append(f"Frame colours: {len(items)} classes on a hue wheel.")
        items = []
    width = img.shape[1]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = [w for line in lines for w in _wrap(line, measure, font, width - 12)]
    places, x, y = [], 6, 4 + len(lines) * line_h  # legend entries, wrapped to the width
    for colour, name in items:
        w = font_size + 12 + int(measure.textlength(name, font=font))
        if x > 6 and x + w > width:
            x, y = 6, y + line_h
        places.append((x, y, colour, name))
        x += w
    height = (y + line_h if items else y) + 4
    strip = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(strip)
    for i, line in enumerate(lines):
        d.text((6, 4 + i * line_h), line, fill="black", font=font)
    for x, y, colour, name in places:
        d.rectangle([x, y + 2, x + font_size, y + 2 + font_size],
                    fill=tuple(int(v) for v in colour))
        d.text((x + font_size + 4, y), name, fill="black", font=font)
    return np.concatenate([img, np.asarray(strip)], 0)


def _wrap(text: str, measure, font, width: int) -> list[str]:
    """`text` broken into lines no wider than `width` pixels (at spaces)."""
    out, line = [], ""
    for word in text.split(" "):
        trial = f"{line} {word}".strip()
        if line and measure.textlength(trial, font=font) > width:
            out.append(line)
            line = word
        else:
            line = trial
    return out + ([line] if line else [])
