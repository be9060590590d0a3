"""What `correspondence` returns: every keypoint transfer, PCK per method and layer with
bootstrap intervals, and the pictures (PCK against depth, example pairs; drawn in `.figures`).
No torch here."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ...results import Result, figure, panel
from .figures import LABELS, examples_figure, pck_plot


def _interval(data: tuple[np.ndarray, ...], statistic, seed: int, n_resamples: int,
              level: float) -> tuple[float, float, float]:
    """``(value, low, high)``: `statistic` of `data` (per-pair arrays) and its percentile
    bootstrap interval, resampling whole pairs (keypoints of one pair are not independent)."""
    from scipy.stats import bootstrap

    value = float(statistic(*data))
    if len(data[0]) < 2:
        return value, value, value
    res = bootstrap(data, statistic, paired=True, vectorized=True, n_resamples=n_resamples,
                    confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(lo) and np.isfinite(hi)):  # every resample gave the same value
        return value, value, value
    return value, min(lo, value), max(hi, value)


def pck_interval(correct: np.ndarray, total: np.ndarray, seed: int = 0, n_resamples: int = 2000,
                 level: float = 0.95) -> tuple[float, float, float]:
    """PCK ``sum(correct) / sum(total)`` over pairs and its 95 % bootstrap interval over
    pairs: ``(pck, low, high)``."""
    data = (np.asarray(correct, float), np.asarray(total, float))
    return _interval(data, lambda c, t, axis=-1: c.sum(axis) / t.sum(axis), seed, n_resamples,
                     level)


@dataclass(eq=False)
class CorrespondenceResult(Result):
    """Keypoint transfers and their scores.

    ``transfers``: one row per (method, layer, pair, keypoint): the point in A, the true and
    the predicted point in B, the error in pixels, the PCK reference length and whether it is
    correct. ``layers``: one row per layer (depth, receptive field, stride, shape). ``pck``:
    per method and layer, PCK with a 95 % bootstrap interval over pairs. ``pck_table(alpha)``
    rescores at another threshold without running anything again. ``params``: the settings;
    ``skipped`` / ``dropped``: pairs and keypoints left out, by reason. The example pairs:
    ``example_pairs`` ``(E,)`` their pair indices, ``example_a`` / ``example_b`` ``(E, H, W,
    3)`` their images (uint8), ``example_titles``; ``examples`` zips them.
    """

    transfers: pd.DataFrame
    layers: pd.DataFrame
    params: dict[str, Any]
    skipped: dict[str, int]
    dropped: dict[str, int]
    example_pairs: np.ndarray | None = None
    example_a: np.ndarray | None = None
    example_b: np.ndarray | None = None
    example_titles: list[str] | None = None
    seed: int = 0
    alpha: float = field(init=False)
    pck: pd.DataFrame = field(init=False)
    feature_method: str = field(init=False)

    kind = "correspondence"

    def __post_init__(self):
        failed = self.transfers.error.isna()
        if failed.any():  # OpenCV refused a descriptor: not scored, counted
            self.dropped = dict(self.dropped)
            self.dropped["sift descriptor not computed"] = int(failed.sum())
            self.transfers = self.transfers[~failed].reset_index(drop=True)
        self.alpha = float(self.params["alpha"])
        self.pck = self.pck_table()
        self.feature_method = next((m for m in ("features", "features_grid")
                                    if m in set(self.pck.method)), "features")

    @staticmethod
    def example_fields(examples: list[tuple[int, np.ndarray, np.ndarray, str]]) -> dict:
        """The example fields from ``(pair, image A, image B, title)`` tuples."""
        if not examples:
            return {}
        return {"example_pairs": np.array([e[0] for e in examples]),
                "example_a": np.stack([e[1] for e in examples]),
                "example_b": np.stack([e[2] for e in examples]),
                "example_titles": [str(e[3]) for e in examples]}

    @property
    def examples(self) -> list[tuple[int, np.ndarray, np.ndarray, str]]:
        """The example pairs as ``(pair, image A, image B, title)``."""
        if self.example_pairs is None:
            return []
        titles = self.example_titles or [""] * len(self.example_pairs)
        return [(int(p), a, b, t) for p, a, b, t in zip(self.example_pairs, self.example_a,
                                                           self.example_b, titles)]

    def pck_table(self, alpha: float | None = None) -> pd.DataFrame:
        """PCK per method and layer at `alpha` (default: the run's)."""
        alpha = self.alpha if alpha is None else alpha
        t = self.transfers.assign(correct=self.transfers.error <= alpha * self.transfers.ref)
        rows = []
        for (method, layer), g in t.groupby(["method", "layer"], sort=False):
            per = g.groupby("pair").correct.agg(["sum", "count"])
            pck, lo, hi = pck_interval(per["sum"].to_numpy(), per["count"].to_numpy(), self.seed)
            rows.append({"method": method, "layer": layer, "pck": pck, "ci_low": lo, "ci_high": hi,
                         "correct": int(per["sum"].sum()), "keypoints": int(per["count"].sum()),
                         "pairs": len(per), "median_error_px": float(g.error.median())})
        out = pd.DataFrame(rows).merge(self.layers, on="layer", how="left")
        order = {m: k for k, m in enumerate(LABELS)}
        out = out.sort_values(["depth", "method"],
                              key=lambda s: s.map(order) if s.name == "method" else s)
        return out.reset_index(drop=True)[["method", "layer", "depth", "rf_size", "stride", "pck",
                                           "ci_low", "ci_high", "correct", "keypoints", "pairs",
                                           "median_error_px", "shape"]]

    def difference(self, a: str | None = None, b: str = "sift", alpha: float | None = None,
                   n_resamples: int = 2000) -> pd.DataFrame:
        """Per layer, ``PCK(a) - PCK(b)`` (default: the features minus SIFT) on the pairs both
        scored, with a *paired* 95 % bootstrap interval (the same resampled pairs for both, so
        the interval is much narrower than the two PCK intervals side by side)."""
        a = a or self.feature_method
        alpha = self.alpha if alpha is None else alpha
        t = self.transfers.assign(correct=self.transfers.error <= alpha * self.transfers.ref)
        rows = []
        for layer in self.layers.sort_values("depth").layer:
            per = [t[(t.method == m) & (t.layer == layer)].groupby("pair").correct
                   .agg(["sum", "count"]) for m in (a, b)]
            both = per[0].add_suffix("_a").join(per[1].add_suffix("_b"), how="inner")
            if both.empty:
                continue
            data = tuple(both[c].to_numpy(float) for c in ("sum_a", "count_a", "sum_b", "count_b"))
            d, lo, hi = _interval(data, lambda ca, na, cb, nb, axis=-1:
                                  ca.sum(axis) / na.sum(axis) - cb.sum(axis) / nb.sum(axis),
                                  self.seed, n_resamples, 0.95)
            rows.append({"layer": layer, "a": a, "b": b, "difference": d, "ci_low": lo,
                         "ci_high": hi, "pairs": len(both)})
        return pd.DataFrame(rows)

    def best(self, method: str | None = None) -> dict | None:
        """The row of the layer where `method` (default: the features) peaks (the shallowest
        of equal ones)."""
        method = method or self.feature_method
        t = self.pck[self.pck.method == method]
        return None if t.empty else t.loc[t.pck.idxmax()].to_dict()

    # -- Result ----------------------------------------------------------------------------
    def arrays(self):
        if self.example_pairs is None:
            return {}
        return {"example_pairs": self.example_pairs, "example_a": self.example_a,
                "example_b": self.example_b}

    def tables(self):
        return {"pck": self.pck, "transfers": self.transfers}

    def info(self):
        info: dict[str, Any] = {
            "what": "Keypoint transfer by nearest neighbour in each layer's feature space (Long, "
                    "Zhang & Darrell 2014). PCK is the share of keypoints of image A whose match "
                    f"in image B lands within {self.alpha:g}·max(h, w) px of the true point; "
                    "higher is better. Intervals: 95 % bootstrap over pairs.",
            "pairs": int(self.transfers.pair.nunique()), "pair_kind": self.params.get("pairs"),
            "keypoints": int(len(self.transfers[
                (self.transfers.method == self.feature_method)
                & (self.transfers.layer == self.layers.layer.iloc[0])])),
            "skipped_pairs": self.skipped, "dropped_keypoints": self.dropped}
        info.update({k: v for k, v in self.params.items() if k not in ("pairs",)})
        for method in LABELS:
            b = self.best(method)
            if b is not None:
                info[f"peak_{method}"] = (f"{b['layer']}: {b['pck']:.3f} "
                                          f"[{b['ci_low']:.3f}, {b['ci_high']:.3f}]")
        return info

    def summary(self) -> list[str]:
        """What the command prints: PCK per layer and method, and what was left out."""
        lines = [f"{r.layer:>16}  {r.method:<8}  PCK {r.pck:.3f}  [{r.ci_low:.3f}, "
                 f"{r.ci_high:.3f}]  ({r.correct}/{r.keypoints})" for r in self.pck.itertuples()]
        for what, counts in (("skipped pairs", self.skipped), ("dropped keypoints", self.dropped)):
            if counts:
                lines.append(f"{what}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
        return lines

    about = ("Do ConvNets learn correspondence? (Long, Zhang & Darrell 2014): for each keypoint of "
             "one image, the most similar feature of a layer in a second image shows where the "
             "network thinks the same point lies. PCK is the share of keypoints that land close "
             "to the true point (within alpha times the image size); raw pixels and SIFT, "
             "scored the same way, are the baselines. In the examples, green lines land right, "
             "red ones wrong.")

    def figures(self):
        pics = self.pictures()
        out = [figure("PCK by layer, with the baselines", [panel("pck_by_layer", kind="plot")])]
        for name in pics:
            if name.startswith("examples_"):
                out.append(figure(name.removeprefix("examples_").replace("_", " at ", 1),
                                  [panel(name, kind="plot")]))
        return out

    def pictures(self):
        pics = {"pck_by_layer": lambda path: pck_plot(self, path)}
        b = self.best()
        if b is not None and self.examples:
            for method in self.pck.method.unique():
                pics[f"examples_{method}_{b['layer']}"] = (
                    lambda path, m=method, layer=b["layer"]: examples_figure(self, m, layer, path))
        return pics
