"""`faithfulness`: which map can I trust? Every attribution method scored over a dataset.

A reducer of the dataset pass (`convlens.engine`): for each batch it draws every method's map
of each image's predicted class and scores it with the metrics of `metrics` and `robustness`
(deletion and insertion, ROAD most- and least-relevant first, average drop and increase in
confidence, infidelity, max-sensitivity), with the pointing game and the energy in the mask
where the data gives object masks, and the randomisation check (Adebayo et al. 2018): the rank
correlation of each map with the same method's map on the model with every weight layer
re-initialised. Per-image values are kept by dataset index, so `merge` is exact and the result
does not depend on batches, order or engine; the pass checkpoints, resumes and runs on Ray
like `scan`. `finalize` gives each method's mean per metric with a bootstrap 95 % interval
over images, the ranks, and the mean curves with their bands.
"""
from __future__ import annotations

import copy
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ...data.images import preprocess_mask
from ...engine import Reducer, item_order, pass_checkpoint, run_pass
from ...engine.settings import RunSettings, as_run
from ...errors import ConvlensError, unknown
from ...lens import lens_and_data
from ..gradients.localisation import energy_in_mask, pointing_game
from ..gradients.sanity import _reinit, randomizable_layers
from .metrics import average_drop_increase, bootstrap_ci, deletion, insertion, position_maps, road
from .results import FaithfulnessResult
from .robustness import infidelity, max_sensitivity

ENGINES = ("local", "ray")
WORK = ".convlens-faithfulness"
#: the maps scored by default: every attribution method of the image (the views of §5 whose
#: result is a map at the input's size), and two references
METHODS = ("saliency", "deconvnet", "guided_backprop", "grad_cam", "guided_grad_cam",
           "smoothgrad", "integrated_gradients", "grad_cam_plus_plus", "xgrad_cam",
           "hires_cam", "layer_cam", "score_cam", "ablation_cam", "eigen_cam",
           "input_x_gradient", "random")
#: metric -> (what it is, which direction is better: +1 higher, -1 lower)
METRICS: dict[str, tuple[str, int]] = {
    "deletion": ("area under the probability curve as the most relevant pixels are removed", -1),
    "insertion": ("area under the probability curve as the most relevant pixels are put back "
                  "into a blurred image", +1),
    "road_morf": ("ROAD, most relevant removed first (noisy linear imputation): mean "
                  "probability over the fractions", -1),
    "road_lerf": ("ROAD, least relevant removed first: mean probability", +1),
    "road_zero_morf": ("ROAD's fixed-value control, most relevant first: removed pixels "
                       "set to the data mean, no imputation (not in the default set)", -1),
    "road_zero_lerf": ("ROAD's fixed-value control, least relevant first (not in the "
                       "default set)", +1),
    "average_drop": ("average drop in confidence on the image times the map, %", -1),
    "increase_in_confidence": ("share of images whose confidence rises on the image times "
                               "the map, %", +1),
    "infidelity": ("infidelity: squared error of the map's prediction of the score change "
                   "under noise", -1),
    "max_sensitivity": ("max-sensitivity: largest relative change of the map under small "
                        "noise", -1),
    "pointing_game": ("share of images whose map peaks on the object's mask", +1),
    "energy_in_mask": ("share of the map's total on the object's mask", +1),
    "randomisation": ("rank correlation with the map of the weight-randomised model (a "
                      "faithful map changes: lower)", -1),
}
CURVES = ("deletion", "insertion", "road_morf", "road_lerf", "road_zero_morf", "road_zero_lerf")
#: what `faithfulness` scores when no metrics are named: all but ROAD's zero-filling control
DEFAULT_METRICS = tuple(k for k in METRICS if not k.startswith("road_zero"))


def input_x_gradient(lens, x: torch.Tensor, target) -> torch.Tensor:
    """Gradient times input (Shrikumar et al. 2016), summed over colour channels, signed:
    ``sum_c x_c dS/dx_c`` ``(N, H, W)``, the exact contribution of each pixel to a linear
    model's score (with the zero baseline of the normalised input)."""
    from ..gradients.gradients import grad_input, target_pass
    from ..gradients.targets import image_targets

    xb = grad_input(lens, x)
    p = target_pass(lens, xb, image_targets(lens, target, len(xb)))
    return (p.grad * xb.detach()).sum(1)


def _random_map(lens, x: torch.Tensor, target) -> torch.Tensor:
    """A map of uniform noise, seeded by the image's content (the same image, the same map)."""
    out = []
    for img in x:
        seed = int(torch.as_tensor(img).double().abs().sum().item() * 1e6) % (2 ** 31)
        g = torch.Generator().manual_seed(seed)
        out.append(torch.rand(img.shape[-2:], generator=g))
    return torch.stack(out)


def explainer(method: str) -> Callable:
    """``explain(lens, x, targets) -> maps (N, H, W)`` of a method named as its view."""
    if method == "input_x_gradient":
        return lambda lens, x, t: input_x_gradient(lens, x, t.tolist())
    if method == "random":
        return lambda lens, x, t: _random_map(lens, x, t)
    from ...techniques import all_views

    fn = next((v.load() for v in all_views() if v.name == method), None)
    if fn is None or method not in METHODS:
        raise unknown("method", method, METHODS)
    return lambda lens, x, t: fn(lens, x, target=[int(v) for v in t]).map


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two maps (ties ranked by their mean); 0 where either is
    constant (no order)."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a.flatten().numpy()), rankdata(b.flatten().numpy())
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


#: images the pass hands the reducer at a time: each costs tens of forward passes per method
#: (Score-CAM: one per channel, again for each noisy copy of max-sensitivity), so the progress
#: bar and the checkpoints come every few images; the rows of perturbed images are batched by
#: the run's batch size
PASS_BATCH = 8


def method_bar(total: int, enabled: bool):
    """A bar under the pass's: the batch's image-maps scored, the method at work beside it."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="  maps scored", unit="map", disable=not enabled,
                file=sys.stderr, dynamic_ncols=True, leave=False)


class Faithfulness(Reducer):
    """Per method and image: every metric's value, and the deletion, insertion and ROAD
    curves; kept with the dataset index of each image (state: tensors)."""

    layers: list[str] = []

    def __init__(self, methods: Sequence[str], metrics: Sequence[str], steps: int = 28,
                 fractions: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                 samples: int = 16, sensitivity_samples: int = 4, seed: int = 0,
                 batch_size: int = 64):
        self.methods, self.metrics = list(methods), list(metrics)
        self.steps, self.fractions = int(steps), [float(f) for f in fractions]
        self.samples, self.sensitivity_samples = int(samples), int(sensitivity_samples)
        self.seed, self.batch_size = int(seed), int(batch_size)
        self.indices: list[torch.Tensor] = []
        self.values: dict[str, dict[str, list[torch.Tensor]]] = {
            m: {k: [] for k in self.metrics} for m in self.methods}
        self.curves: dict[str, dict[str, list[torch.Tensor]]] = {
            m: {k: [] for k in CURVES if k in self.metrics} for m in self.methods}
        self.no_masks = 0
        self._lens = None
        self._random = None
        self._keys: list[int] = []
        self.progress = False  # a bar of the batch's maps scored (set by `faithfulness`)

    def config(self) -> dict[str, Any]:
        return {"methods": self.methods, "metrics": self.metrics, "steps": self.steps,
                "fractions": self.fractions, "samples": self.samples,
                "sensitivity_samples": self.sensitivity_samples, "seed": self.seed,
                "batch_size": self.batch_size}

    def spawn(self) -> "Faithfulness":
        return Faithfulness(**self.config())

    def attach(self, lens) -> None:
        self._lens = lens
        self._random = None

    def __getstate__(self):  # the models travel apart (Ray ships the model once per task)
        state = dict(vars(self))
        state["_lens"] = state["_random"] = None
        state["_keys"], state["progress"] = [], False
        return state

    def randomised(self):
        """The lens with every weight layer re-initialised (He-normal, seeded), made once."""
        if self._random is None:
            lens = copy.deepcopy(self._lens)
            model = getattr(lens, "model", lens)
            gen = torch.Generator().manual_seed(self.seed)
            for name in randomizable_layers(lens):
                _reinit(model.get_submodule(name), gen)
            self._random = lens
        return self._random

    def to(self, device) -> "Faithfulness":
        return self

    def update(self, batch, acts, logits) -> None:
        lens = self._lens
        if lens is None:
            raise ConvlensError("the Faithfulness reducer runs the model: pass it to the engine "
                                "(run_local / feed), which attaches the model first")
        x = batch.images.to(logits.device)
        t = logits.argmax(1).cpu()
        masks = None
        if any(k in self.metrics for k in ("pointing_game", "energy_in_mask")):
            if all("mask" in (m or {}) for m in batch.meta):
                masks = torch.stack([torch.from_numpy(preprocess_mask(m["mask"], x.shape[2:]))
                                     for m in batch.meta])  # the image's resize and crop
            else:
                self.no_masks += len(batch)
        self.indices.append(batch.indices.clone().long())
        self._keys = batch.indices.tolist()
        kw = {"targets": t, "batch_size": self.batch_size}
        with torch.enable_grad(), method_bar(len(self.methods) * len(x),
                                             self.progress) as bar:
            # the engine's pass runs without gradients; the maps need them
            self._score(lens, x, t, masks, kw, bar)

    def _score(self, lens, x: torch.Tensor, t: torch.Tensor, masks, kw: dict, bar) -> None:
        for method in self.methods:
            bar.set_postfix_str(method, refresh=True)
            self._score_method(method, lens, x, t, masks, kw)
            bar.update(len(x))

    def _score_method(self, method: str, lens, x: torch.Tensor, t: torch.Tensor, masks,
                      kw: dict) -> None:
        explain = explainer(method)
        maps = position_maps(explain(lens, x, t), x)
        vals, curves = self.values[method], self.curves[method]

        def put(key, value):
            if key in vals:
                vals[key].append(torch.as_tensor(value).double().reshape(-1).cpu())
        for key, fn in (("deletion", lambda: deletion(lens, x, maps, steps=self.steps, **kw)),
                        ("insertion", lambda: insertion(lens, x, maps, steps=self.steps,
                                                        **kw))):
            if key in vals:
                c = fn()
                put(key, c.score)
                curves[key].append(c.probability.float())
        for key, order, how in (("road_morf", "morf", "linear"),
                                ("road_lerf", "lerf", "linear"),
                                ("road_zero_morf", "morf", "zero"),
                                ("road_zero_lerf", "lerf", "zero")):
            if key in vals:
                got = self._each(lambda i, s: road(
                    lens, x[i:i + 1], maps[i:i + 1], targets=t[i:i + 1],
                    fractions=self.fractions, order=order, seed=s,
                    batch_size=self.batch_size, imputation=how))
                put(key, torch.cat([c.score for c in got]))
                curves[key].append(torch.cat([c.probability for c in got]).float())
        if "average_drop" in vals or "increase_in_confidence" in vals:
            d = average_drop_increase(lens, x, maps, **kw)
            put("average_drop", 100 * d.drop)
            put("increase_in_confidence", 100 * d.increased.double())
        if "infidelity" in vals:
            put("infidelity", torch.cat(self._each(lambda i, s: infidelity(
                lens, x[i:i + 1], maps[i:i + 1], targets=t[i:i + 1],
                n_samples=self.samples, normalise=True, seed=s,
                batch_size=self.batch_size))))
        if "max_sensitivity" in vals:
            def remap(lz, xz, tz, explain=explain):
                return position_maps(explain(lz, xz, tz), xz)
            put("max_sensitivity", torch.cat(self._each(lambda i, s: max_sensitivity(
                lens, x[i:i + 1], remap, targets=t[i:i + 1],
                n_samples=self.sensitivity_samples, seed=s,
                batch_size=self.batch_size))))
        for key, fn in (("pointing_game", pointing_game), ("energy_in_mask", energy_in_mask)):
            if key in vals:
                put(key, fn(maps.clamp_min(0), masks).double() if masks is not None
                    else torch.full((len(x),), float("nan")))
        if "randomisation" in vals:
            other = position_maps(explain(self.randomised(), x, t), x)
            put("randomisation", [_spearman(a, b) for a, b in zip(maps, other)])

    def _each(self, fn: Callable[[int, int], Any]) -> list:
        """`fn(i, seed)` for each image of the batch, its noise seeded by ``(seed, dataset
        index)``: the draws do not depend on which batch the image came in."""
        return [fn(i, self.seed * 1_000_003 + int(k)) for i, k in enumerate(self._keys)]

    def merge(self, other: "Faithfulness") -> "Faithfulness":
        self.indices += other.indices
        self.no_masks += other.no_masks
        for m in self.methods:
            for k in self.values[m]:
                self.values[m][k] += other.values[m][k]
            for k in self.curves[m]:
                self.curves[m][k] += other.curves[m][k]
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"config": self.config(), "indices": list(self.indices),
                "no_masks": self.no_masks,
                "values": {m: {k: list(v) for k, v in d.items()} for m, d in self.values.items()},
                "curves": {m: {k: list(v) for k, v in d.items()} for m, d in self.curves.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.indices, self.no_masks = list(state["indices"]), int(state["no_masks"])
        self.values = {m: {k: list(v) for k, v in d.items()} for m, d in state["values"].items()}
        self.curves = {m: {k: list(v) for k, v in d.items()} for m, d in state["curves"].items()}

    @property
    def n(self) -> int:
        return int(sum(len(i) for i in self.indices))

    def finalize(self, n_boot: int = 2000) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
        """``(table, per_image, curves)``: one row per method and metric (mean, 95 % bootstrap
        interval, rank among the methods, images); one row per image and method with every
        metric, by dataset index; one row per curve, method and point of the x axis (the
        fraction removed or revealed) with the mean and its pointwise bootstrap band."""
        idx = torch.cat(self.indices).numpy() if self.indices else np.zeros(0, np.int64)
        order = np.argsort(idx, kind="stable")
        rows, per_rows = [], []
        for m in self.methods:
            cols: dict[str, Any] = {"index": idx[order], "method": m}
            for k, parts in self.values[m].items():
                v = torch.cat(parts).numpy()[order] if parts else np.zeros(0)
                cols[k] = v
                ok = v[np.isfinite(v)]
                row = {"method": m, "metric": k, "mean": np.nan, "low": np.nan,
                       "high": np.nan, "images": int(len(ok))}
                if len(ok):
                    lo, hi = bootstrap_ci(torch.as_tensor(ok), n_boot=n_boot, seed=self.seed)
                    row.update(mean=float(ok.mean()), low=float(lo), high=float(hi))
                rows.append(row)
            per_rows.append(pd.DataFrame(cols))
        table = pd.DataFrame(rows, columns=["method", "metric", "mean", "low", "high", "images"])
        table["better"] = table.metric.map(lambda k: "higher" if METRICS[k][1] > 0 else "lower")
        table["rank"] = np.nan
        for k, group in table.groupby("metric"):
            table.loc[group.index, "rank"] = (-METRICS[k][1] * group["mean"]).rank(method="min")
        per_image = (pd.concat(per_rows, ignore_index=True) if per_rows
                     else pd.DataFrame(columns=["index", "method"]))
        curves = []
        for k in CURVES:
            if k not in self.metrics:
                continue
            x = (np.linspace(0, 1, self.steps + 1) if k in ("deletion", "insertion")
                 else np.asarray(self.fractions))
            for m in self.methods:
                parts = self.curves[m].get(k) or []
                if not parts:
                    continue
                c = torch.cat(parts).double()
                lo, hi = bootstrap_ci(c, n_boot=min(n_boot, 500), seed=self.seed)
                curves.append(pd.DataFrame({"curve": k, "method": m, "x": x,
                                            "mean": c.mean(0).numpy(), "low": lo.numpy(),
                                            "high": hi.numpy()}))
        curves_table = (pd.concat(curves, ignore_index=True) if curves else
                        pd.DataFrame(columns=["curve", "method", "x", "mean", "low", "high"]))
        return table, per_image, curves_table


def faithfulness(lens, data, methods: Sequence[str] | None = None,
                 metrics: Sequence[str] | None = None, steps: int = 28,
                 fractions: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                 samples: int = 16, sensitivity_samples: int = 4, seed: int = 0,
                 n_boot: int = 2000, out: str | os.PathLike | None = None,
                 n: int | None = None, indices: Sequence[int] | None = None,
                 run: RunSettings | None = None) -> FaithfulnessResult:
    """Which map can I trust: every attribution method scored by every faithfulness metric,
    streamed over a dataset (METHODS.md, "Faithfulness").

    Each image's map of its predicted class, by each of `methods` (default `METHODS`: every
    attribution method convlens has, the CAM family, gradient times input, and a map of
    uniform noise as the floor), is scored by each of `metrics` (default `DEFAULT_METRICS`:
    every one of `METRICS` but ROAD's zero-filling control ``road_zero_morf`` /
    ``road_zero_lerf``, which `FaithfulnessResult.road_consistency` compares with ROAD):
    deletion and insertion (Petsiuk et al. 2018, `steps` steps), ROAD most- and least-
    relevant first with noisy linear imputation (Rong et al. 2022, at `fractions`), average
    drop and increase in confidence (Chattopadhay et al. 2018), infidelity (`samples` noise
    draws) and max-sensitivity (`sensitivity_samples` draws; Yeh et al. 2019), the pointing
    game and the energy in the mask where the data's items carry a ``mask`` (else NaN and
    counted), and the randomisation check (Adebayo et al. 2018): the Spearman correlation of
    the map with the method's map on the model with all its weight layers re-initialised.
    Each mean has a bootstrap 95 % interval over images (`n_boot` resamples, `seed`).

    Args:
        lens: the model. data: a dataset or a data spec (``"builtin:stamps:test"``).
        out: a folder: the pass checkpoints into ``out/.convlens-faithfulness`` and resumes
            after a kill (``run.resume``); the result is saved there (without pictures).
        n, indices: the first `n` items, or these dataset indices (default all).
        run: how the pass runs (`convlens.RunSettings`: batch size, progress, the
            ``"local"`` or ``"ray"`` engine, ...). The batch size is the forward passes' rows
            of perturbed images; the pass takes at most `PASS_BATCH` (8) images at a time, so
            its bar moves and it checkpoints every few images (each image costs tens of
            forward passes per method; all 16 methods on ResNet-18 at 224 px: about 5 CPU
            minutes an image, Score-CAM half of it). A second bar counts the maps scored.

    Example::

        res = faithfulness(lens, "builtin:stamps:test", n=200,
                           methods=["saliency", "grad_cam", "random"])
        res.ranking("deletion")
    """
    run = as_run(run)
    methods = list(METHODS if methods is None else methods)
    metrics = list(DEFAULT_METRICS if metrics is None else metrics)
    if not methods or not metrics:
        raise ConvlensError("give at least one method and one metric")
    for m in methods:
        if m not in METHODS:
            raise unknown("method", str(m), METHODS)
    for k in metrics:
        if k not in METRICS:
            raise unknown("metric", str(k), list(METRICS))
    if run.engine not in ENGINES:
        raise unknown("engine", str(run.engine), ENGINES)
    for name, v in (("steps", steps), ("samples", samples),
                    ("sensitivity_samples", sensitivity_samples)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConvlensError(f"{name} must be a positive integer, got {v!r}")
    lens, data = lens_and_data(lens, data)
    spec = getattr(data, "spec", None)
    order = item_order(data, n, indices)
    reducer = Faithfulness(methods, metrics, steps, fractions, samples, sensitivity_samples,
                           seed, batch_size=max(8, run.batch_size))
    reducer.progress = run.progress and run.engine == "local"
    run = run.but(batch_size=min(run.batch_size, PASS_BATCH))
    folder = Path(out) if out is not None else None
    checkpoint = (pass_checkpoint(lens, data, order, folder / WORK, run, reducer.config())
                  if folder is not None else None)
    info = run_pass(lens, data, [reducer], order, run,
                    f"faithfulness {getattr(lens, 'name', 'model')}", checkpoint)
    if reducer.n == 0:
        raise ConvlensError("no image could be read: nothing to score")
    table, per_image, curves = reducer.finalize(n_boot)
    params = {"model": getattr(lens, "name", None), "data": spec, "methods": methods,
              "metrics": metrics, "steps": steps, "fractions": list(fractions),
              "samples": samples, "sensitivity_samples": sensitivity_samples, "seed": seed,
              "n_boot": n_boot, "images": reducer.n, "without_masks": reducer.no_masks,
              "skipped": info.skipped, "engine": run.engine, "resumed_from": info.resumed_from,
              "seconds": round(info.seconds, 3),
              "images_per_s": round((info.seen - info.resumed_from) / info.seconds, 2)
              if info.seconds > 0 else None}
    result = FaithfulnessResult(table, per_image, curves, params)
    if checkpoint is not None:
        checkpoint.remove()
        shutil.rmtree(folder / WORK, ignore_errors=True)
        result.save(folder, lens=lens, pictures=False)
    return result
