"""`AttributeResult`: the tables of `attribute_performance` and their figures (one per
attribute: every model's accuracy per bin with its interval; a forest plot of the regression,
drawn by `figures`). Never torch, so a saved result can be read back and drawn anywhere.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ...results import Result, SavedResult
from .figures import attribute_figure, regression_figure

RESERVED_NAMES = ("regression", "summary")


@dataclass
class AttributeResult(Result):
    """Accuracy by attribute for one or more models (see `attribute_performance`).

    Attributes:
        bins: one row per attribute, model and bin: ``attribute, level ("item" | "class"),
            model, bin, label, lo, hi, n`` (items, or classes for a class attribute),
            ``items, top1, top1_lo, top1_hi, top5, top5_lo, top5_hi, few`` (fewer than the
            minimum count: drawn grey, no interval), ``interval`` (bootstrap | wilson | none).
        regression: one row per model and term: ``coef`` (log-odds per SD of the attribute,
            or for ``attr=value`` against the ``reference`` value), ``se, lo, hi, z, p,
            odds_ratio, mean, sd, n, converged``.
        summary: one row per attribute: where it came from, its units, bins, missing values
            and a note.
        params: models, items, overall accuracy, settings and ``notes`` (what was left out).
        model: the manifest's model entry of the first model (its saved scan's, or the lens's).
    """

    kind = "attributes"

    bins: pd.DataFrame
    regression: pd.DataFrame
    summary: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)
    model: dict | None = None

    def __post_init__(self):
        self.params = dict(self.params or {})
        self.model = dict(self.model or {})

    @property
    def notes(self) -> list[str]:
        return list(self.params.get("notes", []))

    @property
    def attributes(self) -> list[str]:
        return list(dict.fromkeys(self.bins["attribute"])) if len(self.bins) else []

    def table(self, attribute: str) -> pd.DataFrame:
        """The bins of one attribute (every model)."""
        if attribute not in self.attributes:
            from ...errors import unknown
            raise unknown("attribute", attribute, self.attributes)
        return self.bins[self.bins.attribute == attribute].reset_index(drop=True)

    def _key(self, attribute: str) -> str:
        return f"attr_{attribute}" if attribute in RESERVED_NAMES else attribute

    # -- saving --------------------------------------------------------------------------
    def tables(self):
        out = {self._key(a): self.table(a) for a in self.attributes}
        out["regression"] = self.regression
        out["summary"] = self.summary
        return out

    def pictures(self):
        pics = {self._key(a): (lambda path, a=a: self.plot(a, path)) for a in self.attributes}
        if len(self.regression):
            pics["regression"] = self.plot_regression
        return pics

    @property
    def about(self) -> str:  # type: ignore[override]
        return self.info()["about"]

    def figures(self):
        from ...results import figure, panel
        out = [figure(a, [panel(self._key(a), kind="plot",
                                caption=[n for n in self._notes_for(a)])]) for a in self.attributes]
        if len(self.regression):
            out.append(figure("which attributes matter with the others held fixed",
                              [panel("regression", kind="plot")]))
        return out

    def _notes_for(self, attribute: str) -> list[str]:
        s = self.summary[self.summary.attribute == attribute] if len(self.summary) else []
        note = str(s.note.iloc[0]) if len(s) and "note" in s and s.note.iloc[0] else ""
        return [note] if note and note != "nan" else []

    def info(self):
        level = self.params.get("level", 0.95)
        about = (f"Accuracy of each model on the items of each bin of an attribute, with "
                 f"{level:.0%} bootstrap intervals (Russakovsky et al. 2015, §6.3); grey points "
                 f"are bins with fewer than {self.params.get('min_count')} items (class "
                 f"attributes: {self.params.get('min_classes')} classes), shown with their count "
                 "and no interval. The regression gives, for every attribute at once, the "
                 "change in log-odds of a right top-1 answer per standard deviation with the "
                 "others held fixed: bars that miss 0 matter on their own.")
        params = {k: ({m: None if v is None else round(v, 4) for m, v in val.items()}
                      if k in ("top1", "top5") else val) for k, val in self.params.items()}
        return {"about": about, **params}

    # -- loading: the bins are saved as one table per attribute ------------------------------
    def _fields(self, arrays: dict, tables: dict) -> dict[str, dict]:
        out = Result._fields(dataclasses.replace(self, bins=None), arrays, tables)
        out["bins"] = {"value": None, "parts": [self._key(a) for a in self.attributes]}
        return out

    def _loaded(self, saved: SavedResult) -> None:
        parts = (saved.manifest.get("fields", {}).get("bins") or {}).get("parts") or []
        self.bins = (pd.concat([saved.table(n) for n in parts], ignore_index=True) if parts
                     else pd.DataFrame())

    def __repr__(self) -> str:
        return (f"AttributeResult({len(self.params.get('models', []))} models, attributes "
                f"{self.attributes}, {len(self.notes)} notes)")

    # -- figures -------------------------------------------------------------------------
    def plot(self, attribute: str, path: str | None = None):
        """One attribute: every model's top-1 (and top-5) accuracy per bin, with intervals;
        bins with too few items grey, with their count. Saves a PNG to `path`, or returns
        the figure (a `matplotlib.figure.Figure`)."""
        return _finish(attribute_figure(self, attribute), path)

    def plot_regression(self, path: str | None = None):
        """Forest plot: each term's coefficient with its interval, every model. Saves a PNG to
        `path`, or returns the figure."""
        return _finish(regression_figure(self), path)


def _finish(fig, path):
    if path is None:
        return fig
    fig.savefig(path)
    return None


__all__ = ["AttributeResult"]
