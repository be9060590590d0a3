"""`DissectionResult`: what network dissection found, per unit and per layer (never torch)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ...results import Result, figure, panel, safe_name


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
        top: one row per layer, unit and rank: each unit's top items by max activation
            (``item``: the dataset index, ``activation``).
        examples: the units drawn (the highest IoUs per layer), one row per unit and rank:
            ``layer, unit, concept, iou, rank, item, activation, image`` (the row of
            `example_images`); row r's unit region and concept mask are ``example_regions[r]``
            and ``example_masks[r]`` ``(H, W)`` bool.
        example_images: ``(M, H, W, 3)`` uint8, the re-loaded items as the model saw them.
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
    top: pd.DataFrame | None = None
    examples: pd.DataFrame | None = None
    example_images: np.ndarray | None = None
    example_regions: np.ndarray | None = None
    example_masks: np.ndarray | None = None

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
        out = {"units": self.units, "detectors": self.detectors, "iou": self.iou}
        if self.top is not None:
            out["top"] = self.top
        if self.examples is not None:
            out["examples"] = self.examples
        return out

    def arrays(self):
        out = {}
        for name in ("example_images", "example_regions", "example_masks"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    def _shown(self) -> list[tuple[str, int, pd.DataFrame]]:
        """The units drawn, in order: ``(layer, unit, their rows of examples)``."""
        if self.examples is None or self.example_images is None or not len(self.examples):
            return []
        ex = self.examples.reset_index(drop=True)  # row r: region and mask r
        return [(layer, int(unit), g) for (layer, unit), g in
                ex.groupby(["layer", "unit"], sort=False)]

    def figures(self):
        images, bare = self.params.get("images", 0), self.params.get("without_masks", 0)
        figs = [figure("unique detectors per category, by layer",
                       [panel("detectors", "", kind="plot")],
                       f"IoU above {self.params.get('rule', 0.04)}; {images} images"
                       + (f"; {bare} of them without an object mask, so without object or "
                          "background concepts (their colours count)" if bare else "")),
                figure("the units of highest IoU", [panel("best", "", kind="plot")],
                       "each unit's best concept")]
        shown = self._shown()
        for j, layer in enumerate(dict.fromkeys(s[0] for s in shown)):
            panels = [panel(f"top_{safe_name(lay)}_{u}",
                            f"{lay} unit {u}: {g.concept.iloc[0]} (IoU {g.iou.iloc[0]:.2f})",
                            kind="image") for lay, u, g in shown if lay == layer]
            figs.append(figure(  # the key once, under the first layer's units
                f"{layer}: each unit's top images", panels, "" if j else
                f"The {self.params.get('top', 5)} of {self.params.get('images', 0)} images "
                "where the unit's max activation is highest, best first. Bright: where its "
                "upsampled map reaches its threshold T_k (dimmed elsewhere); cyan outline: "
                "its concept's mask in that image. The units of highest IoU of each layer."))
        return figs

    def pictures(self):
        from .figures import best_units_figure, detectors_figure, unit_strip

        title = f"{self.params.get('model', 'model')} on {self.params.get('data', 'data')}"
        pics = {"detectors": lambda path: detectors_figure(self.detectors, self.units, path,
                                                           title),
                "best": lambda path: best_units_figure(self.units, path, title)}
        for layer, u, g in self._shown():
            rows = g.index.to_numpy()
            pics[f"top_{safe_name(layer)}_{u}"] = lambda path, rows=rows, g=g: unit_strip(
                self.example_images[g.image.to_numpy()], self.example_regions[rows],
                self.example_masks[rows], path)
        return pics


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
            up = sig[sig.score > sig.random_score]
            down = sig[sig.score <= sig.random_score]
            text = "; ".join(part for part in (
                "raised by " + ", ".join(f"{r.concept}@{r.layer} {r.score:.2f}"
                                         for r in up.itertuples()) if len(up) else "",
                "lowered by " + ", ".join(f"{r.concept}@{r.layer} {r.score:.2f}"
                                          for r in down.itertuples()) if len(down) else "")
                if part)
            lines.append(f"  class {name}: " + (text or "no significant concept"))
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
