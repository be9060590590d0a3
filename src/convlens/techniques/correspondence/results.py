"""What `correspondence` returns: every keypoint transfer, PCK per method and layer with
bootstrap intervals, and the pictures (PCK against depth, example pairs). No torch here."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ...results import Result

LABELS = {"features": "conv features (nearest neighbour)",
          "features_grid": "conv features, interpolated on the pixel grid",
          "pixels": "raw pixels (patch = receptive field)",
          "sift": "SIFT (descriptor = receptive field)"}
STYLES = {"features": dict(color="#1f77b4", marker="o", ls="-", lw=2),
          "features_grid": dict(color="#9467bd", marker="D", ls="-", lw=1.5),
          "pixels": dict(color="#7f7f7f", marker="s", ls="--", lw=1.5),
          "sift": dict(color="#ff7f0e", marker="^", ls=":", lw=1.5)}
RIGHT, WRONG = "#2ca02c", "#d62728"


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


class CorrespondenceResult(Result):
    """Keypoint transfers and their scores.

    ``transfers``: one row per (method, layer, pair, keypoint): the point in A, the true and
    the predicted point in B, the error in pixels, the PCK reference length and whether it is
    correct. ``pck``: per method and layer, PCK with a 95 % bootstrap interval over pairs.
    ``pck_table(alpha)`` rescores at another threshold without running anything again.
    """

    kind = "correspondence"

    def __init__(self, transfers: pd.DataFrame, layers: pd.DataFrame, params: dict[str, Any],
                 skipped: dict[str, int], dropped: dict[str, int], examples: list, seed: int = 0):
        failed = transfers.error.isna()
        if failed.any():  # OpenCV refused a descriptor: not scored, counted
            dropped = dict(dropped)
            dropped["sift descriptor not computed"] = int(failed.sum())
            transfers = transfers[~failed].reset_index(drop=True)
        self.transfers, self.layers, self.params = transfers, layers, params
        self.skipped, self.dropped, self.examples, self.seed = skipped, dropped, examples, seed
        self.alpha = float(params["alpha"])
        self.pck = self.pck_table()
        self.feature_method = next((m for m in ("features", "features_grid")
                                    if m in set(self.pck.method)), "features")

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
        out = out.sort_values(["depth", "method"], key=lambda s: s.map(order) if s.name == "method" else s)
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
        if not self.examples:
            return {}
        return {"example_pairs": np.array([e[0] for e in self.examples]),
                "example_a": np.stack([e[1] for e in self.examples]),
                "example_b": np.stack([e[2] for e in self.examples])}

    def tables(self):
        return {"pck": self.pck, "transfers": self.transfers}

    def info(self):
        info: dict[str, Any] = {
            "what": "Keypoint transfer by nearest neighbour in each layer's feature space (Long, "
                    "Zhang & Darrell 2014). PCK is the share of keypoints of image A whose match "
                    f"in image B lands within {self.alpha:g}·max(h, w) px of the true point; "
                    "higher is better. Intervals: 95 % bootstrap over pairs.",
            "pairs": int(self.transfers.pair.nunique()), "pair_kind": self.params.get("pairs"),
            "keypoints": int(len(self.transfers[(self.transfers.method == self.feature_method)
                                                & (self.transfers.layer == self.layers.layer.iloc[0])])),
            "skipped_pairs": self.skipped, "dropped_keypoints": self.dropped}
        info.update({k: v for k, v in self.params.items() if k not in ("pairs",)})
        for method in LABELS:
            b = self.best(method)
            if b is not None:
                info[f"peak_{method}"] = (f"{b['layer']}: {b['pck']:.3f} "
                                          f"[{b['ci_low']:.3f}, {b['ci_high']:.3f}]")
        return info

    about = ("Do ConvNets learn correspondence? (Long, Zhang & Darrell 2014): for each keypoint of "
             "one image, the most similar feature of a layer in a second image shows where the "
             "network thinks the same point lies. PCK is the share of keypoints that land close "
             "to the true point (within alpha times the image size); raw pixels and SIFT, "
             "scored the same way, are the baselines. In the examples, green lines land right, "
             "red ones wrong.")

    def figures(self):
        from ...results import figure, panel
        pics = self.pictures()
        out = [figure("PCK by layer, with the baselines", [panel("pck_by_layer", kind="plot")])]
        for name in pics:
            if name.startswith("examples_"):
                out.append(figure(name.removeprefix("examples_").replace("_", " at ", 1),
                                  [panel(name, kind="plot")]))
        return out

    def pictures(self):
        pics = {"pck_by_layer": self._plot}
        b = self.best()
        if b is not None and self.examples:
            for method in self.pck.method.unique():
                pics[f"examples_{method}_{b['layer']}"] = (
                    lambda path, m=method, layer=b["layer"]: self._examples(m, layer, path))
        return pics

    # -- drawing ---------------------------------------------------------------------------
    def _plot(self, path: str) -> None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        lay = self.layers.sort_values("depth")
        # at most 11 inches (1,210 px: the report's page width); many layers tilt their names
        width = max(6.5, 1.1 * len(lay) + 2.5)
        tilt = width > 11
        # under ~0.75 inch a layer (a ResNet's 20 convs and ReLUs), two-line names overlap
        # even tilted: one line each, steeper, in a taller figure
        crowded = (min(width, 11.0) - 2.5) / max(1, len(lay)) < 0.75
        height = 6.0 if crowded else 4.8 if tilt else 4.4
        fig, ax = plt.subplots(figsize=(min(width, 11.0), height), dpi=110)
        for method in LABELS:
            t = self.pck[self.pck.method == method].sort_values("depth")
            if t.empty:
                continue
            err = np.vstack([t.pck - t.ci_low, t.ci_high - t.pck])
            ax.errorbar(t.depth, t.pck, yerr=err, capsize=3, label=LABELS[method],
                        **STYLES[method])
        sep = " · " if crowded else "\n"
        ax.set_xticks(lay.depth, [f"{r.layer}{sep}RF {r.rf_size}, stride {r.stride}"
                                  for r in lay.itertuples()], fontsize=7 if crowded else 8,
                      rotation=60 if crowded else 30 if tilt else 0,
                      ha="right" if tilt else "center", rotation_mode="anchor" if tilt else None)
        ax.set_ylim(0, 1.03)
        ax.set_xlabel("layer, from input to output (receptive field and stride in pixels)")
        ax.set_ylabel(f"PCK (share within {self.alpha:g}·max(h, w))")
        ax.grid(axis="y", alpha=0.3)
        n_pairs = int(self.transfers.pair.nunique())
        data = f" of {self.params['data']}" if self.params.get("data") else ""
        ax.set_title(f"{self.params.get('model', '')}: keypoint transfer on {n_pairs} "
                     f"{self.params.get('pairs', '')} pairs{data}, {self.params.get('metric')} "
                     "nearest neighbour\nbars: 95 % bootstrap interval over pairs", fontsize=10)
        ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)

    def _examples(self, method: str, layer: str, path: str) -> None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D

        t = self.transfers[(self.transfers.method == method) & (self.transfers.layer == layer)]
        row = self.pck[(self.pck.method == method) & (self.pck.layer == layer)].iloc[0]
        n = len(self.examples)
        height = 3.1 * n + 0.9
        fig, axes = plt.subplots(n, 1, figsize=(6.4, height), dpi=110, squeeze=False)
        for ax, (pair, a, b, title) in zip(axes[:, 0], self.examples):
            h, w = a.shape[:2]
            gap = max(2, w // 16)
            canvas = np.full((max(h, b.shape[0]), w + gap + b.shape[1], 3), 255, np.uint8)
            canvas[:h, :w], canvas[:b.shape[0], w + gap:] = a, b
            ax.imshow(canvas, interpolation="nearest")
            g = t[t.pair == pair]
            ok = g.error <= self.alpha * g.ref
            for r, good in zip(g.itertuples(), ok):
                ax.plot([r.x_a - 0.5, r.x_pred - 0.5 + w + gap], [r.y_a - 0.5, r.y_pred - 0.5],
                        color=RIGHT if good else WRONG, lw=1.2, alpha=0.9)
            ax.scatter(g.x_a - 0.5, g.y_a - 0.5, s=14, c="white", edgecolors="black", lw=0.6)
            ax.scatter(g.x_b - 0.5 + w + gap, g.y_b - 0.5, s=36, marker="X", c="yellow",
                       edgecolors="black", linewidths=0.6)
            ax.set_title(f"{title[:70]}: {int(ok.sum())}/{len(g)} correct", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        handles = [Line2D([], [], color=RIGHT, label=f"correct (≤ {self.alpha:g}·max(h, w) px)"),
                   Line2D([], [], color=WRONG, label="wrong"),
                   Line2D([], [], ls="", marker="o", mfc="white", mec="black", label="keypoint in A"),
                   Line2D([], [], ls="", marker="X", mfc="yellow", mec="black",
                          label="true point in B")]
        fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
        fig.suptitle(f"{LABELS[method]} at {layer} (RF {row.rf_size} px, stride {row.stride}):\n"
                     f"image A left, B right; PCK {row.pck:.2f} over all {row.pairs} pairs",
                     fontsize=9)
        fig.tight_layout(rect=(0, 0.5 / height, 1, 1))  # room for the legend below
        fig.savefig(path)
        plt.close(fig)
