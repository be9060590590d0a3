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
