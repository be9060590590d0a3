"""`DissectionResult`: what network dissection found, per unit and per layer (never torch)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from ...results import Result, figure, panel


@dataclass
class DissectionResult(Result):
    """Network dissection of some layers over a dataset (see `dissect`).

    Attributes:
        units: one row per layer and unit: ``layer, unit, threshold`` (its top-q activation),
            ``concept, category, iou`` (its best concept), ``detector`` (IoU above the rule).
        detectors: one row per layer and category: ``unique`` (distinct concepts detected by
            at least one unit), ``units`` (detector units), ``layer_units``.
        iou: one row per layer, unit and concept with ``iou > 0``.
        params: the model, the data, q, the rule, the concepts and how the passes ran.
    """

    kind = "dissect"
    about = ("What do the units mean? Network dissection (Bau et al. 2017): each unit's map, "
             "upsampled and cut at the activation it exceeds on 0.5 % of the data's pixels, "
             "against every concept the data labels per pixel (the object's mask by class, "
             "the background around it, colour names); a unit detects its best concept when "
             "the intersection over union passes 0.04.")

    units: pd.DataFrame
    detectors: pd.DataFrame
    iou: pd.DataFrame
    params: dict[str, Any]

    def best(self, layer: str | None = None, k: int = 10) -> pd.DataFrame:
        """The `k` units of highest IoU (of one layer, or all)."""
        u = self.units if layer is None else self.units[self.units.layer == layer]
        return u.sort_values("iou", ascending=False).head(k).reset_index(drop=True)

    def summary(self) -> list[str]:
        lines = [f"  {'layer':<16} units  detectors  unique concepts by category"]
        for layer, g in self.units.groupby("layer", sort=False):
            d = self.detectors[self.detectors.layer == layer]
            cats = ", ".join(f"{r.category} {r.unique}" for r in d.itertuples()) or "none"
            lines.append(f"  {layer:<16} {len(g):>5}  {int(g.detector.sum()):>9}  {cats}")
        return lines

    def info(self):
        return dict(self.params)

    def tables(self):
        return {"units": self.units, "detectors": self.detectors, "iou": self.iou}

    def figures(self):
        return [figure("unique detectors per category, by layer",
                       [panel("detectors", "", kind="plot")],
                       f"IoU above {self.params.get('rule', 0.04)}; "
                       f"{self.params.get('images', 0)} images"),
                figure("the units of highest IoU", [panel("best", "", kind="plot")],
                       "each unit's best concept")]

    def pictures(self):
        from .figures import best_units_figure, detectors_figure

        title = f"{self.params.get('model', 'model')} on {self.params.get('data', 'data')}"
        return {"detectors": lambda path: detectors_figure(self.detectors, self.units, path,
                                                           title),
                "best": lambda path: best_units_figure(self.units, path, title)}


@dataclass
class TcavResult(Result):
    """TCAV scores (see `tcav`): ``table`` one row per concept, layer and class: ``score``
    (mean over runs), ``std``, ``p`` (t-test against random CAVs), ``significant``
    (Bonferroni), ``random_score``, ``cav_accuracy`` (held-out), ``images``."""

    kind = "tcav"
    about = ("How much does each class's score depend on a human concept? TCAV (Kim et al. "
             "2018): a concept's activation vector separates its example images from random "
             "ones at a layer; the score is the share of the class's images whose class score "
             "grows along it. Grey bars: not significantly different from random vectors.")

    table: pd.DataFrame
    params: dict[str, Any]

    def summary(self) -> list[str]:
        t = self.table
        lines = []
        for (cls, name), g in t.groupby(["class", "class_name"], sort=True):
            sig = g[g.significant].sort_values("score", ascending=False)
            lines.append(f"  class {name}: " + (", ".join(
                f"{r.concept}@{r.layer} {r.score:.2f}" for r in sig.itertuples())
                or "no significant concept"))
        return lines

    def info(self):
        return dict(self.params)

    def tables(self):
        return {"tcav": self.table}

    def figures(self):
        return [figure("TCAV scores per class", [panel("tcav", "", kind="plot")],
                       f"{self.params.get('runs', 0)} runs against random sets; grey: not "
                       f"significant (alpha {self.params.get('alpha', 0.05)}, Bonferroni)")]

    def pictures(self):
        from .figures import tcav_figure

        title = f"{self.params.get('model', 'model')} on {self.params.get('data', 'data')}"
        return {"tcav": lambda path: tcav_figure(self.table, path, title)}
