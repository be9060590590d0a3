"""Whose class names mean what: the data's names are the truth for "label", the model's for
"predicted", and `align_labels` says how the two relate.

A folder of class folders `animal/ object/ scene/` seen by a model with 8 shape classes, or by
an ImageNet model with 1,000, must not be scored as if data class 0 were model class 0. The
rules:

* the same names (case and separators ``-``, ``_``, spaces, dots ignored) in the same order:
  indices compare as they are (``"same"``);
* no names on one side (a manifest with numeric labels, a model without labels): indices
  compare as they are (``"indices"``);
* otherwise each data class is mapped to the model class of the same name where there is one
  (``"mapped"`` when all are, ``"partial"`` when some are; items of unmapped classes count as
  unlabelled for accuracy), and when none is, accuracy is unavailable (``"unrelated"``), never
  0.0000.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

_SEPARATORS = re.compile(r"[\s_\-.]+")


class LabelMismatchWarning(UserWarning):
    """The data's class names and the model's labels differ."""


def normalize_name(name: str) -> str:
    """A class name for comparison: lower case, separators removed (``Ankle_boot`` ~
    ``ankle boot``)."""
    return _SEPARATORS.sub("", str(name).lower())


@dataclass(frozen=True)
class LabelMap:
    """How a dataset's class indices relate to a model's output classes (see the module doc).

    ``to_model[k]`` is the model class of data class ``k`` (-1: none); None means the indices
    compare as they are."""

    status: str
    data_classes: tuple[str, ...] | None
    model_labels: tuple[str, ...] | None
    to_model: tuple[int, ...] | None = None

    @property
    def comparable(self) -> bool:
        """Whether accuracy against the data's labels means anything."""
        return self.status != "unrelated"

    def model_class(self, labels) -> np.ndarray:
        """The model class of each data label ``(N,)`` (-1: unlabelled or no such model class)."""
        y = np.asarray(labels, dtype=np.int64)
        if self.status == "unrelated":
            return np.full(y.shape, -1, np.int64)
        if self.to_model is None:
            k = len(self.model_labels) if self.model_labels is not None else None
            return np.where((y >= 0) & ((y < k) if k is not None else True), y, -1)
        table = np.asarray(self.to_model, dtype=np.int64)
        ok = (y >= 0) & (y < len(table))
        return np.where(ok, table[np.clip(y, 0, len(table) - 1)], -1)

    def data_name(self, k: int) -> str:
        """Name of data class `k` (its index when the data has no names)."""
        if self.data_classes is not None and 0 <= k < len(self.data_classes):
            return self.data_classes[k]
        return "(no label)" if k < 0 else str(k)

    def note(self) -> str | None:
        """One line for the user when the two sets of names differ; None when they agree."""
        if self.status in ("same", "indices"):
            return None
        d = len(self.data_classes or ())
        m = len(self.model_labels or ())
        if self.status == "unrelated":
            return (f"the data's {d} class names ({_few(self.data_classes)}) are none of the "
                    f"model's {m} labels: predictions are shown with the model's names, "
                    "accuracy is unavailable")
        mapped = sum(1 for t in self.to_model or () if t >= 0)
        return (f"the data's class names differ from the model's labels: {mapped} of {d} data "
                f"classes mapped to model classes by name"
                + ("" if self.status == "mapped" else
                   "; items of the others count as unlabelled for accuracy"))

    def info(self) -> dict:
        """For manifests: the status, both name lists and the mapping."""
        return {"status": self.status, "to_model": list(self.to_model) if self.to_model else None,
                "note": self.note()}


def align_labels(data_classes: Sequence[str] | None,
                 model_labels: Sequence[str] | None) -> LabelMap:
    """How the data's classes relate to the model's (see the module doc)."""
    d = tuple(str(c) for c in data_classes) if data_classes else None
    m = tuple(str(c) for c in model_labels) if model_labels else None
    if d is None or m is None:
        return LabelMap("indices", d, m)
    nd, nm = [normalize_name(c) for c in d], [normalize_name(c) for c in m]
    if nd == nm:
        return LabelMap("same", d, m)
    where: dict[str, int] = {}
    for i, name in enumerate(nm):
        where.setdefault(name, i)
    to_model = tuple(where.get(name, -1) for name in nd)
    mapped = sum(t >= 0 for t in to_model)
    status = "mapped" if mapped == len(d) else "partial" if mapped else "unrelated"
    return LabelMap(status, d, m, to_model)


def warn_if_differ(label_map: LabelMap) -> None:
    """Say once (a warning) when the data's and the model's names differ."""
    note = label_map.note()
    if note:
        warnings.warn(note, LabelMismatchWarning, stacklevel=3)


def _few(names, n: int = 3) -> str:
    names = list(names or ())
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")
