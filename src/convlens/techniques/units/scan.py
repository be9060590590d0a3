"""`scan`: one pass over a dataset for the top-k images of every unit, codes and predictions.

METHODS.md §2 (Girshick et al., R-CNN 2014, Fig. 4; Szegedy et al. 2014, §3), and the
collection of CNN codes (§3) and predictions with item attributes (§8) in the same pass.
`scan` builds the techniques' reducers (`TopK`, `Directions`, `ActivationStats`,
`CodesReducer`, `Predictions`), runs them with the local or the Ray engine
(`convlens.engine`), checkpoints as it goes and writes a scan folder (`ScanResult`).

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
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ...data.labels import align_labels, warn_if_differ
from ...engine import Checkpoint, Slots, fingerprint_model, fingerprint_order, run_local
from ...errors import ConvlensError, unknown
from ...hooks import model_of
from ...lens import lens_and_data
from ...results import MANIFEST, Result, SavedResult
from ..activity.activations import DEAD_THRESHOLD, ActivationStats, default_layers
from .codes import CodesReducer, code_layer
from .predictions import Predictions
from .topk import Directions, TopK

WORK = ".convlens-scan"  # working folder inside `out`: checkpoint, partial codes, parts
ENGINES = ("local", "ray")
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def _resolve_layers(lens, layers) -> list[str]:
    if layers is None or layers == "relu":
        return default_layers(lens)
    if layers == "conv":
        return [n for n, m in model_of(lens).named_modules() if isinstance(m, nn.Conv2d)]
    names = [layers] if isinstance(layers, str) else list(layers)
    for n in names:
        lens.layer(n)  # an unknown name: error naming the close matches
    return list(dict.fromkeys(names))


def _field_info(lens, layers: Sequence[str]) -> tuple[dict, dict]:
    infos = {i.name: i for i in lens.layers()}
    fields, shapes = {}, {}
    for n in layers:
        info = infos.get(n)
        shapes[n] = None if info is None or info.shape is None else list(info.shape)
        f = None if info is None else info.field
        fields[n] = None if f is None else {
            "size": list(f.size), "stride": None if f.stride is None else list(f.stride),
            "center": None if f.center is None else list(f.center), "is_global": f.is_global}
    return fields, shapes


def _dtype(dtype) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise unknown("dtype", str(dtype), DTYPES)
    return DTYPES[dtype]


def scan(lens, data, layers: str | Sequence[str] | None = None, topk: int = 9,
         directions: int = 0, codes: str | None = "auto", predictions: bool = True,
         stats: bool = True, out: str | os.PathLike | None = None, batch_size: int = 64,
         workers: int = 0, engine: str = "local", resume: bool = True,
         checkpoint_every: int = 50, seed: int = 0, indices: Sequence[int] | None = None,
         limit: int | None = None, progress: bool = True, dtype=None,
         channels_last: bool = False, device=None, threshold: float = DEAD_THRESHOLD,
         shard_size: int | None = None, ray_address: str | None = None,
         ray_options: dict[str, Any] | None = None) -> ScanResult:
    """One pass over a dataset: the top-k images of every unit, and codes and predictions.

    For each unit (layer, channel) the score of image ``i`` is ``max_p A_l(x_i)[c, p]``; the
    `topk` best images are kept with the arg-max position (Girshick et al., R-CNN 2014,
    https://arxiv.org/abs/1311.2524, Fig. 4). With ``directions=D``, the same for D random
    unit vectors ``v`` per layer, score ``max_p <v, A_l(x_i)[:, p]>`` (Szegedy et al.,
    "Intriguing properties of neural networks" 2014, https://arxiv.org/abs/1312.6199, §3).
    The same pass collects per-channel activation statistics (dead filters, sparsity), the
    code of every image (float16 on disk) and the predictions with the items' metadata.

    The pass is a map-reduce (`convlens.engine`): results do not depend on the batch
    size, the order or the number of workers (ties go to the smaller image index). With
    `out`, it checkpoints every `checkpoint_every` batches into ``out/.convlens-scan``; run
    again after a crash or a kill and it resumes where the last checkpoint was (``resume``).
    Memory: O(layers × channels × k) plus one batch, whatever the dataset size.

    Args:
        lens: the model; the local engine runs it where it is (move it first for a GPU).
        data: a dataset, or a data spec (``"builtin:fashion-mnist:test"``); the spec is
            recorded so that ``convlens units`` can cut patches later.
        layers: names, ``"relu"`` (default: every ReLU, post-ReLU maps) or ``"conv"``.
        topk: images kept per unit (0: none). directions: random directions per layer.
        codes: the code layer, ``"auto"`` (the input of the last linear layer), or None.
        predictions: collect the predictions table. stats: the activation statistics.
        out: the scan folder (written, with a manifest). None: a temporary folder that
            lives as long as the result (call ``.save(dir)`` to keep it).
        batch_size, workers: for the data loader. indices / limit: scan only those items.
        engine: ``"local"`` or ``"ray"`` (see `convlens.engine.ray`).
        dtype: e.g. ``"bf16"``: the forward pass under autocast. channels_last: NHWC input.
        device: where the Ray tasks run the model (default: a GPU if the task got one).
        threshold: share of all-zero maps that makes a channel dead (statistics).
        shard_size, ray_address, ray_options: for the Ray engine.

    Returns a `ScanResult` (saved in `out` when given).

    Example::

        res = scan(lens, "builtin:fashion-mnist:test", ["features.4"], topk=9, out="scan/")
        res.topk["features.4"]["index"][3]        # the 9 images unit 3 likes best
    """
    if engine not in ENGINES:
        raise unknown("engine", engine, ENGINES)
    if topk < 0 or directions < 0:
        raise ConvlensError("topk and directions must be at least 0")
    dtype = _dtype(dtype)
    lens, data = lens_and_data(lens, data)
    spec = getattr(data, "spec", None)
    if spec is not None and not str(spec).startswith("builtin:") and os.path.exists(spec):
        spec = os.path.abspath(spec)  # `convlens units` may run from another folder
    if data.lens is None:
        data.with_lens(lens)
    names = _resolve_layers(lens, layers)
    code = None
    if codes:
        code = code_layer(lens) if codes == "auto" else codes
        lens.layer(code)
    if indices is not None:
        order = np.asarray(list(indices), dtype=np.int64)
    else:
        order = np.arange(len(data) if limit is None else min(limit, len(data)), dtype=np.int64)
    if len(order) and (order.min() < 0 or order.max() >= len(data)):
        raise ConvlensError(f"indices must lie in 0..{len(data) - 1}")

    # where the pass works: out/.convlens-scan, or a temporary folder
    keep = None
    if out is None:
        keep = tempfile.TemporaryDirectory(prefix="convlens-scan-")
        folder = Path(keep.name)
    else:
        folder = Path(out)
    work = folder / WORK
    if not resume and work.exists():
        shutil.rmtree(work)

    reducers: list = []
    top = TopK(names, topk) if topk else None
    dirs = Directions(names, directions, max(topk, 1), seed) if directions else None
    st = ActivationStats(names) if stats else None
    cod = CodesReducer(code, Slots.of(order, len(data)), work / "codes.partial.npy") if code else None
    label_map = align_labels(getattr(data, "classes", None), getattr(lens, "labels", None))
    if predictions:
        warn_if_differ(label_map)
    pred = Predictions(work / "predictions", label_map=label_map) if predictions else None
    reducers = [r for r in (top, dirs, st, cod, pred) if r is not None]

    fingerprint = {"model": fingerprint_model(lens), "data": spec or type(data).__name__,
                   "data_len": len(data), "order": fingerprint_order(order), "layers": names,
                   "topk": topk, "directions": directions, "seed": seed, "codes": code,
                   "predictions": bool(predictions), "stats": bool(stats)}
    # (not the batch size, engine or shards: they do not change the result, so a scan may
    # resume with others)
    checkpoint = Checkpoint(work / "checkpoint.pt", fingerprint) if out is not None else None
    if checkpoint is None or not checkpoint.path.is_file():
        shutil.rmtree(work, ignore_errors=True)  # leftovers of a run killed before a checkpoint
    work.mkdir(parents=True, exist_ok=True)

    desc = f"scan {getattr(lens, 'name', 'model')}"
    if engine == "local":
        info = run_local(lens, data, reducers, order, batch_size, workers, progress, desc,
                         checkpoint, checkpoint_every, None, dtype, channels_last)
    else:
        from ...engine.ray import run_ray
        info = run_ray(lens, data, reducers, order, batch_size, workers, progress, desc,
                       checkpoint, shard_size, ray_address, ray_options,
                       None if device is None else str(device), dtype, channels_last)

    # finalize: a kill from here on means a fresh pass (the working files get consumed)
    if checkpoint is not None:
        checkpoint.remove()
    code_dim = None
    if cod is not None:
        _, index, code_dim = cod.finalize(folder / "codes.npy")
        np.save(folder / "code_index.npy", index)
    if pred is not None:
        pred.finalize(folder / "predictions.parquet")
    fields, shapes = _field_info(lens, names)
    stats_result = None
    if st is not None:
        stats_result = st.finalize(threshold)
        stats_result.skipped = info.skipped
    meta = {"layers": names, "topk": topk, "directions": directions, "seed": seed,
            "code_layer": code, "code_dim": code_dim, "predictions": bool(predictions),
            "images": info.images, "skipped": info.skipped,
            "skipped_sources": info.skipped_sources, "data": spec, "data_len": len(data),
            "scanned": len(order), "engine": engine, "batch_size": batch_size,
            "dtype": str(dtype or torch.float32).removeprefix("torch."),
            "resumed_from": info.resumed_from, "seconds": round(info.seconds, 3),
            "cpu_seconds": round(info.cpu_seconds, 3),
            "images_per_s": round((info.seen - info.resumed_from) / info.seconds, 1)
            if info.seconds > 0 else None,
            "stats_threshold": threshold, "fields": fields, "shapes": shapes,
            "labels": list(getattr(lens, "labels", None) or []),
            "classes": list(getattr(data, "classes", None) or []),
            "label_map": label_map.info()}
    result = ScanResult(names, top.finalize() if top else {}, dirs.finalize() if dirs else {},
                        stats_result, folder, meta, keep)
    if out is not None:  # the data; pictures are drawn when the caller saves (the CLI does)
        result.save(folder, lens=lens, pictures=False)
    shutil.rmtree(work, ignore_errors=True)
    return result


# ------------------------------------------------------------------------------------------
# the scan folder
# ------------------------------------------------------------------------------------------
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

    about = ("One pass over a dataset (the seed's §1-§3 and §8): per layer the dead channels "
             "and sparsity, for every unit its top images, each image's code and prediction. "
             "The pages of its units and its t-SNE map show the pictures; here: the summary.")

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
        pics = dict(self.stats.pictures()) if self.stats is not None else {}
        if self.predictions is not None and len(self.predictions):
            pics["confusion"] = self._confusion
        return pics

    def accuracy_note(self) -> str:
        """Top-1 accuracy over the labelled images, or why there is none."""
        p = self.predictions
        if p is None or not len(p):
            return ""
        known = p["correct"].dropna()
        if not len(known):
            note = (self.meta.get("label_map") or {}).get("note") or "the data has no labels"
            return f"Accuracy unavailable: {note}."
        return f"Top-1 accuracy {known.astype(float).mean():.4f} on {len(known)} labelled images."

    def _confusion(self, path: str) -> None:
        """Rows: the data's classes; columns: the model's predictions (the 20 most frequent when
        there are more); each row as shares of that class's images."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        p = self.predictions
        classes = self.meta.get("classes") or []
        labels = self.meta.get("labels") or []
        rows = sorted(int(v) for v in p["label"].unique())
        counts = p["pred"].value_counts()
        cols = sorted(int(v) for v in counts.index[:20])
        if classes and labels and [c.lower() for c in classes] == [c.lower() for c in labels]:
            cols = sorted(set(cols) | set(r for r in rows if r >= 0))
        m = np.zeros((len(rows), len(cols)))
        ri, ci = {r: i for i, r in enumerate(rows)}, {c: j for j, c in enumerate(cols)}
        for lab, pred in zip(p["label"].to_numpy(), p["pred"].to_numpy()):
            if int(pred) in ci:
                m[ri[int(lab)], ci[int(pred)]] += 1
        share = m / np.maximum(m.sum(1, keepdims=True), 1)
        name = lambda names, k: names[k] if 0 <= k < len(names) else ("(none)" if k < 0 else str(k))  # noqa: E731
        w = min(12.0, 2.5 + 0.45 * len(cols))
        h = min(10.0, 1.8 + 0.35 * len(rows))
        fig, ax = plt.subplots(figsize=(w, h), dpi=100)
        im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(cols)), [name(labels, c) for c in cols], rotation=60, ha="right",
                      fontsize=8)
        ax.set_yticks(range(len(rows)), [name(classes or labels, r) for r in rows], fontsize=8)
        ax.set_xlabel("predicted (the model's classes)")
        ax.set_ylabel("label (the data's classes)")
        if len(rows) * len(cols) <= 400:
            for i in range(len(rows)):
                for j in range(len(cols)):
                    if m[i, j]:
                        ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                                color="white" if share[i, j] > 0.6 else "black")
        fig.colorbar(im, ax=ax, label="share of the class's images")
        ax.set_title(self.accuracy_note(), fontsize=9)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)

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
        return {**self.meta, "accuracy_note": self.accuracy_note()}

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
            from ..activity.activations import StatsResult
            stats = StatsResult(saved.table("channels"), saved.table("layers"),
                                info.get("stats_threshold", 0.99), info.get("skipped", 0))
        return cls(info.get("layers", []), topk, dirs, stats, saved.folder, info)

    def __repr__(self) -> str:
        return (f"ScanResult({self.images} images, {self.skipped} skipped, layers "
                f"{self.layers}, k={self.meta.get('topk')}, code layer "
                f"{self.meta.get('code_layer')!r}, folder {self.folder})")
