"""Datasets as convlens sees them: items with a tensor, a label, an index and metadata.

A bad file never stops a long run: the item comes back as a `Skipped` marker, `collate`
drops it from the batch, and `Loader` warns once per file and counts them.
"""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..errors import BadImage, ConvlensError


class SkippedImageWarning(UserWarning):
    """An image file was skipped (empty, truncated, not an image, too large, unreadable)."""


@dataclass
class Item:
    """One example: ``image`` is ``(C, H, W)``, normalised for the lens if one was given."""

    image: torch.Tensor
    label: int
    index: int
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Skipped:
    """A placeholder for an item whose file could not be used."""

    index: int
    source: str
    reason: str


@dataclass
class Batch:
    """A collated batch: images ``(N, C, H, W)``, labels ``(N,)`` (-1: none), indices ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    meta: list[dict[str, Any]]
    skipped: list[Skipped]

    def __len__(self) -> int:
        return len(self.indices)


class ImageDataset(Dataset):
    """Base of every convlens dataset.

    Subclasses implement ``__len__``, ``source(i)`` (a path or name for messages) and
    ``load(i) -> (PIL image | uint8 array, label, meta)``. With a `lens`, items are
    preprocessed for it; without one, images become float tensors in [0, 1].
    """

    classes: list[str] | None = None

    def __init__(self, lens=None):
        self.lens = lens

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def source(self, index: int) -> str:
        return f"item {index}"

    def load(self, index: int) -> tuple[Image.Image | np.ndarray, int, dict[str, Any]]:
        raise NotImplementedError  # pragma: no cover

    def with_lens(self, lens) -> "ImageDataset":
        """Preprocess items for `lens` from now on; returns self."""
        self.lens = lens
        return self

    def __getitem__(self, index: int) -> Item | Skipped:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index = index % len(self)
        try:
            img, label, meta = self.load(index)
        except BadImage as e:
            return Skipped(index, self.source(index), str(e))
        if self.lens is not None:
            tensor = self.lens.preprocess(img)
        else:
            arr = np.asarray(img, dtype=np.float32) / 255.0
            arr = arr[:, :, None] if arr.ndim == 2 else arr
            tensor = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        return Item(tensor, int(label), index, meta)

    def raw(self, index: int) -> Item | Skipped:
        """Item `index` as stored: ``image`` is the PIL image (or uint8 array) as loaded, not a
        tensor; a file that cannot be used gives `Skipped`."""
        try:
            img, label, meta = self.load(index)
        except BadImage as e:
            return Skipped(index, self.source(index), str(e))
        return Item(img, int(label), index, meta)

    def __repr__(self) -> str:
        n = len(self.classes) if self.classes else 0
        return f"{type(self).__name__}({len(self)} items, {n} classes)"


def collate(items: list[Item | Skipped]) -> Batch:
    """Stack good items; keep the skipped ones aside so the caller can warn and count."""
    good = [it for it in items if isinstance(it, Item)]
    skipped = [it for it in items if isinstance(it, Skipped)]
    if not good:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.long),
                     torch.empty(0, dtype=torch.long), [], skipped)
    shapes = {tuple(it.image.shape) for it in good}
    if len(shapes) > 1:
        raise ConvlensError(f"images of different sizes {sorted(shapes)[:3]} in one batch: "
                            "load the data with a model (lens) so they are resized")
    return Batch(torch.stack([it.image for it in good]),
                 torch.tensor([it.label for it in good], dtype=torch.long),
                 torch.tensor([it.index for it in good], dtype=torch.long),
                 [it.meta for it in good], skipped)


class Loader:
    """Iterate a dataset in batches; warn once per skipped file and count them.

    Example::

        loader = Loader(ds, batch_size=64)
        for batch in loader:
            lens(batch.images)
        print(loader.skipped)        # list of Skipped
    """

    def __init__(self, dataset: Dataset, batch_size: int = 64, workers: int = 0,
                 shuffle: bool = False, progress: bool = False, desc: str = "images",
                 indices=None):
        self.dataset = dataset
        self.batch_size = batch_size
        self.workers = workers
        self.shuffle = shuffle
        self.progress = progress
        self.desc = desc
        self.indices = indices
        self.skipped: list[Skipped] = []
        self.seen = 0

    def __len__(self) -> int:
        n = len(self.indices) if self.indices is not None else len(self.dataset)
        return (n + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[Batch]:
        ds = self.dataset
        if self.indices is not None:
            ds = torch.utils.data.Subset(ds, list(self.indices))
        dl = DataLoader(ds, batch_size=self.batch_size, shuffle=self.shuffle,
                        num_workers=self.workers, collate_fn=collate,
                        persistent_workers=False)
        it = dl
        if self.progress:
            from tqdm.auto import tqdm
            it = tqdm(dl, desc=self.desc, unit="batch", file=sys.stderr, leave=False)
        self.skipped, self.seen = [], 0
        for batch in it:
            for s in batch.skipped:
                warnings.warn(f"skipped {s.source}: {s.reason}", SkippedImageWarning, stacklevel=2)
            self.skipped.extend(batch.skipped)
            self.seen += len(batch) + len(batch.skipped)
            if len(batch):
                yield batch
        if self.skipped:
            warnings.warn(f"{len(self.skipped)} of {self.seen} images skipped",
                          SkippedImageWarning, stacklevel=2)
