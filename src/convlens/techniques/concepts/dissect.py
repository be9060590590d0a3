"""`dissect`: network dissection over the user's data, in two streaming passes on the engine
(local or Ray; each checkpoints and resumes). The arithmetic is in `dissection`, the concepts
in `labels`."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ...engine import Reducer, item_order, pass_checkpoint, run_pass
from ...engine.settings import RunSettings, as_run
from ...errors import ConvlensError
from ...lens import default_layers, lens_and_data
from .dissection import DETECTOR_IOU, QUANTILE, IoUCounts, TopQuantile, detectors
from .labels import Vocabulary, concept_masks

WORK = ".convlens-dissect"


class Thresholds(Reducer):
    """Pass 1: each unit's top-`q` activation over the data (`TopQuantile` per layer)."""

    def __init__(self, layers: Sequence[str], n_items: int, q: float = QUANTILE):
        self.layers, self.n_items, self.q = list(layers), int(n_items), float(q)
        self.tq = {name: TopQuantile(self.n_items, self.q) for name in self.layers}

    def config(self) -> dict[str, Any]:
        return {"layers": self.layers, "n_items": self.n_items, "q": self.q}

    def summarize(self, layer: str, act: torch.Tensor) -> torch.Tensor:
        return act.detach().float().cpu()  # float32 copies: the pass may run in bf16

    def update(self, batch, acts, logits) -> None:
        for name in self.layers:
            a = acts[name]
            if a.dim() != 4:
                raise ConvlensError(f"layer {name!r} gives {tuple(a.shape)}: dissection needs "
                                    "spatial maps (N, C, H, W)")
            self.tq[name].update(a)

    def merge(self, other: "Thresholds") -> "Thresholds":
        for name in self.layers:
            self.tq[name].merge(other.tq[name])
        return self

    def spawn(self) -> "Thresholds":
        return Thresholds(**self.config())

    def to(self, device) -> "Thresholds":
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"config": self.config(), "tq": {k: v.state_dict() for k, v in self.tq.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state["tq"].items():
            self.tq[k].load_state_dict(v)

    def finalize(self) -> dict[str, torch.Tensor]:
        return {name: tq.threshold() for name, tq in self.tq.items()}


class Overlaps(Reducer):
    """Pass 2: each unit's thresholded, upsampled map against every concept's mask."""

    def __init__(self, thresholds: dict[str, torch.Tensor], vocab: Vocabulary,
                 classes: Sequence[str], value_range=(0.0, 1.0), mean=None, std=None):
        self.thresholds = {k: v.clone() for k, v in thresholds.items()}
        self.layers = list(self.thresholds)
        self.vocab, self.classes = vocab, list(classes)
        self.value_range, self.mean, self.std = tuple(value_range), mean, std
        self.counts = {name: IoUCounts(t) for name, t in self.thresholds.items()}
        self.images = 0
        self.without_masks = 0

    def config(self) -> dict[str, Any]:
        return {"thresholds": self.thresholds, "vocab": self.vocab, "classes": self.classes,
                "value_range": self.value_range, "mean": self.mean, "std": self.std}

    def summarize(self, layer: str, act: torch.Tensor) -> torch.Tensor:
        return act.detach().float()

    def _pixels(self, x: torch.Tensor) -> torch.Tensor:
        """The batch's pixels in [0, 1] (the colours are named on what the eye sees)."""
        x = x.detach().float().cpu()
        if self.mean is not None and self.std is not None:
            x = x * torch.tensor(self.std)[:, None, None] + torch.tensor(self.mean)[:, None, None]
        lo, hi = self.value_range
        return ((x - lo) / (hi - lo)).clamp(0, 1)

    def update(self, batch, acts, logits) -> None:
        n = len(batch)
        size = batch.images.shape[2:]
        masks = None
        if all("mask" in (m or {}) for m in batch.meta):
            masks = torch.stack([torch.as_tensor(m["mask"]) for m in batch.meta]).bool()
            if masks.shape[1:] != size:  # the items were resized for the model
                masks = F.interpolate(masks[:, None].float(), size=size, mode="nearest")[:, 0] > 0.5
        else:
            self.without_masks += n
        backgrounds = [(m or {}).get("background") for m in batch.meta]
        pixels = self._pixels(batch.images) if batch.images.shape[1] == 3 else None
        labels = concept_masks(self.vocab, batch.labels, masks, backgrounds, pixels,
                               self.classes)
        for name in self.layers:
            self.counts[name].update(acts[name], labels.to(acts[name].device))
        self.images += n

    def merge(self, other: "Overlaps") -> "Overlaps":
        for name in self.layers:
            self.counts[name].merge(other.counts[name])
        self.images += other.images
        self.without_masks += other.without_masks
        return self

    def spawn(self) -> "Overlaps":
        return Overlaps(**self.config())

    def to(self, device) -> "Overlaps":
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"counts": {k: vars(v) for k, v in self.counts.items()},
                "images": self.images, "without_masks": self.without_masks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state["counts"].items():
            vars(self.counts[k]).update(v)
        self.images, self.without_masks = state["images"], state["without_masks"]

    def finalize(self) -> dict[str, torch.Tensor]:
        return {name: c.iou() for name, c in self.counts.items()}


def spatial_layers(lens) -> list[str]:
    """The default layers (`lens.default_layers`: every ReLU) whose output is a spatial map
    (N, C, H, W), found with one forward pass of a blank image."""
    from ...hooks import capture

    names = default_layers(lens)
    x = torch.zeros(1, *lens.input_size)
    p = next(iter(lens.parameters()), None)
    if p is not None:
        x = x.to(p.device)
    with torch.no_grad(), capture(lens, names) as cap:
        lens(x)
    return [n for n in names if n in cap and cap[n].dim() == 4]


def data_backgrounds(data) -> list[str]:
    """The background kinds the data's items may name (``meta["background"]``): the builtin
    generators' lists, or a dataset's own ``backgrounds`` attribute."""
    own = getattr(data, "backgrounds", None)
    if own:
        return list(own)
    spec = str(getattr(data, "spec", "") or "")
    if spec.startswith("builtin:shapes"):
        from ...data.shapes.scene import BACKGROUNDS
        return list(BACKGROUNDS)
    if spec.startswith("builtin:stamps"):
        from ...data.stamps.pixels import BACKGROUNDS
        return list(BACKGROUNDS)
    return []


def dissect_layers(lens, data, layers: Sequence[str] | None = None, q: float = QUANTILE,
                   colours: bool = True, n: int | None = None,
                   indices: Sequence[int] | None = None, out: str | os.PathLike | None = None,
                   run: RunSettings | None = None) -> dict[str, Any]:
    """The two passes: ``{"thresholds": {layer: (U,)}, "iou": {layer: (U, C)}, "vocab",
    "detectors": {layer: detectors(...)}, "images", "without_masks", "seconds"}``."""
    run = as_run(run)
    lens, data = lens_and_data(lens, data)
    layers = list(layers) if layers else spatial_layers(lens)
    classes = list(getattr(data, "classes", None) or getattr(lens, "labels", None) or [])
    backgrounds = data_backgrounds(data)
    vocab = Vocabulary.build(classes, backgrounds, colours=colours)
    order = item_order(data, n, indices)
    if len(order) == 0:
        raise ConvlensError("no items to dissect")
    folder = Path(out) if out is not None else None
    first = Thresholds(layers, len(order), q)
    cp = (pass_checkpoint(lens, data, order, folder / WORK / "thresholds", run, first.config())
          if folder is not None else None)
    info1 = run_pass(lens, data, [first], order, run, "dissect: thresholds", cp)
    thresholds = first.finalize()
    second = Overlaps(thresholds, vocab, classes, getattr(lens, "value_range", (0.0, 1.0)),
                      list(getattr(lens, "mean", ())) or None,
                      list(getattr(lens, "std", ())) or None)
    cp2 = (pass_checkpoint(lens, data, order, folder / WORK / "overlaps", run,
                           {"q": q, "layers": layers, "concepts": vocab.names})
           if folder is not None else None)
    info2 = run_pass(lens, data, [second], order, run, "dissect: overlaps", cp2)
    iou = second.finalize()
    if folder is not None:
        shutil.rmtree(folder / WORK, ignore_errors=True)
    return {"thresholds": thresholds, "iou": iou, "vocab": vocab,
            "detectors": {k: detectors(v, vocab.names, vocab.categories, DETECTOR_IOU)
                          for k, v in iou.items()},
            "images": second.images, "without_masks": second.without_masks,
            "seconds": info1.seconds + info2.seconds}


def dissect(lens, data, layers: Sequence[str] | None = None, q: float = QUANTILE,
            rule: float = DETECTOR_IOU, colours: bool = True, n: int | None = None,
            indices: Sequence[int] | None = None, out: str | os.PathLike | None = None,
            run: RunSettings | None = None):
    """Network dissection (Bau et al. 2017, https://arxiv.org/abs/1704.05796; METHODS.md):
    what each unit of `layers` (default: every ReLU with a spatial map) detects among the
    concepts the data labels per pixel.

    Pass 1 finds each unit's threshold ``T_k``, the activation it exceeds on a share `q`
    (0.005) of the data's positions, exactly (`dissection.TopQuantile`); pass 2 upsamples
    each map to the image (bilinear), cuts it at ``T_k`` and counts its intersection and union
    with each concept's mask over the data: the object's mask named by its class, the
    background around it named by the generator's background (builtin data), and each pixel's
    colour name (Broden's 11, nearest prototype in CIELAB). A unit detects its best concept
    when ``IoU > rule`` (0.04). Both passes stream on the engine (``run``: local or Ray) and,
    with `out`, checkpoint there and resume after a kill.

    Example::

        res = dissect(lens, "builtin:shapes:test", n=2000)
        res.detectors                     # unique detectors per category and layer
        res.best("features.11")
    """
    import pandas as pd

    from .results import DissectionResult

    if not 0 < rule < 1:
        raise ConvlensError(f"rule must lie strictly between 0 and 1, got {rule!r}")
    lens, data = lens_and_data(lens, data)
    got = dissect_layers(lens, data, layers, q, colours, n, indices, out, run)
    vocab = got["vocab"]
    rows, det_rows, iou_rows = [], [], []
    for layer, iou in got["iou"].items():
        t = got["thresholds"][layer]
        best_iou, best = iou.max(1)
        for k in range(len(t)):
            c = vocab.names[int(best[k])]
            rows.append({"layer": layer, "unit": k, "threshold": float(t[k]), "concept": c,
                         "category": vocab.categories[c], "iou": float(best_iou[k]),
                         "detector": bool(best_iou[k] > rule)})
        units = [r for r in rows if r["layer"] == layer and r["detector"]]
        for cat in sorted(set(vocab.categories.values())):
            hits = [r for r in units if r["category"] == cat]
            det_rows.append({"layer": layer, "category": cat,
                             "unique": len({r["concept"] for r in hits}), "units": len(hits),
                             "layer_units": len(t)})
        nz = torch.nonzero(iou > 0)
        for k, c in nz.tolist():
            iou_rows.append({"layer": layer, "unit": k, "concept": vocab.names[c],
                             "iou": float(iou[k, c])})
    params = {"model": getattr(lens, "name", None), "data": getattr(data, "spec", None),
              "layers": list(got["iou"]), "q": q, "rule": rule, "concepts": vocab.names,
              "categories": vocab.categories, "images": got["images"],
              "without_masks": got["without_masks"], "seconds": round(got["seconds"], 3),
              "engine": as_run(run).engine}
    result = DissectionResult(
        pd.DataFrame(rows, columns=["layer", "unit", "threshold", "concept", "category", "iou",
                                    "detector"]),
        pd.DataFrame(det_rows, columns=["layer", "category", "unique", "units", "layer_units"]),
        pd.DataFrame(iou_rows, columns=["layer", "unit", "concept", "iou"]), params)
    if out is not None:
        result.save(out, lens=lens, pictures=False)
    return result
