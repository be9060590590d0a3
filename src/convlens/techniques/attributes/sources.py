"""Where the predictions of `attribute_performance` come from: scan folders, tables, ScanResults
or a model run over data (`predictions_table`), checked against each other and joined with
the attributes computed from the pixels (`convlens.techniques.image_stats`) and a per-class
table (METHODS.md §8).
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import ConvlensError
from ...results import SavedResult
from .image_stats import COMPUTED
from .stats import is_numeric

#: prediction columns, never attributes
RESERVED = ("index", "label", "data_label", "pred", "correct", "correct5", "p_true", "p_pred",
            "top5", "top5_prob", "split", "path")


@dataclass
class Scored:
    """One model's predictions: a table with ``index, label, correct, correct5`` and attribute
    columns, the class names, the data spec and the model entry."""

    name: str
    table: pd.DataFrame
    labels: list[str] = field(default_factory=list)
    data: Any = None
    model: dict = field(default_factory=dict)
    computed: list[str] = field(default_factory=list)  # the columns computed from pixels


# ------------------------------------------------------------------------------------------
# predictions: scan folders, tables, or a model run over data
# ------------------------------------------------------------------------------------------
def predictions_table(lens, data, n: int | None = None, run=None) -> pd.DataFrame:
    """Run `lens` over the first `n` items of `data` (default all) once: each item's
    predictions (as a scan's ``predictions.parquet``) with its metadata and the computed
    attributes, measured on the images as the model sees them. `run` (`convlens.RunSettings`):
    batch size, workers, progress, and ``dtype`` (``"bfloat16"``, ``"float16"`` or a torch
    dtype) to run the forward pass under autocast.

    Example::

        t = predictions_table(lens, "builtin:fashion-mnist:test", n=1000)
    """
    import torch

    from ...engine import run_local
    from ...engine.settings import as_run
    from ...lens import lens_and_data
    from ..units.predictions import Predictions
    from .image_stats import ImageStats

    run = as_run(run)
    dtype = run.dtype
    lens, data = lens_and_data(lens, data)
    try:  # how the data's classes relate to the model's (where convlens knows label maps)
        from ...data.labels import align_labels
        label_map = align_labels(getattr(data, "classes", None), getattr(lens, "labels", None))
    except ImportError:
        label_map = None
    if isinstance(dtype, str):
        dtype = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    order = np.arange(len(data) if n is None else min(int(n), len(data)), dtype=np.int64)
    with tempfile.TemporaryDirectory(prefix="convlens-attributes-") as tmp:
        pred = (Predictions(Path(tmp) / "parts") if label_map is None
                else Predictions(Path(tmp) / "parts", label_map=label_map))
        st = ImageStats.for_lens(lens)
        run_local(lens, data, [pred, st], order, run.batch_size, run.workers, run.progress,
                  f"predict {getattr(lens, 'name', 'model')}", dtype=dtype)
        pred.finalize(Path(tmp) / "predictions.parquet")
        table = pd.read_parquet(Path(tmp) / "predictions.parquet")
    stats = st.finalize().drop(columns="label")
    stats = stats.rename(columns=computed_names(table.columns))
    table = table.merge(stats, on="index", how="left")
    if label_map is not None and label_map.to_model is not None:
        table.attrs["to_model"] = list(label_map.to_model)  # data class -> model class
    return table


def computed_names(own) -> dict[str, str]:
    """The column of each computed attribute: its name, or ``NAME_px`` where the items have
    an attribute of that name already (e.g. a brightness jitter factor)."""
    own = set(own)
    return {c: f"{c}_px" if c in own else c for c in COMPUTED}


def prepare(table: pd.DataFrame, name: str, notes: list[str],
            to_model: list[int] | None = None) -> pd.DataFrame:
    """``correct`` as 0/1, ``correct5`` from ``top5`` (NaN without); items without a label or
    a known answer dropped. `to_model`: the model class of each data class, where the data's
    classes are the model's in another order: ``label`` becomes the model's class (the data's
    is kept as ``data_label``), so per-class scores and top-5 use the model's classes."""
    t = table.copy()
    to_model = to_model if to_model is not None else table.attrs.get("to_model")
    if "index" not in t.columns:
        t.insert(0, "index", np.arange(len(t)))
    if "correct" not in t.columns:
        if not {"label", "pred"} <= set(t.columns):
            raise ConvlensError(f"{name}: the predictions table needs a 'correct' column or "
                                f"'label' and 'pred' (columns: {', '.join(map(str, t.columns))})")
        t["correct"] = t["pred"] == t["label"]
    if "label" in t.columns and to_model is not None:
        m = np.asarray(to_model, dtype=np.int64)
        lab = t["label"].fillna(-1).to_numpy().astype(np.int64)
        t["data_label"] = lab
        t["label"] = np.where((lab >= 0) & (lab < len(m)), m[np.clip(lab, 0, len(m) - 1)], -1)
    if "label" in t.columns:
        unlabelled = t["label"].isna() | (t["label"] < 0)
        if unlabelled.any():
            notes.append(f"{name}: {int(unlabelled.sum())} items without a label (or whose "
                         "class the model does not have) left out")
            t = t[~unlabelled]
    unknown = t["correct"].isna()
    if unknown.all() and len(t):
        raise ConvlensError(f"{name}: no item has a known right answer (the data's classes are "
                            "none of the model's), so there is no accuracy to bin")
    if unknown.any():
        notes.append(f"{name}: {int(unknown.sum())} items without a known right answer left out")
        t = t[~unknown]
    t["correct"] = t["correct"].astype(np.float64)
    if "correct5" not in t.columns:
        if "top5" in t.columns and "label" in t.columns and len(t):
            top = np.stack([np.asarray(v) for v in t["top5"]])
            t["correct5"] = (top == t["label"].to_numpy()[:, None]).any(1).astype(np.float64)
        else:
            t["correct5"] = np.nan
    return t.reset_index(drop=True)


def scored(obj, name: str | None, data, notes: list[str], run: dict) -> Scored:
    """One source of predictions as a `Scored`."""
    from torch import nn

    if isinstance(obj, nn.Module):
        if data is None:
            raise ConvlensError("running a model needs data: attribute_performance(model, "
                                "data='builtin:...')")
        table = predictions_table(obj, data, **run)
        labels = list(getattr(obj, "labels", None) or [])
        from ...results import lens_info
        model = lens_info(obj) if hasattr(obj, "value_range") else {}
        return Scored(name or getattr(obj, "name", "model"), prepare(table, name or "model", notes),
                      labels, data, model, [c for c in table.columns if c in
                                            set(computed_names([]).values()) | _PX])
    if isinstance(obj, pd.DataFrame):
        return Scored(name or "predictions", prepare(obj, name or "predictions", notes), [], data)
    scan_params = getattr(obj, "params", getattr(obj, "meta", None))
    if hasattr(obj, "predictions") and isinstance(scan_params, dict):  # a ScanResult
        folder = getattr(obj, "folder", None)
        if folder is not None and (Path(folder) / "manifest.json").is_file():
            return scored(Path(folder), name, data, notes, run)  # saved: its model's name
        t = obj.predictions
        if t is None:
            raise ConvlensError("the scan has no predictions (it ran with predictions=False)")
        folder = getattr(obj, "folder", None)
        return Scored(name or scan_params.get("model_name") or (folder.name if folder else "scan"),
                      prepare(t, name or "scan", notes), list(scan_params.get("labels") or []),
                      scan_params.get("data") if data is None else data)
    if not isinstance(obj, (str, os.PathLike)):
        raise ConvlensError(f"expected a scan folder, a predictions table, a ScanResult or a "
                            f"model, got {type(obj).__name__}")
    path = Path(obj)
    if path.is_file() and path.suffix.lower() in (".parquet", ".csv"):
        t = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
        return Scored(name or path.stem, prepare(t, name or path.stem, notes), [], data)
    if not path.is_dir():
        hint = (f" ({str(obj)!r} looks like a model spec: load it with convlens.load_model)"
                if ":" in str(obj) else "")
        raise ConvlensError(f"no predictions at {path}: give a scan folder (convlens scan "
                            "--out DIR), a .parquet/.csv predictions table, or a model as a Lens "
                            f"or an nn.Module with data{hint}")
    saved = SavedResult(path)
    file = path / "predictions.parquet"
    if not file.is_file():
        raise ConvlensError(f"{path} holds a {saved.kind!r} result without predictions.parquet: "
                            "give a folder written by convlens scan")
    info, model = saved.info, saved.manifest.get("model") or {}
    to_model = (info.get("label_map") or {}).get("to_model")
    return Scored(name or model.get("name") or path.name,
                  prepare(pd.read_parquet(file), str(path), notes, to_model),
                  list(info.get("labels") or model.get("labels") or []),
                  info.get("data") if data is None else data, model)


def load_sources(predictions, names, data, notes, run) -> list[Scored]:
    if isinstance(predictions, Mapping):
        items = list(predictions.items())
    elif isinstance(predictions, (list, tuple)):
        items = [(None, p) for p in predictions]
    else:
        items = [(None, predictions)]
    if names is not None:
        names = list(names)
        if len(names) != len(items):
            raise ConvlensError(f"{len(names)} names for {len(items)} predictions")
        items = [(n, p) for n, (_, p) in zip(names, items)]
    if not items:
        raise ConvlensError("no predictions given")
    out = [scored(p, n, data, notes, run) for n, p in items]
    seen: dict[str, int] = {}
    for s, (_, p) in zip(out, items):  # the same model twice: tell them apart by folder
        if s.name in seen and isinstance(p, (str, os.PathLike)):
            s.name = f"{s.name} ({Path(p).name})"
        seen[s.name] = seen.get(s.name, 0) + 1
        if seen[s.name] > 1:
            s.name = f"{s.name} #{seen[s.name]}"
    check_same_items(out, notes)
    return out


def check_same_items(sources: list[Scored], notes: list[str]) -> None:
    """Several models must be scored on the same data: same labels on common items."""
    if len(sources) < 2:
        return
    first = sources[0].table.set_index("index")
    for s in sources[1:]:
        t = s.table.set_index("index")
        common = first.index.intersection(t.index)
        a = "data_label" if "data_label" in first else "label"  # the data's own labels
        b = "data_label" if "data_label" in t else "label"
        if a in first and b in t and len(common):
            differ = int((first.loc[common, a] != t.loc[common, b]).sum())
            if differ:
                raise ConvlensError(f"{sources[0].name} and {s.name} disagree on the label of "
                                    f"{differ} of {len(common)} common items: not the same data")
        if len(common) != len(first) or len(common) != len(t):
            notes.append(f"{sources[0].name} has {len(first)} items, {s.name} {len(t)} "
                         f"({len(common)} in common): each model's bins hold its own items")


_PX = {f"{c}_px" for c in COMPUTED}


def add_computed(sources: list[Scored], data, required: bool, notes: list[str],
                  progress: bool) -> bool:
    """Join the computed attributes to every source that lacks them; False if impossible."""
    from ...data import as_dataset
    from .image_stats import image_attributes

    cache: dict[Any, pd.DataFrame] = {}
    done = True
    for s in sources:
        if s.computed:
            continue
        src = data if data is not None else s.data
        if src is None:
            msg = (f"{s.name}: no data to compute image attributes from (the predictions do "
                   "not say which data they were made on): give data=SPEC (--data)")
            if required:
                raise ConvlensError(msg)
            notes.append(msg)
            done = False
            continue
        key = src if isinstance(src, str) else id(src)
        ds = as_dataset(src) if isinstance(src, (str, os.PathLike)) else src
        idx = s.table["index"].to_numpy()
        if len(idx) and (idx.min() < 0 or idx.max() >= len(ds)):
            raise ConvlensError(f"the predictions of {s.name} do not match the data {src}: they "
                                f"index items up to {int(idx.max())}, the data has {len(ds)}")
        if key not in cache:
            cache[key] = image_attributes(ds, lens=None, indices=np.unique(idx), progress=progress)
        stats = cache[key].set_index("index").reindex(idx)
        key_col = "data_label" if "data_label" in s.table.columns else "label"
        if key_col in s.table.columns:
            lab = stats["label"].to_numpy()
            known = np.isfinite(lab) & (lab >= 0)
            differ = int((lab[known] != s.table[key_col].to_numpy()[known]).sum())
            if differ:
                raise ConvlensError(f"the predictions of {s.name} do not match the data {src}: "
                                    f"{differ} of {int(known.sum())} items have another label")
        for c, col in computed_names(s.table.columns).items():
            s.table[col] = stats[c].to_numpy()
            s.computed.append(col)
    return done


# ------------------------------------------------------------------------------------------
# which attributes
# ------------------------------------------------------------------------------------------
def item_columns(sources: list[Scored]) -> list[str]:
    cols: list[str] = []
    for s in sources:
        cols += [c for c in s.table.columns if c not in RESERVED and not str(c).startswith("_")
                 and c not in cols]
    return cols


def class_table(class_attributes, sources: list[Scored]) -> pd.DataFrame | None:
    """The per-class table with a ``label`` column of class indices."""
    if class_attributes is None:
        return None
    t = class_attributes
    if isinstance(t, (str, os.PathLike)):
        p = Path(t)
        if not p.is_file():
            raise ConvlensError(f"class attribute table not found: {p}")
        t = pd.read_parquet(p) if p.suffix.lower() == ".parquet" else pd.read_csv(p)
    t = t.copy()
    key = "label" if "label" in t.columns else "class" if "class" in t.columns else None
    if key is None:
        raise ConvlensError("the class attribute table needs a 'label' (or 'class') column: "
                            f"the class index or name (columns: {', '.join(map(str, t.columns))})")
    names = next((s.labels for s in sources if s.labels), [])
    if is_numeric(t[key].to_numpy()):
        t["label"] = t[key].astype(np.int64)
    else:
        lookup = {n: i for i, n in enumerate(names)}
        miss = [str(v) for v in t[key] if str(v) not in lookup]
        if len(miss) == len(t):
            raise ConvlensError(f"no class of the table ({', '.join(miss[:5])}...) is a class of "
                                f"the model ({', '.join(names[:10]) or 'no class names known'})")
        t = t[[str(v) in lookup for v in t[key]]].copy()
        t["label"] = [lookup[str(v)] for v in t[key]]
    if key != "label":
        t = t.drop(columns=key)
    if t["label"].duplicated().any():
        raise ConvlensError("the class attribute table lists a class twice")
    return t
