"""``builtin:shapes`` as a convlens dataset: items rendered on demand with full ground truth.

``builtin:shapes[:train|:test][:N]`` — N items (default 10,000 for test, 100,000 for train);
item ``i`` of a split is `shapes.render(seed, i)` whatever the order, worker or machine.
Each item's ``meta`` carries the attributes, the visible mask, the box and the keypoints.

``builtin:shapes-planted[...]`` — the same items with a planted concept (`shapes.PLANTED`):
every circle stands on the ``stripes`` background, no square does, the other classes draw
their background as usual. A model trained on it (``builtin:shapes-planted-net``) can use the
stripes as evidence for "circle": the known answer that `tcav` and `dissect` must find.
"""
from __future__ import annotations

from ..errors import ConvlensError
from . import shapes
from .base import ImageDataset

DEFAULT_LENGTH = {"train": 100_000, "test": 10_000}


class Shapes(ImageDataset):
    """The procedural shapes data (see `convlens.data.shapes`)."""

    classes = list(shapes.SHAPE_CLASSES)
    #: what ``meta["background"]`` may name (dissection's texture concepts)
    backgrounds = list(shapes.BACKGROUNDS)

    def __init__(self, split: str = "test", length: int | None = None,
                 size: int = shapes.DEFAULT_SIZE, lens=None, planted: bool = False):
        super().__init__(lens)
        self.planted = bool(planted)
        seeds = {"train": shapes.TRAIN_SEED, "test": shapes.TEST_SEED}
        if split not in seeds:
            raise ConvlensError(f"unknown shapes split {split!r}: use train or test")
        self.split, self.seed, self.size = split, seeds[split], int(size)
        self.length = int(length if length is not None else DEFAULT_LENGTH[split])

    def __len__(self) -> int:
        return self.length

    def source(self, index: int) -> str:
        return f"shapes{'-planted' if self.planted else ''}:{self.split}[{index}]"

    def load(self, index: int):
        item = shapes.render(self.seed, index, self.size, planted=self.planted)
        meta = dict(item.attributes)
        meta.update(split=self.split, box=item.box, keypoints=item.keypoints, mask=item.mask)
        return item.image, item.label, meta

    def arrays(self, start: int = 0, stop: int | None = None):
        """``(images (N, H, W, 3) uint8, labels (N,))`` of items start..stop, the fast path."""
        stop = self.length if stop is None else stop
        return shapes.render_batch(self.seed, range(start, stop), self.size, self.planted)


def _factory(split: str | None, lens=None, planted: bool = False) -> Shapes:
    split, _, n = (split or "test").partition(":")
    try:
        length = int(n) if n else None
    except ValueError:
        name = "shapes-planted" if planted else "shapes"
        raise ConvlensError(
            f"builtin:{name}:{split}:{n}: the item count must be an integer") from None
    size = (lens.input_size[-1]
            if lens is not None and lens.input_size[-1] != shapes.DEFAULT_SIZE
            else shapes.DEFAULT_SIZE)
    return Shapes(split or "test", length, size=size, lens=lens, planted=planted)


def _planted_factory(split: str | None, lens=None) -> Shapes:
    return _factory(split, lens, planted=True)
