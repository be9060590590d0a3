"""``builtin:stamps`` -- colour photographs of objects composited onto photo backgrounds.

Tux Paint's stamps (Debian's ``tuxpaint-stamps-default``, GPL-2, about 800 cut-out images with
alpha masks in category folders) are pasted onto crops of photographs and textures, with random
scale, position, flip, small rotation, aspect stretch, colour jitter, clutter and occlusion. The
mask and the box of the object are exact, and every nuisance factor is recorded, as for
``builtin:shapes``.

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

Rendering is numpy and Pillow (no torch); decoded stamps are cached once per process. Modules:
`photos` (the classes, the photo rule, the splits of the stamps), `pixels` (decoded stamps and
backgrounds, scaling, jitter, pasting), `compose` (the renderer in steps); the truncation and
occlusion rules, colours and quantisation shared with ``builtin:shapes`` are
`convlens.data.nuisance`.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from ...errors import ConvlensError
from ..base import ImageDataset

# the rates and ranges of the nuisance factors, re-exported from where they are used
from ..nuisance import MAX_HIDDEN as MAX_HIDDEN
from ..nuisance import OCC_RANGE as OCC_RANGE
from ..nuisance import P_OCCLUDED as P_OCCLUDED
from ..nuisance import P_TRUNCATED as P_TRUNCATED
from ..nuisance import TRUNC_RANGE as TRUNC_RANGE
from .compose import ASPECT as ASPECT
from .compose import CLUTTER_EXTENT as CLUTTER_EXTENT
from .compose import EXTENT as EXTENT
from .compose import HUE as HUE
from .compose import JITTER as JITTER
from .compose import MAX_ROTATION as MAX_ROTATION
from .compose import P_CLUTTER as P_CLUTTER
from .compose import P_GRAY as P_GRAY
from .compose import P_NOISE as P_NOISE
from .compose import StampItem, _check, _compose
from .photos import CLASS_FOLDERS, CLASSES, SPLITS, Catalogue, _catalogue
from .photos import DROP_FOLDERS as DROP_FOLDERS
from .photos import MIN_TEST as MIN_TEST
from .photos import NOT_PHOTOS as NOT_PHOTOS
from .photos import PHOTO_TOP8 as PHOTO_TOP8
from .photos import STAMP_SPLIT as STAMP_SPLIT
from .photos import TEST_SHARE as TEST_SHARE
from .photos import top8_share as top8_share
from .pixels import BACKGROUNDS

__all__ = ["CLASSES", "CLASS_FOLDERS", "BACKGROUNDS", "SPLITS", "DEFAULT_SIZE", "StampItem",
           "Catalogue", "catalogue", "find_root", "render", "render_batch", "Stamps"]

DEBIAN_DIR = "/usr/share/tuxpaint/stamps"
INSTALL_HINT = "apt-get install tuxpaint-stamps-default"
DEFAULT_SIZE = 96


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


_catalogue_lock = threading.Lock()


def catalogue(root: str | os.PathLike | None = None) -> Catalogue:
    """The classes' stamps per split (built once per process and folder)."""
    path = find_root(root).resolve()
    with _catalogue_lock:
        return _catalogue(str(path))


def _render(split: str, index: int, size: int, root, full: bool, out=None, draw_object=True):
    """One item; ``draw_object=False`` leaves the object out (tests: what it changed)."""
    _check(split, index, size)
    return _compose(catalogue(root), split, index, size, full, out, draw_object)


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
    #: what ``meta["background"]`` may name (dissection's texture concepts)
    backgrounds = list(BACKGROUNDS)

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
