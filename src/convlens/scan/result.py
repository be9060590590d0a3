"""`ScanResult`: what a dataset pass found, and how it lies on disk.

A scan folder holds ``manifest.json`` (kind ``"scan"``) and

- ``codes.npy`` float16 ``(N, D)``: row ``i`` is the code of dataset item ``code_index[i]``;
  ``code_index.npy`` int64 ``(N,)``, increasing (skipped items are absent);
- ``predictions.parquet``: one row per item, sorted by ``index``: ``index, label, pred, correct,
  p_true, p_pred, top5, top5_prob`` and the item's scalar metadata columns;
- per layer ``topk_<layer>_index.npy`` ``(C, k)`` int64 dataset indices, ``topk_<layer>_score``
  ``(C, k)`` float32, ``topk_<layer>_pos`` ``(C, k, 2)`` (y, x) arg-max positions; the same for
  random directions as ``dirs_<layer>_*`` plus ``dirs_<layer>_vectors`` ``(D, C)``;
- the activation statistics tables ``channels`` and ``layers`` (as `StatsResult`).

Reading it back needs no torch: `SavedResult(folder)` or `ScanResult.load(folder)`.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..results import MANIFEST, Result, SavedResult

#: files that can be too large to hold in memory: placed by copying, never re-encoded
BIG_FILES = {"codes": ("codes.npy", "arrays"), "code_index": ("code_index.npy", "arrays"),
             "predictions": ("predictions.parquet", "tables")}


class ScanResult(Result):
    """The result of `scan`: top-k images per unit and direction, statistics, codes, predictions.

    Attributes:
        layers: the scanned layers.
        topk: ``layer -> {"index": (C, k), "score": (C, k), "pos": (C, k, 2)}``.
        directions: the same for random directions, plus ``"vectors": (D, C)``.
        stats: a `StatsResult` (or None).
        folder: where ``codes.npy``, ``code_index.npy`` and ``predictions.parquet`` lie.

    ``codes`` (memory-mapped), ``code_index`` and ``predictions`` (a DataFrame) read them on
    access. ``top(layer, unit)`` is one unit's ranking as a table.
    """

    kind = "scan"

    def __init__(self, layers: list[str], topk: dict[str, dict[str, np.ndarray]],
                 directions: dict[str, dict[str, np.ndarray]], stats=None,
                 folder: str | os.PathLike | None = None, meta: dict[str, Any] | None = None,
                 keep: Any = None):
        self.layers = list(layers)
        self.topk = topk
        self.directions = directions
        self.stats = stats
        self.folder = None if folder is None else Path(folder)
        self.meta = dict(meta or {})
        self._keep = keep  # a TemporaryDirectory that must live as long as the result

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
    def images(self) -> int:
        return int(self.meta.get("images", 0))

    @property
    def skipped(self) -> int:
        return int(self.meta.get("skipped", 0))

    def top(self, layer: str, unit: int, directions: bool = False):
        """Ranking of one unit (or direction): rank, index, score, y, x."""
        import pandas as pd

        src = (self.directions if directions else self.topk)[layer]
        return pd.DataFrame({"rank": np.arange(src["index"].shape[1]),
                             "index": src["index"][unit], "score": src["score"][unit],
                             "y": src["pos"][unit, :, 0], "x": src["pos"][unit, :, 1]})

    # -- saving ------------------------------------------------------------------------
    def arrays(self):
        out = {}
        for prefix, src in (("topk", self.topk), ("dirs", self.directions)):
            for layer, arrs in src.items():
                for name, a in arrs.items():
                    out[f"{prefix}_{layer}_{name}"] = a
        return out

    def tables(self):
        return self.stats.tables() if self.stats is not None else {}

    def pictures(self):
        return self.stats.pictures() if self.stats is not None else {}

    def info(self):
        return self.meta

    def save(self, out: str | os.PathLike, lens=None, command: list[str] | None = None,
             pictures: bool = True, model: dict | None = None) -> Path:
        """Write the scan folder (see the module doc). Codes and predictions are copied as
        files (never loaded), and left alone when `out` is where they already are."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        big: dict[str, dict[str, str]] = {"arrays": {}, "tables": {}}
        for key, (fname, kind) in BIG_FILES.items():
            src = self._file(key)
            if src is None:
                continue
            dst = out / fname
            if not (dst.exists() and os.path.samefile(src, dst)):
                shutil.copyfile(src, dst)
            big[kind][key] = fname
        folder = super().save(out, lens=lens, command=command, pictures=pictures, model=model)
        manifest = json.loads((folder / MANIFEST).read_text())
        for kind, entries in big.items():
            manifest[kind].update(entries)
        tmp = folder / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, folder / MANIFEST)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "ScanResult":
        """A saved scan read back (statistics as a `StatsResult` when saved)."""
        saved = SavedResult(folder)
        if saved.kind != "scan":
            from ..errors import ConvlensError
            raise ConvlensError(f"{folder} holds a {saved.kind!r} result, not a scan")
        info = saved.info
        topk: dict[str, dict[str, np.ndarray]] = {}
        dirs: dict[str, dict[str, np.ndarray]] = {}
        for layer in info.get("layers", []):
            for prefix, dst, names in (("topk", topk, ("index", "score", "pos")),
                                       ("dirs", dirs, ("index", "score", "pos", "vectors"))):
                if f"{prefix}_{layer}_index" in saved.manifest["arrays"]:
                    dst[layer] = {n: saved.array(f"{prefix}_{layer}_{n}") for n in names}
        stats = None
        if "channels" in saved.manifest["tables"]:
            from ..techniques.activations import StatsResult
            stats = StatsResult(saved.table("channels"), saved.table("layers"),
                                info.get("stats_threshold", 0.99), info.get("skipped", 0))
        return cls(info.get("layers", []), topk, dirs, stats, saved.folder, info)

    def __repr__(self) -> str:
        return (f"ScanResult({self.images} images, {self.skipped} skipped, layers "
                f"{self.layers}, k={self.meta.get('topk')}, code layer "
                f"{self.meta.get('code_layer')!r}, folder {self.folder})")
