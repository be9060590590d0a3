"""The figures of `AttributeResult` (one per attribute: every model's accuracy per bin with its
interval; a forest plot of the regression), on matplotlib's `Figure` (never pyplot: drawing one
in a notebook switches no backend). Reads the result's tables only, never torch."""
from __future__ import annotations

import numpy as np

GREY = "#9a9a9a"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _units(res, attribute: str) -> str:
    s = res.summary[res.summary.attribute == attribute] if len(res.summary) else []
    return str(s.units.iloc[0]) if len(s) and s.units.iloc[0] else ""


def attribute_figure(res, attribute: str):
    """One attribute: every model's top-1 (and top-5) accuracy per bin, with intervals;
    bins with too few items grey, with their count (a `matplotlib.figure.Figure`)."""
    import matplotlib
    from matplotlib.figure import Figure

    t = res.table(attribute)
    models = list(dict.fromkeys(t.model))
    labels = list(dict.fromkeys(t.sort_values("bin").label))
    per_class = (t.level == "class").any()
    metrics = ["top1"] + (["top5"] if t.top5.notna().any() else [])
    nb = len(labels)
    fig = Figure(dpi=100, figsize=(min(18, max(5.0, 0.95 * nb + 2.4)) * len(metrics) / 1.35,
                                   4.2))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    colours = matplotlib.colormaps["tab10"](np.arange(10))
    width = 0.6
    step = width / max(len(models), 1)
    kind = res.summary.set_index("attribute").kind.get(attribute, "") if len(res.summary) else ""
    ordered = kind in ("quantile", "edges", "discrete")
    few_min = res.params.get("min_classes" if per_class else "min_count")
    for ax, metric in zip(axes[0], metrics):
        grey_shown = False
        for k, m in enumerate(models):
            r = t[t.model == m].sort_values("bin")
            x = r.bin.to_numpy() - width / 2 + step * (k + 0.5)
            ok = ~r.few.to_numpy()
            y, lo, hi = (r[metric].to_numpy(dtype=float), r[f"{metric}_lo"].to_numpy(dtype=float),
                         r[f"{metric}_hi"].to_numpy(dtype=float))
            col, marker = colours[k % 10], MARKERS[k % len(MARKERS)]
            overall = res.params.get(metric, {}).get(m)
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
        units = _units(res, attribute)
        ax.set_xlabel(f"{attribute}" + (f" ({units})" if units else "")
                      + (" — a class attribute" if per_class else ""), fontsize=9)
        what = "top-1" if metric == "top1" else "top-5"
        ax.set_ylabel(f"{'mean per-class ' if per_class else ''}{what} accuracy", fontsize=9)
        ax.grid(axis="y", lw=0.4, alpha=0.5)
        ax.set_title(f"{what} accuracy by {attribute}", fontsize=10)
    level = res.params.get("level", 0.95)
    fig.suptitle(f"bars: {level:.0%} bootstrap interval{' over classes' if per_class else ''}; "
                 f"dashed: the model on all items; grey: fewer than {few_min} "
                 f"{'classes' if per_class else 'items'} (count shown, no interval)",
                 fontsize=8, color="#444444")
    axes[0][0].legend(fontsize=8, loc="lower right", framealpha=0.85)
    fig.tight_layout()
    return fig


def regression_figure(res):
    """Forest plot: each term's coefficient with its interval, every model (a `Figure`)."""
    import matplotlib
    from matplotlib.figure import Figure

    r = res.regression[(res.regression.term != "intercept")
                       & (res.regression.attribute != "class")]
    by_class = (res.regression.attribute == "class").any()
    terms = list(dict.fromkeys(r.term))
    models = list(dict.fromkeys(r.model))
    fig = Figure(figsize=(8, 1.4 + 0.42 * len(terms) * max(1, len(models)) ** 0.5), dpi=100)
    ax = fig.add_subplot()
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
    level = res.params.get("level", 0.95)
    ax.set_xlabel("change in log-odds of a right top-1 answer per standard deviation of the "
                  f"attribute\n(categorical: against the reference value); {level:.0%} Wald "
                  "interval", fontsize=9)
    ax.set_title("which attributes matter with the others held fixed (logistic regression"
                 + (",\nwithin classes: one indicator per class, not shown)" if by_class
                    else ")"), fontsize=10)
    ax.grid(axis="x", lw=0.4, alpha=0.5)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _count_label(lo, hi, per_class: bool) -> str:
    """``n=1,234`` (items), ``3 classes`` / ``1 class``; a range where models differ."""
    lo, hi = int(lo), int(hi)
    n = f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"
    if per_class:
        return f"{n} class" + ("" if hi == 1 else "es")
    return f"n={n}"
