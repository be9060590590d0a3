"""``builtin:shapes`` -- a procedural RGB shape dataset with exact ground truth.

Every item is generated on demand from ``(seed, index)`` alone (plus the image
``size``): ``render(seed, index)`` gives the same bytes in any process, in any
call order.  (Across machines, float32 products that run through BLAS may round
their last bit differently and move about 1 pixel in 1,000 by one level, and
measured attributes such as ``contrast`` in their 6th digit; see
``tests/test_digests.py``.)  Splits differ only by seed: train items are
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
bundled photos for the ``texture`` backgrounds.  No torch.  Modules: `geometry`
(the classes' outlines and their rasterisation), `scene` (the item's uniforms,
backgrounds, clutter, the object's colour), `rendering` (the renderer in named
steps); the truncation and occlusion rules, colours and quantisation shared with
``builtin:stamps`` are `convlens.data.nuisance`.
"""

from __future__ import annotations

import numpy as np

# the rates, ranges and proportions above, re-exported from where they are used
from ..nuisance import MAX_HIDDEN as MAX_HIDDEN
from ..nuisance import OCC_RANGE as OCC_RANGE
from ..nuisance import P_OCCLUDED as P_OCCLUDED
from ..nuisance import P_TRUNCATED as P_TRUNCATED
from ..nuisance import TRUNC_RANGE as TRUNC_RANGE
from .geometry import ARROW_HEAD_BASE as ARROW_HEAD_BASE
from .geometry import ARROW_HEAD_HALF_WIDTH as ARROW_HEAD_HALF_WIDTH
from .geometry import ARROW_SHAFT_HALF_WIDTH as ARROW_SHAFT_HALF_WIDTH
from .geometry import CROSS_HALF_WIDTH as CROSS_HALF_WIDTH
from .geometry import RING_INNER as RING_INNER
from .geometry import SHAPE_CLASSES
from .geometry import STAR_INNER as STAR_INNER
from .rendering import FIT_FRACTION as FIT_FRACTION
from .rendering import MAX_SCALE as MAX_SCALE
from .rendering import MIN_SCALE as MIN_SCALE
from .rendering import PLANTED as PLANTED
from .rendering import SMALL_MAX_OCCLUDED as SMALL_MAX_OCCLUDED
from .rendering import SMALL_SCALE as SMALL_SCALE
from .rendering import ShapeItem, _render, _render_background
from .scene import BACKGROUNDS

__all__ = [
    "SHAPE_CLASSES",
    "BACKGROUNDS",
    "TRAIN_SEED",
    "TEST_SEED",
    "ShapeItem",
    "render",
    "render_background",
    "PLANTED",
    "render_batch",
    "shape_mask",
    "shape_keypoints",
    "ShapesDataset",
]

TRAIN_SEED = 0
TEST_SEED = 1
DEFAULT_SIZE = 64


def render(seed: int, index: int, size: int = DEFAULT_SIZE, planted: bool = False) -> ShapeItem:
    """Render item ``index`` of the split with ``seed`` at ``size`` x ``size`` pixels
    (``planted``: the planted variant, `PLANTED`)."""
    return _render(seed, index, size, full=True, planted=planted)[0]


def render_background(seed: int, index: int, kind: str, size: int = DEFAULT_SIZE) -> np.ndarray:
    """A background of kind `kind` (one of `BACKGROUNDS`) alone, drawn with item ``index``'s
    parameters: example images of a texture concept (`tcav`). ``(size, size, 3)`` uint8."""
    return _render_background(seed, index, size, kind)


def render_batch(seed: int, indices, size: int = DEFAULT_SIZE, planted: bool = False):
    """Images and labels only (fast path for training).

    Returns ``(images, labels)``: ``(N, size, size, 3)`` uint8 and ``(N,)`` int64,
    byte-identical to ``render(seed, i, size).image`` / ``.label``.
    """
    idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
    idx = idx.reshape(-1)
    images = np.empty((len(idx), size, size, 3), dtype=np.uint8)
    labels = np.empty(len(idx), dtype=np.int64)
    for n, i in enumerate(idx.tolist()):
        _, labels[n] = _render(seed, i, size, full=False, out=images[n], planted=planted)
    return images, labels


def shape_mask(seed: int, index: int, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Un-occluded object mask (coverage >= 0.5), restricted to the image."""
    return _render(seed, index, size, full=True)[1]["full_mask"]


def shape_keypoints(seed: int, index: int,
                    size: int = DEFAULT_SIZE) -> dict[str, tuple[float, float]]:
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
