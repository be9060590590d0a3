"""`AttributeResult`: the tables of `attribute_performance` and their figures (one per
attribute: every model's accuracy per bin with its interval; a forest plot of the regression).
matplotlib only, never torch, so a saved result can be read back and drawn anywhere.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from ...results import Result, SavedResult

RESERVED_NAMES = ("regression", "summary")
GREY = "#9a9a9a"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


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
        meta: models, items, overall accuracy, settings and ``notes`` (what was left out).
    """

    kind = "attributes"

    def __init__(self, bins: pd.DataFrame, regression: pd.DataFrame, summary: pd.DataFrame,
                 meta: dict[str, Any], model: dict | None = None):
        self.bins = bins
        self.regression = regression
        self.summary = summary
        self.meta = dict(meta)
        self.model = dict(model or {})

    @property
    def notes(self) -> list[str]:
        return list(self.meta.get("notes", []))

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
        level = self.meta.get("level", 0.95)
        about = (f"Accuracy of each model on the items of each bin of an attribute, with "
                 f"{level:.0%} bootstrap intervals (Russakovsky et al. 2015, §6.3); grey points "
                 f"are bins with fewer than {self.meta.get('min_count')} items (class "
                 f"attributes: {self.meta.get('min_classes')} classes), shown with their count "
                 "and no interval. The regression gives, for every attribute at once, the "
                 "change in log-odds of a right top-1 answer per standard deviation with the "
                 "others held fixed: bars that miss 0 matter on their own.")
        meta = {k: ({m: None if v is None else round(v, 4) for m, v in val.items()}
                    if k in ("top1", "top5") else val) for k, val in self.meta.items()}
        return {"about": about, **meta}

    @classmethod
    def load(cls, folder: str | os.PathLike) -> AttributeResult:
        """A saved result read back (no torch)."""
        saved = SavedResult(folder)
        if saved.kind != cls.kind:
            from ...errors import ConvlensError
            raise ConvlensError(f"{folder} holds a {saved.kind!r} result, not {cls.kind!r}")
        tables = saved.manifest.get("tables", {})
        parts = [saved.table(n) for n in tables if n not in RESERVED_NAMES]
        bins = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        meta = {k: v for k, v in saved.info.items() if k != "about"}
        return cls(bins, saved.table("regression"), saved.table("summary"), meta,
                   saved.manifest.get("model"))

    def __repr__(self) -> str:
        return (f"AttributeResult({len(self.meta.get('models', []))} models, attributes "
                f"{self.attributes}, {len(self.notes)} notes)")

    # -- figures -------------------------------------------------------------------------
    def _units(self, attribute: str) -> str:
        s = self.summary[self.summary.attribute == attribute] if len(self.summary) else []
        return str(s.units.iloc[0]) if len(s) and s.units.iloc[0] else ""

    def plot(self, attribute: str, path: str | None = None):
        """One attribute: every model's top-1 (and top-5) accuracy per bin, with intervals;
        bins with too few items grey, with their count. Saves a PNG to `path`, or returns
        the figure."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        t = self.table(attribute)
        models = list(dict.fromkeys(t.model))
        labels = list(dict.fromkeys(t.sort_values("bin").label))
        per_class = (t.level == "class").any()
        metrics = ["top1"] + (["top5"] if t.top5.notna().any() else [])
        nb = len(labels)
        fig, axes = plt.subplots(1, len(metrics), squeeze=False, dpi=100,
                                 figsize=(min(18, max(5.0, 0.95 * nb + 2.4)) * len(metrics) / 1.35,
                                          4.2))
        colours = matplotlib.colormaps["tab10"](np.arange(10))
        width = 0.6
        step = width / max(len(models), 1)
        kind = self.summary.set_index("attribute").kind.get(attribute, "") if len(self.summary) else ""
        ordered = kind in ("quantile", "edges", "discrete")
        few_min = self.meta.get("min_classes" if per_class else "min_count")
        for ax, metric in zip(axes[0], metrics):
            grey_shown = False
            for k, m in enumerate(models):
                r = t[t.model == m].sort_values("bin")
                x = r.bin.to_numpy() - width / 2 + step * (k + 0.5)
                ok = ~r.few.to_numpy()
                y, lo, hi = (r[metric].to_numpy(dtype=float), r[f"{metric}_lo"].to_numpy(dtype=float),
                             r[f"{metric}_hi"].to_numpy(dtype=float))
                col, marker = colours[k % 10], MARKERS[k % len(MARKERS)]
                overall = self.meta.get(metric, {}).get(m)
                lab = m if overall is None else f"{m} (all items: {overall:.3f})"
                err = np.vstack([np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)])
                if ordered and ok.sum() > 1:  # a thin line shows the trend of ordered bins
                    ax.plot(x[ok], y[ok], "-", color=col, lw=0.8, alpha=0.45)
                ax.errorbar(x[ok], y[ok], yerr=err[:, ok], fmt=marker, color=col, ms=6,
                            capsize=3, lw=1.4, label=lab)
                if (~ok).any():
                    ax.plot(x[~ok], y[~ok], marker, mfc="white", mec=GREY, ms=6,
                            label=None if grey_shown else
                            f"fewer than {few_min} {'classes' if per_class else 'items'}")
                    grey_shown = True
                    for xi, yi, ni in zip(x[~ok], y[~ok], r.n.to_numpy()[~ok]):
                        if np.isfinite(yi):
                            ax.annotate(_count_label(ni, ni, per_class), (xi, yi),
                                        textcoords="offset points", xytext=(0, 7),
                                        ha="center", fontsize=7, color=GREY)
                if overall is not None:
                    ax.axhline(overall, color=col, lw=0.8, ls="--", alpha=0.6)
            ns = t.groupby("bin").n.agg(["min", "max"])
            ticks = [f"{lab}\n{_count_label(ns.loc[b, 'min'], ns.loc[b, 'max'], per_class)}"
                     for b, lab in enumerate(labels)]
            ax.set_xticks(range(nb))
            ax.set_xticklabels(ticks, fontsize=8, rotation=0 if nb <= 6 else 30,
                               ha="center" if nb <= 6 else "right")
            ax.set_xlim(-0.6, nb - 0.4)
            lows = t[f"{metric}_lo"].where(~t.few, t[metric])
            bottom = np.nanmin(np.r_[lows.to_numpy(dtype=float), t[metric].to_numpy(dtype=float)])
            ax.set_ylim(max(0.0, (bottom if np.isfinite(bottom) else 0) - 0.05), 1.01)
            units = self._units(attribute)
            ax.set_xlabel(f"{attribute}" + (f" ({units})" if units else "")
                          + (" — a class attribute" if per_class else ""), fontsize=9)
            what = "top-1" if metric == "top1" else "top-5"
            ax.set_ylabel(f"{'mean per-class ' if per_class else ''}{what} accuracy", fontsize=9)
            ax.grid(axis="y", lw=0.4, alpha=0.5)
            ax.set_title(f"{what} accuracy by {attribute}", fontsize=10)
        level = self.meta.get("level", 0.95)
        fig.suptitle(f"bars: {level:.0%} bootstrap interval{' over classes' if per_class else ''}; "
                     f"dashed: the model on all items; grey: fewer than {few_min} "
                     f"{'classes' if per_class else 'items'} (count shown, no interval)",
                     fontsize=8, color="#444444")
        axes[0][0].legend(fontsize=8, loc="lower right", framealpha=0.85)
        fig.tight_layout()
        return _finish(fig, path)

    def plot_regression(self, path: str | None = None):
        """Forest plot: each term's coefficient with its interval, every model."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        r = self.regression[(self.regression.term != "intercept")
                            & (self.regression.attribute != "class")]
        by_class = (self.regression.attribute == "class").any()
        terms = list(dict.fromkeys(r.term))
        models = list(dict.fromkeys(r.model))
        fig, ax = plt.subplots(figsize=(8, 1.4 + 0.42 * len(terms) * max(1, len(models)) ** 0.5),
                               dpi=100)
        colours = matplotlib.colormaps["tab10"](np.arange(10))
        step = 0.7 / max(len(models), 1)
        for k, m in enumerate(models):
            rm = r[r.model == m].set_index("term")
            y = np.array([len(terms) - 1 - i for i, tm in enumerate(terms) if tm in rm.index],
                         dtype=float) + 0.35 - step * (k + 0.5)
            rr = rm.loc[[tm for tm in terms if tm in rm.index]]
            ax.errorbar(rr.coef, y, xerr=np.vstack([rr.coef - rr.lo, rr.hi - rr.coef]),
                        fmt=MARKERS[k % len(MARKERS)], color=colours[k % 10], capsize=3, ms=5,
                        label=m)
        ax.axvline(0, color="black", lw=0.8)
        names = []
        for tm in terms:
            row = r[r.term == tm].iloc[0]
            names.append(f"{tm} (vs {row.reference})" if row.reference else tm)
        ax.set_yticks(range(len(terms))[::-1])
        ax.set_yticklabels(names, fontsize=8)
        level = self.meta.get("level", 0.95)
        ax.set_xlabel("change in log-odds of a right top-1 answer per standard deviation of the "
                      f"attribute\n(categorical: against the reference value); {level:.0%} Wald "
                      "interval", fontsize=9)
        ax.set_title("which attributes matter with the others held fixed (logistic regression"
                     + (",\nwithin classes: one indicator per class, not shown)" if by_class
                        else ")"), fontsize=10)
        ax.grid(axis="x", lw=0.4, alpha=0.5)
        ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        return _finish(fig, path)


def _count_label(lo, hi, per_class: bool) -> str:
    """``n=1,234`` (items), ``3 classes`` / ``1 class``; a range where models differ."""
    lo, hi = int(lo), int(hi)
    n = f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"
    if per_class:
        return f"{n} class" + ("" if hi == 1 else "es")
    return f"n={n}"


def _finish(fig, path):
    import matplotlib.pyplot as plt

    if path is None:
        return fig
    fig.savefig(path)
    plt.close(fig)
    return None


__all__ = ["AttributeResult"]
