"""The result of `faithfulness`: each method's score per metric with its interval and rank, the
per-image values, and the mean curves with their bands."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ...results import Result, figure, panel

#: metric -> direction (+1: higher is better); the compute module's METRICS says what each is
BETTER = {"deletion": -1, "insertion": 1, "road_morf": -1, "road_lerf": 1,
          "road_zero_morf": -1, "road_zero_lerf": 1, "average_drop": -1,
          "increase_in_confidence": 1, "infidelity": -1, "max_sensitivity": -1,
          "pointing_game": 1, "energy_in_mask": 1, "randomisation": -1}
TITLES = {"deletion": "deletion AUC", "insertion": "insertion AUC",
          "road_morf": "ROAD, most relevant first", "road_lerf": "ROAD, least relevant first",
          "road_zero_morf": "zero-filled, most relevant first",
          "road_zero_lerf": "zero-filled, least relevant first",
          "average_drop": "average drop %", "increase_in_confidence": "increase in confidence %",
          "infidelity": "infidelity", "max_sensitivity": "max-sensitivity",
          "pointing_game": "pointing game", "energy_in_mask": "energy in mask",
          "randomisation": "randomisation (rank corr.)"}
#: the metrics that measure faithfulness to the model (the verdict reads these)
FAITHFUL = ("deletion", "insertion", "road_morf", "road_lerf")


@dataclass
class FaithfulnessResult(Result):
    """Faithfulness of each attribution method over a dataset.

    Attributes:
        table: one row per method and metric: mean, low, high (bootstrap 95 % interval over
            images), images, better ("higher" / "lower"), rank (1: best among the methods).
        by_image: one row per image (dataset ``index``) and method, a column per metric.
        curves: one row per curve (deletion, insertion, road_morf, road_lerf), method and
            point ``x`` (the fraction of pixels removed or revealed): mean, low, high.
        params: the model, the data, the settings and how the pass ran.
    """

    kind = "faithfulness"
    about = ("Which map can I trust? Every method's map of each image's predicted class, "
             "scored by perturbing the image in the map's order and watching the model: "
             "deletion (lower is better) and insertion (higher) (Petsiuk et al. 2018), ROAD "
             "with noisy linear imputation, most relevant first (lower) and least relevant "
             "first (higher) (Rong et al. 2022), average drop and increase in confidence "
             "(Chattopadhay et al. 2018), infidelity and max-sensitivity (Yeh et al. 2019), the "
             "pointing game and energy in the object's mask, and the randomisation check "
             "(Adebayo et al. 2018: a map that still looks the same once the weights are "
             "random does not show the model). Bars are 95 % bootstrap intervals over images.")

    table: pd.DataFrame
    by_image: pd.DataFrame
    curves: pd.DataFrame
    params: dict[str, Any]

    def ranking(self, metric: str) -> pd.DataFrame:
        """The methods on one metric, best first (mean, interval, rank)."""
        from ...errors import unknown

        t = self.table[self.table.metric == metric]
        if t.empty:
            raise unknown("metric", metric, sorted(set(self.table.metric)))
        return t.sort_values(["rank", "method"]).reset_index(drop=True)

    def clearly_better(self, metric: str, a: str, b: str) -> bool:
        """Whether method `a` beats `b` on `metric` with disjoint 95 % intervals."""
        t = self.table[self.table.metric == metric].set_index("method")
        if BETTER[metric] > 0:
            return bool(t.loc[a, "low"] > t.loc[b, "high"])
        return bool(t.loc[a, "high"] < t.loc[b, "low"])

    def road_consistency(self) -> dict[str, float]:
        """ROAD's rank consistency (Rong et al. 2022, §3): the Spearman correlation, over the
        methods, of their ranks removing the most relevant pixels first (lower is better)
        and the least relevant first (higher is better), for each way of filling the removed
        pixels that was scored: ``"noisy linear"`` (``road_morf`` / ``road_lerf``) and
        ``"zero"`` (``road_zero_morf`` / ``road_zero_lerf``). 1: both orders rank the methods
        alike. The paper's claim: higher under noisy linear imputation than under a fixed
        value. Needs at least three methods."""
        out = {}
        means = self.table.pivot(index="method", columns="metric", values="mean")
        for name, (morf, lerf) in (("noisy linear", ("road_morf", "road_lerf")),
                                   ("zero", ("road_zero_morf", "road_zero_lerf"))):
            if morf in means and lerf in means and len(means) >= 3:
                a = means[morf].rank()  # lower is better: rank 1 best
                b = (-means[lerf]).rank()
                if a.std() > 0 and b.std() > 0:
                    out[name] = float(np.corrcoef(a, b)[0, 1])
        return out

    def verdict(self) -> list[str]:
        """Plain sentences: which maps this model's evidence supports."""
        lines = []
        t = self.table
        methods = list(dict.fromkeys(t.method))
        scored = [k for k in FAITHFUL if k in set(t.metric)]
        if scored:
            mean_rank = (t[t.metric.isin(scored)].groupby("method")["rank"].mean()
                         .reindex(methods).sort_values())
            top = list(mean_rank.index[:3])
            lines.append(f"Over {', '.join(TITLES[k] for k in scored)}, the maps that follow "
                         f"what this model uses best are {', '.join(top)} (mean rank "
                         + ", ".join(f"{mean_rank[m]:.1f}" for m in top) + f" of {len(methods)}).")
            if "random" in methods:
                beaten = [m for m in methods if m != "random" and any(
                    self.clearly_better(k, "random", m) for k in scored)]
                if beaten:
                    lines.append("A map of random noise does clearly better than "
                                 f"{', '.join(beaten)} on at least one of them: do not read "
                                 "those maps as what the model uses.")
                else:
                    lines.append("Every method does at least as well as a map of random "
                                 "noise on each of them.")
        rho = self.road_consistency()
        if len(rho) == 2:
            holds = rho["noisy linear"] > rho["zero"]
            lines.append(
                "ROAD's rank consistency (Spearman correlation of the methods' ranks removing "
                f"the most and the least relevant pixels first): {rho['noisy linear']:.2f} with "
                f"noisy linear imputation, {rho['zero']:.2f} filling with zeros: "
                + ("the orders agree better with imputation, as Rong et al. 2022 found."
                   if holds else "they do not agree better with imputation here, unlike "
                   "Rong et al. 2022's finding."))
        if "randomisation" in set(t.metric):
            r = t[t.metric == "randomisation"].set_index("method")["mean"]
            same = [m for m in methods if m != "random" and r.get(m, 0) > 0.5]
            if same:
                lines.append(f"The maps of {', '.join(same)} stay alike (rank correlation above "
                             "0.5) when every weight is randomised: they show the image more "
                             "than the model (Adebayo et al. 2018).")
        return lines

    def summary(self) -> list[str]:
        lines = [f"  {'metric':<28} best first (mean [95 % interval])"]
        for k in dict.fromkeys(self.table.metric):
            r = self.ranking(k)
            if r["images"].max() == 0:
                lines.append(f"  {TITLES[k]:<28} not measured (no masks in the data)")
                continue
            best = "; ".join(f"{row.method} {row.mean:.3g} [{row.low:.3g}, {row.high:.3g}]"
                             for row in r.head(3).itertuples())
            lines.append(f"  {TITLES[k]:<28} {best}")
        return lines + [f"  {line}" for line in self.verdict()]

    def info(self):
        return dict(self.params)

    def tables(self):
        return {"faithfulness": self.table, "by_image": self.by_image, "curves": self.curves}

    def figures(self):
        n = self.params.get("images", 0)
        # the answer first (which maps to trust, every metric ranked), then the curves
        out = [figure("each metric, methods best first",
                      [panel("ranking", "", kind="plot", caption=self.verdict())],
                      "bars: 95 % bootstrap intervals over images; the best method of "
                      "each metric on top")]
        kinds = list(dict.fromkeys(self.curves.curve)) if len(self.curves) else []
        if kinds:
            out.append(figure("mean curves", [panel(f"curve_{k}", TITLES[k], kind="plot")
                                              for k in kinds],
                              f"{n} images; bands: 95 % bootstrap intervals of the mean"))
        return out

    def pictures(self):
        from .figures import curves_figure, ranking_figure

        title = f"{self.params.get('model', 'model')} on {self.params.get('data', 'data')}"
        def curve(k):
            return lambda path: curves_figure(self.curves, k, TITLES[k].replace(" AUC", ""),
                                              path, title)
        pics = ({f"curve_{k}": curve(k) for k in dict.fromkeys(self.curves.curve)}
                if len(self.curves) else {})
        pics["ranking"] = lambda path: ranking_figure(self.table, TITLES, path, title)
        return pics

    def _repr_html_(self) -> str:
        t = self.table.pivot(index="method", columns="metric", values="mean")
        return t.to_html(float_format=lambda v: "" if np.isnan(v) else f"{v:.3g}")
