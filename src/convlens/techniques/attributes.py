"""Accuracy as a function of image attributes (METHODS.md §8; Russakovsky et al., "ImageNet
Large Scale Visual Recognition Challenge", IJCV 2015, §6.3, https://arxiv.org/abs/1409.0575).

`attribute_performance` bins the items of one or more models' predictions by each attribute
and gives each bin's top-1 and top-5 accuracy with a bootstrap interval; per-class attributes
(a table joined on the label: real-world size, deformability, texture, man-made, ...) are scored
per class, as the paper did: the mean of the per-class accuracies of the classes in a bin, the
interval from resampling those classes. Because attributes travel together (small objects are
also more often truncated), it also fits a logistic regression of top-1 correctness on all the
item attributes at once, standardised, so that each coefficient is the change in log-odds per
standard deviation with the other attributes held fixed.

Attributes come from the items themselves (the scalar metadata a scan writes into
``predictions.parquet``: a manifest's attribute columns, `builtin:shapes`' scale, clutter,
occlusion, ...), are computed from the pixels (`convlens.techniques.image_stats`) when the data
has none, or come from a per-class table. Statistics: `convlens.techniques.attribute_stats`.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConvlensError, unknown
from ..results import SavedResult
from .attribute_result import AttributeResult
from .attribute_stats import (
    accuracy_interval,
    check_edges,
    independent_columns,
    is_numeric,
    logistic_regression,
    make_bins,
)
from .image_stats import COMPUTED, UNITS

#: prediction columns, never attributes
RESERVED = ("index", "label", "pred", "correct", "correct5", "p_true", "p_pred", "top5",
            "top5_prob", "split", "path")
#: units of the item attributes convlens knows (builtin:shapes'; the computed ones: UNITS)
KNOWN_UNITS = {
    "scale": "full object area / image area", "cx": "px", "cy": "px", "rotation": "degrees",
    "hue": "HSV hue, 0-1", "saturation": "HSV saturation, 0-1", "value": "HSV value, 0-1",
    "contrast": "object vs surround luma, 0-1", "clutter": "distractors",
    "occluded": "share of the object hidden", "truncated": "share of the object outside"}
NOTE_LIMIT = 40


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
def predictions_table(lens, data, limit: int | None = None, batch_size: int = 64,
                      workers: int = 0, progress: bool = True) -> pd.DataFrame:
    """Run `lens` over `data` once: each item's predictions (as a scan's
    ``predictions.parquet``) with its metadata and the computed attributes, measured on the
    images as the model sees them.

    Example::

        t = predictions_table(lens, "builtin:fashion-mnist:test", limit=1000)
    """
    from ..engine import run_local
    from ..lens import lens_and_data
    from .image_stats import ImageStats
    from .predictions import Predictions

    lens, data = lens_and_data(lens, data)
    order = np.arange(len(data) if limit is None else min(int(limit), len(data)), dtype=np.int64)
    with tempfile.TemporaryDirectory(prefix="convlens-attributes-") as tmp:
        pred, st = Predictions(Path(tmp) / "parts"), ImageStats.for_lens(lens)
        run_local(lens, data, [pred, st], order, batch_size, workers, progress,
                  f"predict {getattr(lens, 'name', 'model')}")
        pred.finalize(Path(tmp) / "predictions.parquet")
        table = pd.read_parquet(Path(tmp) / "predictions.parquet")
    stats = st.finalize().drop(columns="label")
    stats = stats.rename(columns=computed_names(table.columns))
    return table.merge(stats, on="index", how="left")


def computed_names(own) -> dict[str, str]:
    """The column of each computed attribute: its name, or ``NAME_px`` where the items have
    an attribute of that name already (e.g. a brightness jitter factor)."""
    own = set(own)
    return {c: f"{c}_px" if c in own else c for c in COMPUTED}


def _prepare(table: pd.DataFrame, name: str, notes: list[str]) -> pd.DataFrame:
    """``correct`` as 0/1, ``correct5`` from ``top5`` (NaN without), unlabelled items dropped."""
    t = table.copy()
    if "index" not in t.columns:
        t.insert(0, "index", np.arange(len(t)))
    if "correct" not in t.columns:
        if not {"label", "pred"} <= set(t.columns):
            raise ConvlensError(f"{name}: the predictions table needs a 'correct' column or "
                                f"'label' and 'pred' (columns: {', '.join(map(str, t.columns))})")
        t["correct"] = t["pred"] == t["label"]
    if "label" in t.columns:
        unlabelled = t["label"].isna() | (t["label"] < 0)
        if unlabelled.any():
            notes.append(f"{name}: {int(unlabelled.sum())} items without a label left out")
            t = t[~unlabelled]
    t["correct"] = t["correct"].astype(np.float64)
    if "correct5" not in t.columns:
        if "top5" in t.columns and "label" in t.columns and len(t):
            top = np.stack([np.asarray(v) for v in t["top5"]])
            t["correct5"] = (top == t["label"].to_numpy()[:, None]).any(1).astype(np.float64)
        else:
            t["correct5"] = np.nan
    return t.reset_index(drop=True)


def _scored(obj, name: str | None, data, notes: list[str], run: dict) -> Scored:
    """One source of predictions as a `Scored`."""
    from torch import nn

    if isinstance(obj, nn.Module):
        if data is None:
            raise ConvlensError("running a model needs data: attribute_performance(model, "
                                "data='builtin:...')")
        table = predictions_table(obj, data, **run)
        labels = list(getattr(obj, "labels", None) or [])
        from ..results import lens_info
        model = lens_info(obj) if hasattr(obj, "value_range") else {}
        return Scored(name or getattr(obj, "name", "model"), _prepare(table, name or "model", notes),
                      labels, data, model, [c for c in table.columns if c in
                                            set(computed_names([]).values()) | _PX])
    if isinstance(obj, pd.DataFrame):
        return Scored(name or "predictions", _prepare(obj, name or "predictions", notes), [], data)
    if hasattr(obj, "predictions") and hasattr(obj, "meta"):  # a ScanResult
        folder = getattr(obj, "folder", None)
        if folder is not None and (Path(folder) / "manifest.json").is_file():
            return _scored(Path(folder), name, data, notes, run)  # saved: its model's name
        t = obj.predictions
        if t is None:
            raise ConvlensError("the scan has no predictions (it ran with predictions=False)")
        folder = getattr(obj, "folder", None)
        return Scored(name or obj.meta.get("model_name") or (folder.name if folder else "scan"),
                      _prepare(t, name or "scan", notes), list(obj.meta.get("labels") or []),
                      obj.meta.get("data") if data is None else data)
    if not isinstance(obj, (str, os.PathLike)):
        raise ConvlensError(f"expected a scan folder, a predictions table, a ScanResult or a "
                            f"model, got {type(obj).__name__}")
    path = Path(obj)
    if path.is_file() and path.suffix.lower() in (".parquet", ".csv"):
        t = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
        return Scored(name or path.stem, _prepare(t, name or path.stem, notes), [], data)
    if not path.is_dir():
        raise ConvlensError(f"no predictions at {path}: give a scan folder (convlens scan "
                            "--out DIR) or a .parquet/.csv predictions table")
    saved = SavedResult(path)
    file = path / "predictions.parquet"
    if not file.is_file():
        raise ConvlensError(f"{path} holds a {saved.kind!r} result without predictions.parquet: "
                            "give a folder written by convlens scan")
    info, model = saved.info, saved.manifest.get("model") or {}
    return Scored(name or model.get("name") or path.name,
                  _prepare(pd.read_parquet(file), str(path), notes),
                  list(info.get("labels") or model.get("labels") or []),
                  info.get("data") if data is None else data, model)


def _sources(predictions, names, data, notes, run) -> list[Scored]:
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
    out = [_scored(p, n, data, notes, run) for n, p in items]
    seen: dict[str, int] = {}
    for s, (_, p) in zip(out, items):  # the same model twice: tell them apart by folder
        if s.name in seen and isinstance(p, (str, os.PathLike)):
            s.name = f"{s.name} ({Path(p).name})"
        seen[s.name] = seen.get(s.name, 0) + 1
        if seen[s.name] > 1:
            s.name = f"{s.name} #{seen[s.name]}"
    _check_same_items(out, notes)
    return out


def _check_same_items(sources: list[Scored], notes: list[str]) -> None:
    """Several models must be scored on the same data: same labels on common items."""
    if len(sources) < 2:
        return
    first = sources[0].table.set_index("index")
    for s in sources[1:]:
        t = s.table.set_index("index")
        common = first.index.intersection(t.index)
        if "label" in first and "label" in t and len(common):
            differ = int((first.loc[common, "label"] != t.loc[common, "label"]).sum())
            if differ:
                raise ConvlensError(f"{sources[0].name} and {s.name} disagree on the label of "
                                    f"{differ} of {len(common)} common items: not the same data")
        if len(common) != len(first) or len(common) != len(t):
            notes.append(f"{sources[0].name} has {len(first)} items, {s.name} {len(t)} "
                         f"({len(common)} in common): each model's bins hold its own items")


_PX = {f"{c}_px" for c in COMPUTED}


def _add_computed(sources: list[Scored], data, required: bool, notes: list[str],
                  progress: bool) -> bool:
    """Join the computed attributes to every source that lacks them; False if impossible."""
    from ..data import as_dataset
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
        if "label" in s.table.columns:
            lab = stats["label"].to_numpy()
            known = np.isfinite(lab) & (lab >= 0)
            differ = int((lab[known] != s.table["label"].to_numpy()[known]).sum())
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
def _item_columns(sources: list[Scored]) -> list[str]:
    cols: list[str] = []
    for s in sources:
        cols += [c for c in s.table.columns if c not in RESERVED and not str(c).startswith("_")
                 and c not in cols]
    return cols


def _class_table(class_attributes, sources: list[Scored]) -> pd.DataFrame | None:
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


# ------------------------------------------------------------------------------------------
# the computation
# ------------------------------------------------------------------------------------------
def attribute_performance(predictions, attributes: str | Sequence[str] | None = None,
                          bins: int | Sequence[float] | Mapping[str, Any] = 5, *,
                          data=None, class_attributes=None, computed: bool | None = None,
                          names: Sequence[str] | None = None, min_count: int = 30,
                          min_classes: int = 3, level: float = 0.95, n_resamples: int = 1000,
                          method: str = "percentile", regression: bool = True,
                          control_class: bool = False, seed: int = 0,
                          max_levels: int = 20, units: Mapping[str, str] | None = None,
                          limit: int | None = None, batch_size: int = 64,
                          progress: bool = True) -> AttributeResult:
    """Top-1 and top-5 accuracy per bin of each attribute, with bootstrap intervals, for one
    or more models side by side, and a logistic regression of correctness on all attributes.

    Russakovsky et al., IJCV 2015, §6.3: accuracy against object scale, real-world size,
    deformability, texture, clutter. For a bin B of an item attribute,
    ``acc(B) = |{i ∈ B : correct_i}| / |B|``, the interval the `level` bootstrap interval of
    that mean (`scipy.stats.bootstrap`, `n_resamples`, `method`; Wilson's where every item
    of the bin has the same outcome). For a per-class attribute, ``acc(B)`` is the mean over
    the classes c in B of the class's accuracy, the interval from resampling classes. The
    regression: ``P(correct_i) = σ(β₀ + Σ_a β_a z_ia)``, ``z`` the attributes standardised
    (categorical ones as indicators against their most frequent value), Wald intervals from
    the Fisher information.

    Args:
        predictions: a scan folder (``convlens scan --out DIR``), a ScanResult, a predictions
            table (DataFrame or .parquet/.csv with ``correct`` or ``label`` and ``pred``), a
            model (`Lens` / `nn.Module`, run over `data`); or a list / ``{name: source}`` dict
            of these, scored on the same data.
        attributes: names (list or ``"a,b"``): item columns, computed ones
            (``object_area, brightness, rms_contrast, colourfulness, edge_density, entropy``)
            or columns of `class_attributes`. Default: every item attribute (the computed ones
            where the items have none) and every class attribute.
        bins: bins per numeric attribute (quantiles; one per value when there are at most this
            many values), a sequence of edges, or ``{attribute: int | edges}`` (key ``"*"``:
            the others; default 5).
        data: the data the predictions were made on (a spec or dataset), for computed
            attributes (a scan records its spec) or to run a model.
        class_attributes: a table (DataFrame, .csv, .parquet) with a ``label`` column (class
            index or name) and one column per class attribute.
        computed: add the computed attributes (None: only when the items have no attributes
            or `attributes` names one).
        min_count: bins with fewer items are drawn grey with their count and no interval;
            min_classes: the same for per-class bins.
        control_class: add one indicator per class to the regression (terms ``class=NAME``
            against the most frequent class), so each attribute's coefficient compares items of
            the same class: attributes that only tell the classes apart drop out.
        limit, batch_size: for a model run over `data`.

    Returns an `AttributeResult`: ``.bins`` (one row per attribute, model and bin),
    ``.regression``, ``.summary``, ``.notes``; one figure per attribute and a forest plot.

    Example::

        res = attribute_performance(["scan-a/", "scan-b/"], ["scale", "clutter"], bins=5)
        res.table("scale")                      # model, bin, n, top1, top1_lo, top1_hi, ...
    """
    if not 0 < level < 1:
        raise ConvlensError(f"level must lie between 0 and 1, got {level}")
    if method not in ("percentile", "basic", "BCa"):
        raise unknown("bootstrap method", method, ("percentile", "basic", "BCa"))
    for spec in (bins.values() if isinstance(bins, Mapping) else [bins]):
        if isinstance(spec, (int, np.integer)):
            if spec < 1:
                raise ConvlensError(f"bins must be at least 1, got {spec}")
        else:
            check_edges(spec)
    notes: list[str] = []
    run = {"limit": limit, "batch_size": batch_size, "progress": progress}
    sources = _sources(predictions, names, data, notes, run)
    classes = _class_table(class_attributes, sources)
    class_cols = [] if classes is None else [c for c in classes.columns if c != "label"]
    item_cols = _item_columns(sources)
    done = {c for s in sources for c in s.computed}
    own = [c for c in item_cols if c not in done]
    names_px = list(computed_names(own).values())
    if isinstance(attributes, str):
        attributes = [a.strip() for a in attributes.split(",") if a.strip()]
    requested = None if attributes is None else list(dict.fromkeys(attributes))
    if requested is not None:
        candidates = list(dict.fromkeys(item_cols + names_px + class_cols))
        for a in requested:
            if a not in candidates:
                raise unknown("attribute", a, candidates)
    want_computed = bool(computed) or (computed is None and (
        (requested is None and not own)
        or (requested is not None and any(a in names_px and a not in own for a in requested))))
    if want_computed and computed is not False:
        explicit = bool(computed) or requested is not None
        if _add_computed(sources, data, explicit, notes, progress):
            item_cols = _item_columns(sources)
    done = {c for s in sources for c in s.computed}
    if requested is None:
        chosen = [c for c in item_cols if want_computed or c not in done] + class_cols
    else:
        chosen = requested
    rng = np.random.default_rng(seed)
    rows, summary, regress = [], [], []
    for a in chosen:
        per_class = a in class_cols and a not in item_cols
        spec = bins.get(a, bins.get("*", 5)) if isinstance(bins, Mapping) else bins
        unit = (units or {}).get(a, UNITS.get(a.removesuffix("_px"), "") if a in done
                                 else KNOWN_UNITS.get(a, ""))
        try:
            got, kind, missing = (_class_bins if per_class else _item_bins)(
                a, sources, classes, spec, max_levels, level, n_resamples, method, rng,
                min_classes if per_class else min_count)
        except ConvlensError as e:
            notes.append(f"{a}: {e}; left out")
            continue
        levels = len(got.bin.unique()) if len(got) else 0
        note = ""
        if levels == 0:
            note = "no item has a value" + (" (no mask or box)" if a == "object_area" else "")
            notes.append(f"{a}: {note}; left out")
        elif levels == 1:
            note = f"constant ({got.label.iloc[0]} for every item): nothing to compare"
            notes.append(f"{a}: {note}; left out")
        if missing:
            note = (note + "; " if note else "") + f"{missing} items without a value"
        summary.append({"attribute": a, "level": "class" if per_class else "item",
                        "source": "class table" if per_class else (
                            "computed" if a in done else "item column"),
                        "kind": kind, "units": unit, "bins": levels, "missing": missing,
                        "note": note})
        if levels > 1:
            rows.append(got)
            if not per_class:
                regress.append(a)
    bins_t = pd.concat(rows, ignore_index=True) if rows else _empty_bins()
    if regression and not regress:
        notes.append("no item attribute with more than one value: no regression")
    reg = (_regression(sources, regress, level, notes, control_class) if regression and regress
           else _empty_reg())
    info = {"models": [s.name for s in sources],
            "items": {s.name: len(s.table) for s in sources},
            "top1": {s.name: float(s.table["correct"].mean()) if len(s.table) else None
                     for s in sources},
            "top5": {s.name: float(s.table["correct5"].mean())
                     if len(s.table) and s.table["correct5"].notna().all() else None
                     for s in sources},
            "data": [None if not isinstance(s.data, (str, type(None))) else s.data for s in sources],
            "level": level, "n_resamples": n_resamples, "method": method,
            "min_count": min_count, "min_classes": min_classes, "seed": seed,
            "control_class": control_class,
            "notes": notes[:NOTE_LIMIT]}
    return AttributeResult(bins_t, reg, pd.DataFrame(summary, columns=SUMMARY_COLUMNS), info,
                           sources[0].model)


BIN_COLUMNS = ["attribute", "level", "model", "bin", "label", "lo", "hi", "n", "items",
               "top1", "top1_lo", "top1_hi", "top5", "top5_lo", "top5_hi", "few", "interval"]
REG_COLUMNS = ["model", "term", "attribute", "reference", "coef", "se", "lo", "hi", "z", "p",
               "odds_ratio", "mean", "sd", "n", "converged"]
SUMMARY_COLUMNS = ["attribute", "level", "source", "kind", "units", "bins", "missing", "note"]


def _empty_bins() -> pd.DataFrame:
    return pd.DataFrame(columns=BIN_COLUMNS)


def _empty_reg() -> pd.DataFrame:
    return pd.DataFrame(columns=REG_COLUMNS)


def _pooled(a: str, sources: list[Scored]) -> pd.Series:
    """Each item's value of `a` (index -> value), over every model's items."""
    parts = [s.table.set_index("index")[a] for s in sources if a in s.table.columns]
    pooled = pd.concat(parts)
    return pooled[~pooled.index.duplicated()]


def _values(col: pd.Series) -> np.ndarray:
    v = col.to_numpy()
    if v.dtype.kind == "O":
        nums = pd.to_numeric(col, errors="coerce")
        if nums.notna().sum() == col.notna().sum():  # numbers stored as objects
            return nums.to_numpy(dtype=np.float64)
    return v


def _item_bins(a, sources, classes, spec, max_levels, level, n_resamples, method, rng, few):
    pooled = _pooled(a, sources)
    bins, codes, kind = make_bins(_values(pooled), spec, max_levels)
    code_of = pd.Series(codes, index=pooled.index)
    rows, missing = [], int((codes < 0).sum())
    for s in sources:
        if a not in s.table.columns:
            continue
        c = code_of.reindex(s.table["index"]).fillna(-1).to_numpy().astype(np.int64)
        for b, info in enumerate(bins):
            sel = c == b
            n = int(sel.sum())
            r = _row(a, "item", s.name, b, info, n, n, s.table["correct"].to_numpy()[sel],
                     s.table["correct5"].to_numpy()[sel], level, n_resamples, method, rng, few)
            rows.append(r)
    return pd.DataFrame(rows, columns=BIN_COLUMNS), kind, missing


def _class_bins(a, sources, classes, spec, max_levels, level, n_resamples, method, rng, few):
    values = classes.set_index("label")[a]
    bins, codes, kind = make_bins(_values(values), spec, max_levels)
    code_of = dict(zip(values.index, codes))
    rows = []
    for s in sources:
        g = s.table.groupby("label")
        acc = g["correct"].mean()
        acc5 = g["correct5"].mean()
        count = g["correct"].size()
        for b, info in enumerate(bins):
            cls = [c for c in acc.index if code_of.get(c, -1) == b]
            right = (g["correct"].sum()[cls].sum(), g["correct5"].sum()[cls].sum())
            rows.append(_row(a, "class", s.name, b, info, len(cls), int(count[cls].sum()),
                             acc[cls].to_numpy(), acc5[cls].to_numpy(), level, n_resamples,
                             method, rng, few, right))
    return pd.DataFrame(rows, columns=BIN_COLUMNS), kind, int((codes < 0).sum())


def _row(a, lvl, model, b, info, n, items, c1, c5, level, n_resamples, method, rng, few,
         right=None):
    """One bin of one model; `right`: (top-1, top-5) right answers among the bin's items,
    for the Wilson interval of per-class bins where every class scores 0 or 1."""
    k1, k5 = right if right is not None else (np.nansum(c1), np.nansum(c5))
    m1, lo1, hi1, how = accuracy_interval(c1, level, n_resamples, method, rng, (k1, items))
    if np.isfinite(c5).all() and len(c5):
        m5, lo5, hi5, _ = accuracy_interval(c5, level, n_resamples, method, rng, (k5, items))
    else:
        m5 = lo5 = hi5 = float("nan")
    return {"attribute": a, "level": lvl, "model": model, "bin": b, "label": info.label,
            "lo": info.lo, "hi": info.hi, "n": n, "items": items, "top1": m1, "top1_lo": lo1,
            "top1_hi": hi1, "top5": m5, "top5_lo": lo5, "top5_hi": hi5, "few": n < few,
            "interval": how}


def _design(t: pd.DataFrame, attrs: list[str], notes: list[str], name: str,
            classes: list[str] | None = None):
    """Standardised numeric columns and indicator columns (vs the most frequent value); with
    `classes` (names, or [] for indices), one indicator per class too (vs the most frequent)."""
    values = {a: _values(t[a]) for a in attrs if a in t.columns}
    if classes is not None and "label" in t.columns:
        values["class"] = np.array([classes[int(v)] if int(v) < len(classes) else str(int(v))
                                    for v in t["label"]], dtype=object)
    numeric = {a: is_numeric(v) and v.dtype.kind != "b" for a, v in values.items()}
    ok = np.ones(len(t), dtype=bool)
    for a, v in values.items():
        ok &= np.isfinite(v.astype(np.float64)) if numeric[a] else pd.notna(v)
    dropped = int((~ok).sum())
    if dropped:
        notes.append(f"regression of {name}: {dropped} items with a missing value left out")
    cols, meta = [], []
    for a, v in values.items():
        v = v[ok]
        if numeric[a]:
            x = v.astype(np.float64)
            mu, sd = float(x.mean()), float(x.std())
            if sd > 0:
                cols.append((x - mu) / sd)
                meta.append({"term": a, "attribute": a, "reference": "", "mean": mu, "sd": sd})
        else:
            s = pd.Series(v).astype(str)
            counts = s.value_counts()
            ref = counts.index[0]
            for lev in sorted(counts.index[1:]):
                cols.append((s == lev).to_numpy(dtype=np.float64))
                meta.append({"term": f"{a}={lev}", "attribute": a, "reference": ref,
                             "mean": np.nan, "sd": np.nan})
    X = np.column_stack([np.ones(int(ok.sum()))] + cols)
    meta = [{"term": "intercept", "attribute": "", "reference": "", "mean": np.nan,
             "sd": np.nan}] + meta
    return X, t["correct"].to_numpy()[ok], meta


def _regression(sources: list[Scored], attrs: list[str], level: float,
                notes: list[str], control_class: bool = False) -> pd.DataFrame:
    rows = []
    for s in sources:
        X, y, meta = _design(s.table, attrs, notes, s.name,
                             list(s.labels) if control_class else None)
        if len(y) < X.shape[1] + 2 or y.min() == y.max():
            notes.append(f"regression of {s.name}: not enough items or every answer the same; "
                         "no fit")
            continue
        keep = independent_columns(X)
        if len(keep) < X.shape[1]:
            gone = [meta[j]["term"] for j in range(X.shape[1]) if j not in set(keep.tolist())]
            notes.append(f"regression of {s.name}: {', '.join(gone)} left out (a combination "
                         "of the other attributes)")
            X, meta = X[:, keep], [meta[j] for j in keep]
        fit = logistic_regression(X, y)
        if not fit.converged:
            notes.append(f"regression of {s.name}: the fit does not converge (an attribute "
                         "separates right from wrong answers); its coefficients are unreliable")
        lo, hi = fit.intervals(level)
        for j, m in enumerate(meta):
            rows.append({"model": s.name, **m, "coef": fit.coef[j], "se": fit.se[j],
                         "lo": lo[j], "hi": hi[j], "z": fit.z[j], "p": fit.p[j],
                         "odds_ratio": float(np.exp(np.clip(fit.coef[j], -700, 700))),
                         "n": len(y), "converged": fit.converged})
    return pd.DataFrame(rows, columns=REG_COLUMNS)


__all__ = ["AttributeResult", "Scored", "attribute_performance", "predictions_table"]
