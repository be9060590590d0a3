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
occlusion, ...), are computed from the pixels (`image_stats`) when the data has none, or come
from a per-class table. Statistics: `stats`; the result and its figures: `results`, `figures`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ...engine.settings import RunSettings, as_run
from ...errors import ConvlensError, unknown
from .image_stats import UNITS
from .results import AttributeResult
from .sources import (
    Scored,
    add_computed,
    class_table,
    computed_names,
    item_columns,
    load_sources,
    predictions_table,
)
from .stats import (
    accuracy_interval,
    check_edges,
    independent_columns,
    is_numeric,
    logistic_regression,
    make_bins,
)

#: units of the item attributes convlens knows (builtin:shapes'; the computed ones: UNITS)
KNOWN_UNITS = {
    "scale": "full object area / image area", "cx": "px", "cy": "px", "rotation": "degrees",
    "hue": "HSV hue, 0-1", "saturation": "HSV saturation, 0-1", "value": "HSV value, 0-1",
    "contrast": "object vs surround luma, 0-1", "clutter": "distractors",
    "occluded": "share of the object hidden", "truncated": "share of the object outside"}
NOTE_LIMIT = 40


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
                          n: int | None = None, run: RunSettings | None = None
                          ) -> AttributeResult:
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
        n: a model runs over the first `n` items of `data` (default all).
        run: how a model runs over `data` and the computed attributes are measured
            (`convlens.RunSettings`: batch size, workers, ``dtype`` (autocast), progress).

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
    run = as_run(run)
    sources = load_sources(predictions, names, data, notes, {"n": n, "run": run})
    classes = class_table(class_attributes, sources)
    class_cols = [] if classes is None else [c for c in classes.columns if c != "label"]
    item_cols = item_columns(sources)
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
        if add_computed(sources, data, explicit, notes, run.progress):
            item_cols = item_columns(sources)
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
            got, kind, missing, outside = (_class_bins if per_class else _item_bins)(
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
            note = ("a single bin: nothing to compare" if kind == "edges" else
                    f"constant ({got.label.iloc[0]} for every item): nothing to compare")
            notes.append(f"{a}: {note}; left out")
        what = "classes" if per_class else "items"
        if missing:
            note = (note + "; " if note else "") + f"{missing} {what} without a value"
        if outside:
            note = (note + "; " if note else "") + f"{outside} {what} outside the given edges"
            notes.append(f"{a}: {outside} {what} outside the given edges, left out")
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
            "data": [None if not isinstance(s.data, (str, type(None))) else s.data
                     for s in sources],
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
    rows, missing = [], int(pooled.isna().sum())
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
    return pd.DataFrame(rows, columns=BIN_COLUMNS), kind, missing, int((codes < 0).sum()) - missing


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
    missing = int(values.isna().sum())
    return pd.DataFrame(rows, columns=BIN_COLUMNS), kind, missing, int((codes < 0).sum()) - missing


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
