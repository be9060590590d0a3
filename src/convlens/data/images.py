"""Opening untrusted image files safely, and converting any mode to grey or RGB."""
from __future__ import annotations

import os
import warnings
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from ..errors import BadImage, ConvlensError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                    ".ppm", ".pgm", ".pbm")

# PIL's decompression-bomb limit (about 89 megapixels) unless the caller sets another.
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


def open_image(path: str | os.PathLike, max_pixels: int | None = None) -> Image.Image:
    """Open and fully decode an image file, or raise `BadImage` saying why it cannot be used.

    Refused: unreadable paths, empty files, files that are not images, truncated or corrupt
    data, and images of more than `max_pixels` pixels (a decompression bomb guard, checked
    from the header before any pixel is decoded).
    """
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    path = os.fspath(path)
    try:
        if os.path.getsize(path) == 0:
            raise BadImage("empty file (0 bytes)")
    except OSError as e:
        raise BadImage(f"cannot read: {e.strerror or e}") from None
    # Truncated data must fail, whatever another library set globally.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            w, h = img.size
            if w * h > limit:
                raise BadImage(f"too large: {w}x{h} = {w * h} pixels > limit {limit}")
            img.load()
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage("not an image (unknown format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"too large (decompression bomb guard): {e}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise BadImage(f"truncated or corrupt: {e}") from None
    return img


def to_channels(img: Image.Image, channels: int) -> Image.Image:
    """Convert any PIL mode to 8-bit grey (``channels=1``) or RGB (``channels=3``).

    16- and 32-bit integer images are scaled from their full range to 8 bits (PIL's own
    conversion would clip them); palette and alpha images lose their alpha; CMYK goes to RGB.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        top = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    elif img.mode == "P":
        img = img.convert("RGBA")
    if channels == 1:
        return img if img.mode == "L" else img.convert("RGB").convert("L")
    if channels == 3:
        return img if img.mode == "RGB" else img.convert("RGB")
    raise BadImage(f"the model takes {channels} channels; only 1 (grey) and 3 (RGB) are supported")


def fit_geometry(width: int, height: int, out_width: int, out_height: int
                 ) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """The geometry `Lens.preprocess` gives an image of ``width x height`` for a model input of
    ``out_width x out_height``: the shorter side resized to the input (the aspect ratio kept),
    then the centre cropped. Returns ``((resized width, resized height), (left, top, right,
    bottom))``, the crop box in the resized image; an image of the input size is left as it is.
    """
    if (width, height) == (out_width, out_height):
        return (width, height), (0, 0, width, height)
    scale = max(out_width / width, out_height / height)
    size = (max(out_width, round(width * scale)), max(out_height, round(height * scale)))
    left, top = (size[0] - out_width) // 2, (size[1] - out_height) // 2
    return size, (left, top, left + out_width, top + out_height)


def preprocess_mask(mask, size: Sequence[int]) -> np.ndarray:
    """A per-pixel mask of an image, ``(H, W)`` (array or CPU tensor; nonzero: in the mask), to
    ``(h, w)`` bool through the same geometry as `Lens.preprocess` takes the image (`fit_geometry`:
    shorter side resized, centre crop), nearest neighbour, so that it stays on the pixels it
    marked. A mask of size ``(h, w)`` is returned as it is (as bool)."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ConvlensError(f"a mask must be (H, W), got shape {m.shape}")
    h, w = (int(v) for v in size[-2:])
    if m.shape == (h, w):
        return m != 0
    (rw, rh), box = fit_geometry(m.shape[1], m.shape[0], w, h)
    img = Image.fromarray((m != 0).astype(np.uint8) * 255)
    return np.asarray(img.resize((rw, rh), Image.NEAREST).crop(box)) > 127


def open_mask(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """A mask image file as ``(H, W)`` bool: nonzero pixels are in the mask (grey, 1-bit,
    16-bit, a palette's index, or any of R, G, B; alpha is ignored). A file that cannot be used
    raises `BadImage`, as `open_image`."""
    a = np.asarray(open_image(path, max_pixels))
    if a.ndim == 3:
        return (a[..., :3] if a.shape[2] >= 3 else a[..., :1]).any(axis=2)
    return a != 0


def image_facts(img) -> tuple[str, str]:
    """``("HxW", mode)`` of a PIL image or an array (mode of an array: its channels)."""
    if isinstance(img, Image.Image):
        return f"{img.height}x{img.width}", img.mode
    a = np.asarray(img)
    mode = {2: "L"}.get(a.ndim, {1: "L", 3: "RGB", 4: "RGBA"}.get(a.shape[-1], f"{a.shape[-1]}ch"))
    return f"{a.shape[0]}x{a.shape[1]}", mode


def dataset_thumbnails(data, index: Sequence[int],
                       size: int = 32) -> Callable[[np.ndarray], np.ndarray]:
    """A thumbnail source for `tsne_grid` that opens dataset items only when drawn.

    ``rows -> (len(rows), size, size[, 3])`` uint8: item ``index[row]`` of `data`
    (``data.load``), its shorter side scaled to `size` and centre-cropped; an unreadable item
    gives a grey tile.
    """
    index = np.asarray(index)

    def one(i: int, mode: str) -> np.ndarray:
        try:
            img, _, _ = data.load(int(i))
        except BadImage:
            return np.full((size, size) if mode == "L" else (size, size, 3), 128, np.uint8)
        if isinstance(img, np.ndarray):
            img = Image.fromarray(img)
        img = img.convert(mode)
        s = size / min(img.size)
        w, h = max(size, round(img.width * s)), max(size, round(img.height * s))
        img = img.resize((w, h), Image.BILINEAR)
        left, top = (w - size) // 2, (h - size) // 2
        return np.asarray(img.crop((left, top, left + size, top + size)))

    modes: list[str] = []  # grey or RGB for all, decided by the first item opened

    def fetch(rows: np.ndarray) -> np.ndarray:
        rows = np.atleast_1d(rows)
        if not modes:
            try:
                first = data.load(int(index[rows[0]]))[0]
            except BadImage:
                first = None
            grey = first is not None and (np.asarray(first).ndim == 2
                                          if isinstance(first, np.ndarray)
                                          else first.mode in ("L", "I", "I;16", "1", "F"))
            modes.append("L" if grey else "RGB")
        return np.stack([one(index[r], modes[0]) for r in rows])
    return fetch
