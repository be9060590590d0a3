"""``builtin:stamps`` -- colour photographs of objects composited onto photo backgrounds.

Tux Paint's stamps (Debian's ``tuxpaint-stamps-default``, GPL-2, about 800 cut-out images with
alpha masks in category folders) are pasted onto crops of photographs and textures, with random
scale, position, flip, small rotation, aspect stretch, colour jitter, clutter and occlusion. The mask and the box
of the object are exact, and every nuisance factor is recorded, as for ``builtin:shapes``.

``builtin:stamps[:train|:test|:seen][:N][:FOLDER]``

* ``train``: composites of the *training* stamps of each class (seed 0);
* ``test``: composites of the *test* stamps, which never appear in training (seed 1), so test
  accuracy measures generalisation to unseen objects;
* ``seen``: new composites of the training stamps (seed 2): accuracy on objects seen in
  training, under new poses, backgrounds and jitter.

Item ``i`` of a split depends only on ``(split, i)`` (and the image size): `render(split, i)`
gives the same bytes in any process, in any order. Labels are balanced: ``label = i % 6``.

Where the stamps are looked for: a folder named in the spec, ``$CONVLENS_STAMPS``, then
``/usr/share/tuxpaint/stamps`` (``apt-get install tuxpaint-stamps-default``).

Classes and the photo rule
--------------------------
``CLASS_FOLDERS`` maps each class to stamp folders (sub-folders included). A stamp is kept when
it is a photograph, decided by one number: the share of its opaque pixels (alpha >= 128) taken by
its 8 most frequent exact colours, ``top8``. Drawings are filled with flat colours (``top8``
0.37 to 1.0 in these folders); photographs, even palette-reduced ones, spread over many colours
(``top8`` 0.00 to 0.29). Threshold: ``PHOTO_TOP8 = 0.33``. Also dropped: folders named
``cartoon`` or ``toys``, files named ``*_mirror`` (flipped copies of another stamp), and the
stamps in ``NOT_PHOTOS`` (paintings that pass the rule, found by looking at them).

Splits
------
Within a class, stamps are grouped (a stamp whose name is another's plus digits, like
``pig_golden2`` / ``pig_golden`` or ``cep-1`` / ``cep``, joins that stamp's group), groups are
ordered by the SHA-1 of their path, and the first groups go to the test split until it holds
``TEST_SHARE`` (30 %, at least 5) of the class's stamps. No stamp is in both splits.

Backgrounds (``BACKGROUNDS``)
-----------------------------
Crops (a quarter to all of the shorter side, random flip) of scikit-image's bundled images:
``grass``, ``brick``, ``gravel`` (CC0, CC0Textures), ``coffee`` (CC0, Rachel Michetti),
``astronaut`` (NASA, public domain), ``hubble`` (``hubble_deep_field``, NASA, public domain),
``camera`` (CC0, Lav Varshney), ``moon`` (public domain, NASA); grey ones are tinted with a random
colour. Left out because they show objects of a class or close to one: ``chelsea`` (a cat),
``coins``, ``horse``, ``rocket``, ``motorcycle``. Plus two procedural kinds: ``gradient`` (two
colours) and ``noise`` (smooth colour noise).

Attributes (``meta`` of each item, beside ``mask``, ``box``, ``split``, ``stamp``)
-------------------------------------------------------------------------------
``scale``: area of the whole object (alpha >= 0.5, inside and outside the image) / image area.
``cx``, ``cy``: centroid of that whole object, pixels (pixel ``x`` covers ``[x, x+1)``).
``rotation``: degrees counter-clockwise, -30..30. ``flipped``: 0/1 (mirrored left-right).
``aspect``: width / height stretch of the object, 0.75..1.33.
``brightness``, ``saturation``, ``contrast``: jitter factors applied to the object (saturation
0: the object is shown in grey, 15 % of items). ``hue``: hue shift, turns, -0.05..0.05.
``background``: one of `BACKGROUNDS`. ``clutter``: number of other stamps (0-3, a quarter to a
half the object's size, from the same split) drawn *under* the object. ``occluded``: fraction of
the whole object hidden by a bar in front of it (0 for ~75 % of items, else 0.1-0.4).
``truncated``: fraction of the whole object outside the image (0 for ~85 %, else 0.05-0.35).
``mask``: visible object pixels (alpha >= 0.5, in the image, not under the bar's >= 0.5 part);
``box = (x0, y0, x1, y1)``: its tight box, inclusive-exclusive.

Rendering is numpy and Pillow (no torch); decoded stamps are cached once per process.
"""
from __future__ import annotations

import colorsys
import hashlib
import math
import os
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConvlensError
from .base import ImageDataset

__all__ = ["CLASSES", "CLASS_FOLDERS", "BACKGROUNDS", "SPLITS", "DEFAULT_SIZE", "StampItem",
           "Catalogue", "catalogue", "find_root", "render", "render_batch", "Stamps"]

DEBIAN_DIR = "/usr/share/tuxpaint/stamps"
INSTALL_HINT = "apt-get install tuxpaint-stamps-default"

CLASS_FOLDERS: dict[str, tuple[str, ...]] = {
    "bird": ("animals/birds",),
    "coin": ("symbols/money",),
    "flower": ("plants/flowers",),
    "fruit-veg": ("food/fruit", "food/vegetables", "food/spices", "plants/mushrooms"),
    "mammal": ("animals/mammals", "animals/marsupials"),
    "vehicle": ("vehicles", "military/vehicles"),
}
CLASSES: tuple[str, ...] = tuple(CLASS_FOLDERS)
DROP_FOLDERS = ("cartoon", "toys")
NOT_PHOTOS = ("animals/mammals/aquatic/whale.png",)  # a painting that passes the top8 rule
PHOTO_TOP8 = 0.33
TEST_SHARE = 0.30
MIN_TEST = 5

SPLITS = {"train": 0, "test": 1, "seen": 2}     # split -> seed
STAMP_SPLIT = {"train": "train", "test": "test", "seen": "train"}  # split -> whose stamps

BACKGROUNDS: tuple[str, ...] = ("grass", "brick", "gravel", "coffee", "astronaut", "hubble",
                                "camera", "moon", "gradient", "noise")
_PHOTO_SOURCES = {"grass": "grass", "brick": "brick", "gravel": "gravel", "coffee": "coffee",
                  "astronaut": "astronaut", "hubble": "hubble_deep_field", "camera": "camera",
                  "moon": "moon"}

DEFAULT_SIZE = 96
EXTENT = (0.40, 0.90)        # the object's longer side (after rotation) / image side
MAX_ROTATION = 30.0
ASPECT = (0.75, 1.33)         # width / height stretch of the object, log-uniform
P_GRAY = 0.15                 # chance that the object is shown in grey
HUE = 0.05                    # object hue shift, fraction of the colour circle, +-
JITTER = {"brightness": (0.7, 1.3), "saturation": (0.6, 1.4), "contrast": (0.75, 1.25)}
P_CLUTTER = 0.4
CLUTTER_EXTENT = (0.25, 0.5)  # of the object's extent
P_TRUNCATED = 0.15
TRUNC_RANGE = (0.05, 0.35)
P_OCCLUDED = 0.25
OCC_RANGE = (0.10, 0.40)
MAX_HIDDEN = 0.55
P_NOISE = 0.3

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


# --------------------------------------------------------------------------------------------
# finding the stamps and choosing them
# --------------------------------------------------------------------------------------------
def find_root(root: str | os.PathLike | None = None) -> Path:
    """The Tux Paint stamps folder, or a one-line error that says how to install it."""
    candidates = [Path(root)] if root else []
    env = os.environ.get("CONVLENS_STAMPS")
    if env:
        candidates.append(Path(env))
    candidates.append(Path(DEBIAN_DIR))
    for c in candidates:
        if (c / "animals").is_dir():
            return c
    raise ConvlensError("Tux Paint stamps not found (looked in "
                        + ", ".join(str(c) for c in candidates)
                        + f"): {INSTALL_HINT}, or set CONVLENS_STAMPS to its stamps folder")


def top8_share(rgba: np.ndarray) -> float:
    """Share of the opaque pixels (alpha >= 128) taken by their 8 most frequent colours."""
    opaque = rgba[..., 3] >= 128
    rgb = rgba[..., :3][opaque].astype(np.int64)
    if len(rgb) == 0:
        return 1.0
    codes = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    counts = np.bincount(np.unique(codes, return_inverse=True)[1].ravel())
    return float(np.sort(counts)[::-1][:8].sum() / counts.sum())


def _group_key(rel: str, names: set[str]) -> str:
    """``pig_golden2`` -> ``pig_golden`` where that stamp exists in the same class."""
    folder, _, name = rel.rpartition("/")
    stem = name[:-4].lower()
    base = re.sub(r"[-_]?\d+$", "", stem)
    return f"{folder}/{base}" if base != stem and base in names else f"{folder}/{stem}"


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big")


@dataclass
class Catalogue:
    """The stamps of each class and split, and the photo-rule number of every candidate."""

    root: Path
    stamps: dict[str, list[list[str]]]                    # split -> [class] -> relative paths
    top8: dict[str, float] = field(default_factory=dict)  # every candidate PNG -> top8
    dropped: dict[str, str] = field(default_factory=dict)  # relative path -> why

    def pool(self, split: str) -> list[str]:
        """Every stamp of a split (train or test), classes in order."""
        key = "_pool_" + split
        if key not in self.__dict__:
            self.__dict__[key] = [r for cls in self.stamps[split] for r in cls]
        return self.__dict__[key]

    def count(self, split: str) -> dict[str, int]:
        return {c: len(s) for c, s in zip(CLASSES, self.stamps[STAMP_SPLIT[split]])}


_catalogue_lock = threading.Lock()


@lru_cache(maxsize=4)
def _catalogue(root: str) -> Catalogue:
    base = Path(root)
    per_class: list[list[str]] = []
    top8: dict[str, float] = {}
    dropped: dict[str, str] = {}
    for folders in CLASS_FOLDERS.values():
        kept = []
        for folder in folders:
            for p in sorted((base / folder).rglob("*.png")):
                rel = p.relative_to(base).as_posix()
                parts = rel.split("/")
                if any(d in parts[:-1] for d in DROP_FOLDERS):
                    dropped[rel] = "folder"
                    continue
                if parts[-1][:-4].lower().endswith("_mirror"):
                    dropped[rel] = "mirror"
                    continue
                with Image.open(p) as im:
                    rgba = np.asarray(im.convert("RGBA"))
                top8[rel] = share = top8_share(rgba)
                if share >= PHOTO_TOP8:
                    dropped[rel] = f"drawing (top8 {share:.2f})"
                elif rel in NOT_PHOTOS:
                    dropped[rel] = "painting (by eye)"
                elif (rgba[..., 3] >= 128).sum() < 64:
                    dropped[rel] = "too small"
                else:
                    kept.append(rel)
        per_class.append(sorted(kept))
    train: list[list[str]] = []
    test: list[list[str]] = []
    for kept in per_class:
        names = {r.rpartition("/")[2][:-4].lower() for r in kept}
        groups: dict[str, list[str]] = {}
        for r in kept:
            groups.setdefault(_group_key(r, names), []).append(r)
        want = max(MIN_TEST, round(TEST_SHARE * len(kept)))
        tr, te = [], []
        for key in sorted(groups, key=lambda k: (_hash(k), k)):
            (te if len(te) < want else tr).extend(groups[key])
        train.append(sorted(tr))
        test.append(sorted(te))
    return Catalogue(base, {"train": train, "test": test}, top8, dropped)


def catalogue(root: str | os.PathLike | None = None) -> Catalogue:
    """The classes' stamps per split (built once per process and folder)."""
    path = find_root(root).resolve()
    with _catalogue_lock:
        return _catalogue(str(path))


# --------------------------------------------------------------------------------------------
# cached pixels: stamps and background sources
# --------------------------------------------------------------------------------------------
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


def _hsv(h, s, v) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


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
            tint = _hsv(p[5], 0.5 * p[6], 1.0)
            return np.minimum(a[..., None] * (tint * gain), 1.0)
        return np.minimum(a * gain, 1.0)
    c1 = _hsv(p[0], p[1], 0.15 + 0.8 * p[2])
    c2 = _hsv(p[3], p[4], 0.15 + 0.8 * p[5])
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


# --------------------------------------------------------------------------------------------
# the renderer
# --------------------------------------------------------------------------------------------
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
    lum = rgb @ _LUMA
    wsum = float(a.sum())
    mean = float(lum.sum()) / wsum if wsum > 0 else 0.0  # mean luminance of the object
    rgb = lum[..., None] + s * (rgb - lum[..., None])        # saturation
    rgb = c * rgb + (1 - c) * mean * a                       # contrast around the mean
    rgb = np.clip(rgb * b, 0.0, a)                           # brightness; stay premultiplied
    return np.concatenate([rgb, a], axis=-1).astype(np.float32, copy=False)


def _check(split: str, index: int, size: int) -> None:
    if split not in SPLITS:
        raise ConvlensError(f"unknown stamps split {split!r}: use train, test or seen")
    if int(index) != index or index < 0:
        raise ValueError(f"index must be a non-negative integer, got {index!r}")
    if int(size) != size or size < 32:
        raise ValueError(f"size must be an integer >= 32, got {size!r}")


def _render(split: str, index: int, size: int, root, full: bool, out=None, draw_object=True):
    """One item; ``draw_object=False`` leaves the object out (tests: what it changed)."""
    _check(split, index, size)
    cat = catalogue(root)
    stamps = cat.stamps[STAMP_SPLIT[split]]
    rng = np.random.default_rng([SPLITS[split], int(index)])
    u = rng.random(_N_U).tolist()
    label = index % len(CLASSES)
    own = stamps[label]
    rel = own[min(int(u[_U_STAMP] * len(own)), len(own) - 1)]
    max_side = size  # the object's longer side is at most 0.9 size: no need for more pixels
    bg_kind = BACKGROUNDS[min(int(u[_U_BG] * len(BACKGROUNDS)), len(BACKGROUNDS) - 1)]
    img = np.array(_background(bg_kind, u[_U_BG + 1:_U_BG + 9], size, rng), dtype=np.float32)

    # ---- the object, placed (not drawn yet) -----------------------------------------------
    extent = size * (EXTENT[0] + (EXTENT[1] - EXTENT[0]) * u[_U_EXT])
    rotation = MAX_ROTATION * (2 * u[_U_ROT] - 1)
    flip = u[_U_FLIP] < 0.5
    aspect = math.exp(math.log(ASPECT[0]) + u[_U_ASPECT] * math.log(ASPECT[1] / ASPECT[0]))
    fg = _place(cat.root, rel, extent, rotation, flip, max_side, aspect)
    h, w = fg.shape[:2]
    solid = fg[..., 3] >= 0.5
    total = int(solid.sum())
    if u[_U_TRUNC] < P_TRUNCATED and total:
        # cut off a target share on one side: whole columns (rows) of the alpha >= 0.5 mask
        side = min(int(u[_U_TRUNC + 1] * 4), 3)        # left, right, top, bottom
        target = TRUNC_RANGE[0] + u[_U_TRUNC + 2] * (TRUNC_RANGE[1] - TRUNC_RANGE[0])
        prof = solid.sum(axis=0 if side < 2 else 1)
        if side in (1, 3):
            prof = prof[::-1]
        n = int(np.searchsorted(np.cumsum(prof), target * total))
        if side == 0:
            x, y = -n, round(u[_U_Y] * (size - h))
        elif side == 1:
            x, y = size - w + n, round(u[_U_Y] * (size - h))
        elif side == 2:
            x, y = round(u[_U_X] * (size - w)), -n
        else:
            x, y = round(u[_U_X] * (size - w)), size - h + n
    else:
        x, y = round(u[_U_X] * (size - w)), round(u[_U_Y] * (size - h))

    # ---- clutter: other stamps of the split, under the object ------------------------------
    nc = u[_U_NCLUT]
    n_clutter = 0 if nc >= P_CLUTTER else 1 + min(int(nc / P_CLUTTER * 3), 2)
    pool = cat.pool(STAMP_SPLIT[split])
    for k in range(n_clutter):
        q = u[_U_CLUT + 6 * k:_U_CLUT + 6 * k + 6]
        j = min(int(q[0] * len(pool)), len(pool) - 1)
        other = pool[j] if pool[j] != rel else pool[(j + 1) % len(pool)]
        ext = extent * (CLUTTER_EXTENT[0] + (CLUTTER_EXTENT[1] - CLUTTER_EXTENT[0]) * q[1])
        cf = _place(cat.root, other, ext, MAX_ROTATION * (2 * q[5] - 1), q[4] < 0.5, max_side)
        ch, cw = cf.shape[:2]
        _paste(img, cf, round(q[2] * (size - cw)), round(q[3] * (size - ch)))

    # ---- the object --------------------------------------------------------------------------
    jit = [lo + (hi - lo) * u[_U_JIT + k] for k, (lo, hi) in enumerate(JITTER.values())]
    if u[_U_GRAY] < P_GRAY:
        jit[1] = 0.0
    hue = HUE * (2 * u[_U_HUE] - 1)
    fg = _jitter(fg, *jit, hue=hue)
    a_in, (bx0, by0, bx1, by1) = _paste(img if draw_object else img.copy(), fg, x, y)

    # ---- occluder: a bar in front, hiding a target share of the whole object -----------------
    full_mask = np.zeros((size, size), dtype=bool)
    full_mask[by0:by1, bx0:bx1] = a_in >= 0.5
    inside = int(full_mask.sum())
    truncated = 1.0 - inside / total if total else 0.0
    occluded, occ = 0.0, None
    if u[_U_OCC] < P_OCCLUDED and inside:
        o_max = min(OCC_RANGE[1], MAX_HIDDEN - truncated, 0.9 * inside / total)
        goal = (OCC_RANGE[0] + u[_U_OCC + 1] * max(o_max - OCC_RANGE[0], 0.0)) * total
        ys, xs = np.nonzero(full_mask)
        mx, my = xs.mean() + 0.5, ys.mean() + 0.5
        phi = math.pi * u[_U_OCC + 2]
        cp, sp = math.cos(phi), math.sin(phi)
        proj = (xs + 0.5 - mx) * cp + (ys + 0.5 - my) * sp
        half = float(np.abs(proj).max())
        c_rel = (u[_U_OCC + 3] - 0.5) * half
        d = np.abs(proj - c_rel).astype(np.float32)
        lo_h, hi_h = 0.0, float(d.max()) + 1.0
        for _ in range(16):  # hidden(h) grows with the half-width h: bisect for the goal
            mid = 0.5 * (lo_h + hi_h)
            if (np.clip(mid + 0.5 - d, 0.0, 1.0) >= 0.5).sum() < goal:
                lo_h = mid
            else:
                hi_h = mid
        hw = max(hi_h, 0.75)
        r = np.arange(size, dtype=np.float32) + 0.5
        dist = np.abs((r[None, :] - mx) * cp + (r[:, None] - my) * sp - c_rel)
        occ = np.clip(np.float32(hw + 0.5) - dist, 0.0, 1.0)
        if u[_U_OCC + 4] < 0.5:
            kind = BACKGROUNDS[min(int(u[_U_OCC + 5] * 8), 7)]
            paint = _background(kind, u[_U_OCC + 5:_U_OCC + 13], size, rng)
        else:
            paint = _hsv(u[_U_OCC + 5], 0.7 * u[_U_OCC + 6], 0.1 + 0.85 * u[_U_OCC + 7])
        img += occ[..., None] * (paint - img)
        occluded = float((full_mask & (occ >= 0.5)).sum()) / total

    # ---- pixel noise, quantisation -------------------------------------------------------------
    if u[_U_NOISE] < P_NOISE:
        sigma = 0.01 + 0.03 * u[_U_NOISE + 1]
        img += rng.standard_normal((size, size, 3), dtype=np.float32) * np.float32(sigma)
    if out is None:
        out = np.empty((size, size, 3), dtype=np.uint8)
    np.clip(img, 0.0, 1.0, out=img)
    img *= np.float32(255.0)
    img += np.float32(0.5)
    np.copyto(out, img, casting="unsafe")
    if not full:
        return out, label

    # ---- ground truth ----------------------------------------------------------------------------
    mask = full_mask if occ is None else full_mask & (occ < 0.5)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    box = ((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
           if len(rows) else (0, 0, 0, 0))
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
    return StampItem(out, label, mask, box, rel, attributes)


def render(split: str, index: int, size: int = DEFAULT_SIZE,
           root: str | os.PathLike | None = None) -> StampItem:
    """Item ``index`` of ``split`` (train, test or seen) at ``size`` x ``size``, with ground truth.

    Example::

        item = render("test", 0)
        item.image.shape, item.name, item.box     # (96, 96, 3), 'bird', (x0, y0, x1, y1)
    """
    return _render(split, index, size, root, full=True)


def render_batch(split: str, indices, size: int = DEFAULT_SIZE,
                 root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels only (the training fast path): ``(N, size, size, 3)`` uint8, ``(N,)``.

    Byte-identical to ``render(split, i, size).image`` / ``.label``.
    """
    idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices).reshape(-1)
    images = np.empty((len(idx), size, size, 3), dtype=np.uint8)
    labels = np.empty(len(idx), dtype=np.int64)
    for n, i in enumerate(idx.tolist()):
        _, labels[n] = _render(split, i, size, root, full=False, out=images[n])
    return images, labels


# --------------------------------------------------------------------------------------------
# the dataset
# --------------------------------------------------------------------------------------------
DEFAULT_LENGTH = {"train": 100_000, "test": 10_000, "seen": 10_000}


class Stamps(ImageDataset):
    """``builtin:stamps``: photographs of objects on photo backgrounds, with exact ground truth.

    Example::

        ds = load_data("builtin:stamps:test:500")
        item = ds[0]; item.meta["box"], item.meta["mask"].shape, item.meta["stamp"]
    """

    classes = list(CLASSES)

    def __init__(self, split: str = "test", length: int | None = None,
                 size: int = DEFAULT_SIZE, root: str | os.PathLike | None = None, lens=None):
        super().__init__(lens)
        if split not in SPLITS:
            raise ConvlensError(f"unknown stamps split {split!r}: use train, test or seen")
        self.root = find_root(root)
        self.catalogue = catalogue(self.root)
        self.split, self.size = split, int(size)
        self.length = int(length if length is not None else DEFAULT_LENGTH[split])

    def __len__(self) -> int:
        return self.length

    def source(self, index: int) -> str:
        return f"stamps:{self.split}[{index}]"

    def load(self, index: int):
        item = render(self.split, index, self.size, self.root)
        meta = dict(item.attributes)
        meta.update(split=self.split, stamp=item.stamp, box=item.box, mask=item.mask)
        return item.image, item.label, meta

    def arrays(self, start: int = 0, stop: int | None = None):
        """``(images (N, H, W, 3) uint8, labels (N,))`` of items start..stop, the fast path."""
        stop = self.length if stop is None else stop
        return render_batch(self.split, range(start, stop), self.size, self.root)


def _factory(split: str | None, lens=None) -> Stamps:
    """``builtin:stamps[:SPLIT][:N][:FOLDER]``."""
    parts = (split or "test").split(":")
    name, length, root = parts[0] or "test", None, None
    rest = parts[1:]
    if rest and rest[0].isdigit():
        length = int(rest.pop(0))
    elif rest and rest[0] and not rest[0].startswith(("/", ".", "~")) and len(rest) == 1:
        raise ConvlensError(f"builtin:stamps:{split}: the item count must be an integer")
    if rest:
        root = os.path.expanduser(":".join(rest))
    size = lens.input_size[-1] if lens is not None else DEFAULT_SIZE
    return Stamps(name, length, size=size, root=root, lens=lens)
