"""Data sources: `load_data(spec)` turns a data spec into a dataset of `Item`s."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ..errors import ConvlensError, unknown
from .base import (
    Batch,
    ImageDataset,
    Item,
    Loader,
    Skipped,
    SkippedImageWarning,
    collate,
)
from .files import ImageFolder, Manifest

# name -> factory(split: str | None, lens, **options) -> ImageDataset
BUILTIN_DATA: dict[str, Callable[..., ImageDataset]] = {}


def register_data(name: str):
    """Register a built-in dataset factory under ``builtin:NAME``."""
    def deco(fn):
        BUILTIN_DATA[name] = fn
        return fn
    return deco


def load_data(spec: str | os.PathLike, lens=None, max_pixels: int | None = None) -> ImageDataset:
    """A dataset from a spec.

    Specs: ``builtin:NAME[:SPLIT]`` (see `BUILTIN_DATA`), a folder of class folders, or a
    ``.csv`` / ``.parquet`` manifest with a ``path`` column. With `lens`, items are preprocessed
    for that model (size, channels, normalisation).

    Example::

        ds = load_data("photos/", lens=lens)
        ds[0].image.shape            # (C, H, W)
    """
    spec_s = os.fspath(spec)
    if spec_s.startswith("builtin:"):
        _, _, rest = spec_s.partition(":")
        name, _, split = rest.partition(":")
        if name not in BUILTIN_DATA:
            raise unknown("built-in dataset", name, BUILTIN_DATA)
        return BUILTIN_DATA[name](split or None, lens=lens)
    path = Path(spec_s)
    if not path.exists():
        raise ConvlensError(f"data not found: {spec_s} (a folder of class folders, a .csv/.parquet "
                            f"manifest, or builtin:NAME; "
                            f"built-ins: {', '.join(sorted(BUILTIN_DATA)) or 'none'})")
    if path.is_dir():
        return ImageFolder(path, lens=lens, max_pixels=max_pixels)
    if path.suffix.lower() in (".csv", ".parquet"):
        return Manifest(path, lens=lens, max_pixels=max_pixels)
    raise ConvlensError(f"cannot use {spec_s} as data: give a folder of class folders or a "
                        ".csv/.parquet manifest")


def as_dataset(data, lens=None, max_pixels: int | None = None) -> ImageDataset:
    """`data` as a dataset preprocessed for `lens`: a data spec string (or path) is loaded with
    `load_data` (and remembered as ``.spec``); a dataset gets the lens if it has none; anything
    else is an error. Every technique that reads data calls this first."""
    if isinstance(data, (str, os.PathLike)):
        ds = load_data(data, lens=lens, max_pixels=max_pixels)
        ds.spec = os.fspath(data)
        return ds
    if not isinstance(data, ImageDataset):
        raise ConvlensError(f"expected a data spec (e.g. 'builtin:fashion-mnist:test' or a "
                            f"folder) or a convlens dataset, got {type(data).__name__}")
    if data.lens is None and lens is not None:
        data.with_lens(lens)
    return data


def _register_builtins() -> None:
    from . import fashion, procedural, stamps
    register_data("fashion-mnist")(fashion._factory)
    register_data("shapes")(procedural._factory)
    register_data("shapes-planted")(procedural._planted_factory)
    register_data("stamps")(stamps._factory)


_register_builtins()

__all__ = ["load_data", "as_dataset", "register_data", "BUILTIN_DATA", "ImageDataset", "Item",
           "Batch", "Skipped", "Loader", "collate", "SkippedImageWarning", "ImageFolder",
           "Manifest"]
