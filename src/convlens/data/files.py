"""Image files on disk: a folder of class folders, or a CSV/Parquet manifest."""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from ..errors import BadImage, ConvlensError
from .base import ImageDataset
from .images import IMAGE_EXTENSIONS, open_image, open_mask

_KEYPOINT = re.compile(r"^kp_(.+)_([xy])$")
_CONCEPT_MASK = re.compile(r"^mask:([^:]+):(.+)$")
BOX_COLUMNS = ("x0", "y0", "x1", "y1")


class BadMaskWarning(UserWarning):
    """A manifest's mask file could not be used (missing, not an image, another aspect ratio
    than its image): its concept was taken as absent from that image."""


class _FileDataset(ImageDataset):
    """Shared by the folder and manifest sources: a list of paths, labels and metadata."""

    def __init__(self, paths: list[str], labels: list[int], meta: list[dict[str, Any]],
                 classes: list[str] | None, lens=None, max_pixels: int | None = None):
        super().__init__(lens)
        self.paths, self.labels, self.meta = paths, labels, meta
        self.classes = classes
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def source(self, index: int) -> str:
        return self.paths[index]

    def load(self, index: int):
        return (open_image(self.paths[index], self.max_pixels), self.labels[index],
                dict(self.meta[index]))


class ImageFolder(_FileDataset):
    """``root/<class name>/<image>``: classes are the sub-folder names, sorted.

    Files whose extension is not an image extension are ignored; files that have one but are
    not readable images are skipped at load time with a warning.
    """

    def __init__(self, root: str | os.PathLike, lens=None, max_pixels: int | None = None):
        root = Path(root)
        classes = sorted(d.name for d in root.iterdir()
                         if d.is_dir() and not d.name.startswith("."))
        if not classes:
            raise ConvlensError(f"{root} has no class sub-folders (expected root/<class>/<image>)")
        paths, labels = [], []
        for k, name in enumerate(classes):
            for dirpath, dirnames, filenames in os.walk(root / name):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for f in sorted(filenames):
                    if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS):
                        paths.append(os.path.join(dirpath, f))
                        labels.append(k)
        if not paths:
            raise ConvlensError(f"no image files under {root}")
        meta = [{"path": os.path.relpath(p, root)} for p in paths]
        super().__init__(paths, labels, meta, classes, lens, max_pixels)


class Manifest(_FileDataset):
    """A CSV or Parquet table with a ``path`` column (relative to the table's folder).

    Optional columns: ``label`` (class index, or class name: names are sorted into indices),
    a box ``x0, y0, x1, y1``, keypoints ``kp_<name>_x, kp_<name>_y``, masks (below); every
    other column is kept as an attribute in the item's ``meta``.

    Masks (docs/concepts.md, "Your own concepts"): image files, paths relative to the table's
    folder like ``path``, nonzero pixels in the mask, read only when their item is loaded.

    * ``mask``: the object's mask, ``meta["mask"]`` (``(H, W)`` bool, as the builtin data's):
      network dissection's ``object:<class>`` concept and, with a ``background`` column, the
      ``texture:<background>`` concept on the rest of the image (`backgrounds` lists them);
    * ``mask:<category>:<name>`` (``mask:part:wheel``, ``mask:material:wood``): the concept
      ``<category>:<name>``, in ``meta["concept_masks"]``; an empty cell: the concept is absent
      from that image. `concepts` lists them; dissection adds them to its vocabulary.

    A mask has its image's size, or the same aspect ratio at another scale (it is then resized
    to the image, nearest neighbour); the model's preprocessing takes it through the image's
    geometry (`preprocess_mask`). A mask file that cannot be used (missing, not an image, of
    another aspect ratio) is left out, never stopping a run: the concept counts as absent from
    that image and ``meta["mask_errors"]`` says why (dissection warns and counts them).
    """

    def __init__(self, table: str | os.PathLike, lens=None, max_pixels: int | None = None):
        table = Path(table)
        try:
            df = (pd.read_parquet(table) if table.suffix.lower() == ".parquet"
                  else pd.read_csv(table))
        except FileNotFoundError:
            raise ConvlensError(f"manifest not found: {table}") from None
        except Exception as e:  # pandas raises many kinds for malformed tables
            raise ConvlensError(f"cannot read manifest {table}: {e}") from None
        if "path" not in df.columns:
            raise ConvlensError(
                f"manifest {table} has no 'path' column (columns: {list(df.columns)})")
        base = table.parent
        paths = [str(p) if os.path.isabs(str(p)) else str(base / str(p)) for p in df["path"]]
        classes, labels = _labels(df)
        kp_names = sorted({m.group(1) for c in df.columns if (m := _KEYPOINT.match(c))})
        masks = _mask_columns(df.columns)
        attrs = [c for c in df.columns if c not in ("path", "label") and c not in BOX_COLUMNS
                 and not _KEYPOINT.match(c) and c not in masks]
        has_box = all(c in df.columns for c in BOX_COLUMNS)
        meta = []
        for row in df.to_dict("records"):
            m: dict[str, Any] = {"path": str(row["path"])}
            m.update({a: _plain(row[a]) for a in attrs})
            if has_box:
                m["box"] = tuple(float(row[c]) for c in BOX_COLUMNS)
            if kp_names:
                m["keypoints"] = {k: (float(row[f"kp_{k}_x"]), float(row[f"kp_{k}_y"]))
                                  for k in kp_names
                                  if f"kp_{k}_x" in row and not _missing(row[f"kp_{k}_x"])}
            meta.append(m)
        super().__init__(paths, labels, meta, classes, lens, max_pixels)
        #: per item, ``{"mask" or concept: mask file}`` (empty cells left out)
        self.mask_files = [{name: _path(base, row[c]) for c, name in masks.items()
                            if not _blank(row[c])} for row in df.to_dict("records")]
        #: the concepts of the ``mask:<category>:<name>`` columns, ``"<category>:<name>"``
        self.concepts = list(dict.fromkeys(n for n in masks.values() if n != "mask"))
        #: the ``background`` column's values: the texture concepts around object masks
        self.backgrounds = (sorted({str(v).strip() for v in df["background"] if not _blank(v)})
                            if "background" in df.columns else [])

    def load(self, index: int):
        img, label, meta = super().load(index)
        errors = []
        for name, path in self.mask_files[index].items():
            try:
                mask = _read_mask(path, img.size, self.max_pixels)
            except BadImage as e:
                errors.append(f"mask {path}: {e}")
                continue
            if name == "mask":
                meta["mask"] = mask
            else:
                meta.setdefault("concept_masks", {})[name] = mask
        if errors:
            meta["mask_errors"] = errors
        return img, label, meta


def _mask_columns(columns) -> dict[str, str]:
    """``{column: "mask" (the object's) or "<category>:<name>"}`` of a manifest's mask columns."""
    out = {}
    for c in columns:
        if c == "mask":
            out[c] = "mask"
        elif isinstance(c, str) and c.startswith("mask:"):
            m = _CONCEPT_MASK.match(c)
            if not m or not m.group(1).strip() or not m.group(2).strip():
                raise ConvlensError(f"manifest column {c!r}: a concept's mask column is named "
                                    "mask:<category>:<name>, e.g. mask:part:wheel")
            out[c] = f"{m.group(1).strip()}:{m.group(2).strip()}"
    return out


def _blank(v) -> bool:
    return _missing(v) or (isinstance(v, str) and not v.strip())


def _path(base: Path, p) -> str:
    p = str(p).strip()
    return p if os.path.isabs(p) else str(base / p)


def _read_mask(path: str, size: tuple[int, int], max_pixels: int | None) -> np.ndarray:
    """The mask file of an image of ``size = (W, H)`` as ``(H, W)`` bool; one of another scale
    but the same aspect ratio (to the pixel) is resized to it, nearest neighbour; `BadImage`
    if it cannot be used."""
    m = open_mask(path, max_pixels)
    w, h = size
    mh, mw = m.shape
    if (mh, mw) == (h, w):
        return m
    if abs(mh * w / mw - h) <= 1 and abs(mw * h / mh - w) <= 1:
        img = Image.fromarray(m.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)
        return np.asarray(img) > 127
    raise BadImage(f"{mw}x{mh} pixels, its image {w}x{h}: another aspect ratio "
                   "(a mask must have its image's size, or its shape at another scale)")


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _plain(v):
    """numpy scalars to Python ones, so metadata pickles and serialises simply."""
    return v.item() if hasattr(v, "item") else v


def _labels(df: pd.DataFrame) -> tuple[list[str] | None, list[int]]:
    if "label" not in df.columns:
        return None, [-1] * len(df)
    col = df["label"]
    if pd.api.types.is_numeric_dtype(col):
        if col.isna().any():
            raise ConvlensError("manifest 'label' column has empty cells")
        return None, [int(v) for v in col]
    names = sorted({str(v) for v in col if not _missing(v)})
    index = {n: k for k, n in enumerate(names)}
    return names, [index[str(v)] if not _missing(v) else -1 for v in col]
