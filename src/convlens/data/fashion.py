"""The real Fashion-MNIST (Xiao et al. 2017), read from the standard idx ``.gz`` files.

Where the files are looked for, in order: a directory named in the spec
(``builtin:fashion-mnist:test:/my/dir``), ``$CONVLENS_DATA`` (the folder itself or its
``fashion-mnist`` sub-folder), then Debian's ``dataset-fashion-mnist`` package
(``/usr/share/datasets/fashion-mnist``).
"""
from __future__ import annotations

import functools
import gzip
import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConvlensError
from .base import ImageDataset

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot"]
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
# Per-pixel statistics of the 60k training images, in [0, 1].
MEAN, STD = 0.2860, 0.3530


def find_root(root: str | os.PathLike | None = None) -> Path:
    """The folder holding the four idx files, or an error that says how to get them."""
    candidates = []
    if root:
        candidates.append(Path(root))
    env = os.environ.get("CONVLENS_DATA")
    if env:
        candidates += [Path(env), Path(env) / "fashion-mnist"]
    candidates.append(Path(DEBIAN_DIR))
    need = [f for pair in FILES.values() for f in pair]
    for c in candidates:
        if all((c / f).is_file() for f in need):
            return c
    raise ConvlensError(
        "Fashion-MNIST not found (looked in " + ", ".join(str(c) for c in candidates) + "). "
        "Install Debian's package (apt-get install dataset-fashion-mnist), or put the four "
        "idx .gz files (train-images-idx3-ubyte.gz, ...) in a folder and set CONVLENS_DATA "
        "to it or name it in the spec: builtin:fashion-mnist:test:/path/to/folder")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An idx file (LeCun's format) as a numpy array; checks the header against the size."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ConvlensError(f"{path} is not an unsigned-byte idx file")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ConvlensError(f"{path} is truncated: {body.size} bytes for shape {shape}")
    return body.reshape(shape)


@functools.lru_cache(maxsize=4)
def load_arrays(split: str, root: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, 28, 28) uint8, labels (N,) uint8)`` of one split."""
    if split not in FILES:
        raise ConvlensError(f"unknown Fashion-MNIST split {split!r}: use train or test")
    base = find_root(root)
    images, labels = (read_idx(base / f) for f in FILES[split])
    if len(images) != len(labels):
        raise ConvlensError(f"Fashion-MNIST {split}: {len(images)} images but {len(labels)} labels")
    return images, labels


class FashionMNIST(ImageDataset):
    """Fashion-MNIST as a convlens dataset: 28×28 grey images, 10 named classes."""

    classes = CLASSES

    def __init__(self, split: str = "test", root: str | None = None, lens=None):
        super().__init__(lens)
        self.split = split
        self.images, self.labels = load_arrays(split, None if root is None else str(root))

    def __len__(self) -> int:
        return len(self.images)

    def source(self, index: int) -> str:
        return f"fashion-mnist:{self.split}[{index}]"

    def load(self, index: int):
        img = Image.fromarray(self.images[index])
        return img, int(self.labels[index]), {"split": self.split}


def _factory(split: str | None, lens=None) -> FashionMNIST:
    split, _, root = (split or "test").partition(":")
    return FashionMNIST(split or "test", root or None, lens=lens)
