"""The units family's results: a scan folder (`ScanResult`) and the receptive-field patches of
a layer's units (`UnitsResult`). Drawing is in `figures`."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...results import Result, safe_name
from ..activity.results import StatsResult
from .figures import box_grid, confusion, overview, patch_grid, png

#: files that can be too large to hold in memory: placed by copying, never re-encoded
BIG_FILES = {"codes": ("codes.npy", "arrays"), "code_index": ("code_index.npy", "arrays"),
             "predictions": ("predictions.parquet", "tables")}


@dataclass
class ScanResult(Result):
    """The result of `scan`: top-k images per unit and direction, statistics, codes, predictions.

    Attributes:
        layers: the scanned layers.
        topk: ``layer -> {"index": (C, k), "score": (C, k), "pos": (C, k, 2)}``.
        directions: the same for random directions, plus ``"vectors": (D, C)``.
        stats: a `StatsResult` (or None).
        folder: where ``codes.npy``, ``code_index.npy`` and ``predictions.parquet`` lie.
        params: how the scan ran and what it saw (its manifest's info): ``n`` images read,
            ``skipped``, ``data``, ``code_layer``, ``seconds``, ...

    ``codes`` (memory-mapped), ``code_index`` and ``predictions`` (a DataFrame) read them on
    access. ``top(layer, unit)`` is one unit's ranking as a table.
    """

    layers: list[str]
    topk: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    directions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    stats: StatsResult | None = None
    folder: Path | None = None
    params: dict[str, Any] = field(default_factory=dict)
    #: a TemporaryDirectory that must live as long as the result
    _keep: Any = field(default=None, repr=False, compare=False)

    kind = "scan"

    about = ("One pass over a dataset (the seed's §1-§3 and §8): per layer the dead channels "
             "and sparsity, for every unit its top images, each image's code and prediction. "
             "The pages of its units and its t-SNE map show the pictures; here: the summary.")

    def __post_init__(self):
        self.layers = list(self.layers)
        self.folder = None if self.folder is None else Path(self.folder)
        self.params = dict(self.params or {})

    # -- the big outputs, read on access -----------------------------------------------
    def _file(self, key: str) -> Path | None:
        if self.folder is None:
            return None
        p = self.folder / BIG_FILES[key][0]
        return p if p.is_file() else None

    @property
    def codes(self) -> np.ndarray | None:
        """``(N, D)`` float16, memory-mapped; row i is item ``code_index[i]``."""
        p = self._file("codes")
        return None if p is None else np.load(p, mmap_mode="r")

    @property
    def code_index(self) -> np.ndarray | None:
        p = self._file("code_index")
        return None if p is None else np.load(p)

    @property
    def predictions(self):
        """One row per item (a pandas DataFrame), or None."""
        p = self._file("predictions")
        if p is None:
            return None
        import pandas as pd
        return pd.read_parquet(p)

    @property
    def n(self) -> int:
        """Images read (the items scanned, less the skipped ones)."""
        return int(self.params.get("n", 0))

    @property
    def skipped(self) -> int:
        return int(self.params.get("skipped", 0))

    def top(self, layer: str, unit: int, directions: bool = False):
        """Ranking of one unit (or direction): rank, index, score, y, x."""
        import pandas as pd

        src = (self.directions if directions else self.topk)[layer]
        return pd.DataFrame({"rank": np.arange(src["index"].shape[1]),
                             "index": src["index"][unit], "score": src["score"][unit],
                             "y": src["pos"][unit, :, 0], "x": src["pos"][unit, :, 1]})

    # -- saving and loading --------------------------------------------------------------
    def arrays(self):
        out = {}
        for prefix, src in (("topk", self.topk), ("dirs", self.directions)):
            for layer, arrs in src.items():
                for name, a in arrs.items():
                    out[f"{prefix}_{layer}_{name}"] = a
        return out

    def tables(self):
        return self.stats.tables() if self.stats is not None else {}

    def files(self):
        """Codes and predictions: copied as files (never loaded), left alone when the folder
        saved to is where they already are."""
        out = {}
        for key, (_, where) in BIG_FILES.items():
            src = self._file(key)
            if src is not None:
                out[key] = (where, src)
        return out

    def _fields(self, arrays, tables):
        # everything but the layers is in the arrays, tables and info: `_loaded` reads it back
        return {"layers": {"value": list(self.layers)}}

    def _loaded(self, saved) -> None:
        """The top-k arrays, statistics, folder and params of a saved scan."""
        info = saved.info
        self.params = {k: v for k, v in info.items() if k != "accuracy_note"}
        self.folder = saved.folder
        arrays = saved.manifest.get("arrays", {})
        for layer in self.layers:
            for prefix, dst, names in (("topk", self.topk, ("index", "score", "pos")),
                                       ("dirs", self.directions,
                                        ("index", "score", "pos", "vectors"))):
                if f"{prefix}_{layer}_index" in arrays:
                    dst[layer] = {n: saved.array(f"{prefix}_{layer}_{n}") for n in names}
        if "channels" in saved.manifest.get("tables", {}):
            self.stats = StatsResult(saved.table("channels"), saved.table("layers"),
                                     info.get("stats_threshold", 0.99), info.get("skipped", 0))

    def pictures(self):
        pics = dict(self.stats.pictures()) if self.stats is not None else {}
        if self.predictions is not None and len(self.predictions):
            pics["confusion"] = lambda path: confusion(self, path)
        return pics

    def accuracy_note(self) -> str:
        """Top-1 accuracy over the labelled images, or why there is none."""
        p = self.predictions
        if p is None or not len(p):
            return ""
        known = p["correct"].dropna()
        if not len(known):
            note = (self.params.get("label_map") or {}).get("note") or "the data has no labels"
            return f"Accuracy unavailable: {note}."
        return f"Top-1 accuracy {known.astype(float).mean():.4f} on {len(known)} labelled images."

    def figures(self):
        from ...results import figure, panel

        out = []
        if self.predictions is not None and len(self.predictions):
            out.append(figure("predictions", [panel("confusion", kind="plot", caption=[
                "each row: how the model classified the images of one class (counts in the "
                "cells)"])]))
        if self.stats is not None:
            out += self.stats.figures()
        return out

    def info(self):
        return {**self.params, "accuracy_note": self.accuracy_note()}

    def __repr__(self) -> str:
        return (f"ScanResult({self.n} images, {self.skipped} skipped, layers "
                f"{self.layers}, k={self.params.get('topk')}, code layer "
                f"{self.params.get('code_layer')!r}, folder {self.folder})")


@dataclass
class UnitsResult(Result):
    """Top-k patches and boxed images of some units of one layer.

    ``patches (U, k, h, w, 3)`` uint8, ``boxes (U, k, 4)`` (x0, y0, x1, y1) end exclusive,
    ``index / score (U, k)``, ``images (M, H, W, 3)`` uint8 (each top image once) and
    ``image_of (U, k)`` (row of `images`; -1 where a unit has fewer than k images).
    """

    layer: str
    units: np.ndarray
    index: np.ndarray
    score: np.ndarray
    patches: np.ndarray
    boxes: np.ndarray
    images: np.ndarray
    image_of: np.ndarray
    directions: bool = False
    labels: list[str] = field(default_factory=list)
    true: np.ndarray | None = None              # (M,) each image's true class (-1: none)
    scan: str | None = None                     # the scan folder the units come from
    image_classes: list[str] = field(default_factory=list)   # what `true` means
    kind: str = "units"

    about = ("Images that excite a unit most (the seed's §2; Girshick et al. 2014): for each "
             "unit (channel) of a layer, the part of each of its top images that the unit sees "
             "(its receptive field), best first. Random directions (Szegedy et al. 2014) do the "
             "same along random mixtures of channels, which look just as coherent.")

    def arrays(self):
        out = {"units": self.units, "index": self.index, "score": self.score,
               "patches": self.patches, "boxes": self.boxes, "images": self.images,
               "image_of": self.image_of}
        if self.true is not None:
            out["true"] = self.true
        return out

    def info(self):
        return {"layer": self.layer, "units": self.units.tolist(), "k": int(self.index.shape[1]),
                "what": "random directions" if self.directions else "units",
                "patch_size": list(self.patches.shape[2:4]), "scan": self.scan,
                "image_classes": self.image_classes}

    def view_title(self) -> str | None:
        return "top images per random direction" if self.directions else None

    def patch_grid(self, u: int, cols: int | None = None) -> np.ndarray:
        """Unit row `u`'s top-k patches in a grid (nearest-neighbour enlarged)."""
        return patch_grid(self, u, cols)

    def box_grid(self, u: int, cols: int | None = None) -> np.ndarray:
        """Unit row `u`'s top-k images with the receptive-field box of the arg-max drawn."""
        return box_grid(self, u, cols)

    def overview(self) -> np.ndarray:
        """One row per unit: its top-k patches, best first."""
        return overview(self)

    def pictures(self):
        tag = "dir" if self.directions else "unit"
        layer = safe_name(self.layer)
        pics: dict[str, Any] = {f"{tag}s_{layer}": self.overview()}
        for row, u in enumerate(self.units.tolist()):
            pics[f"{tag}_{layer}_{u}"] = lambda path, row=row: png(path, self.patch_grid(row))
            pics[f"{tag}_{layer}_{u}_boxes"] = lambda path, row=row: png(path, self.box_grid(row))
        return pics


