"""`dissect`: network dissection over the user's data, in two streaming passes on the engine
(local or Ray; each checkpoints and resumes). The arithmetic is in `dissection`, the concepts
in `labels`."""
from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch

from ...data.files import BadMaskWarning
from ...data.images import preprocess_mask
from ...engine import Reducer, item_order, pass_checkpoint, run_pass
from ...engine.settings import RunSettings, as_run
from ...errors import ConvlensError
from ...lens import Lens, default_layers, lens_and_data
from .bilinear import Codes
from .dissection import DETECTOR_IOU, QUANTILE, IoUCounts, TopQuantile, detectors
from .examples import (
    MOST,
    SHOW,
    TOP,
    TopItems,
    choose_units,
    examples_table,
    top_table,
    unit_examples,
)
from .labels import Vocabulary, concept_codes, concept_masks

WORK = ".convlens-dissect"


class Thresholds(Reducer):
    """Pass 1: each unit's top-`q` activation over the data (`TopQuantile` per layer)."""

    needs_logits = False

    def __init__(self, layers: Sequence[str], n_items: int, q: float = QUANTILE):
        self.layers, self.n_items, self.q = list(layers), int(n_items), float(q)
        self.tq = {name: TopQuantile(self.n_items, self.q) for name in self.layers}

    def config(self) -> dict[str, Any]:
        return {"layers": self.layers, "n_items": self.n_items, "q": self.q}

    def summarize(self, layer: str, act: torch.Tensor):
        """In the forward hook (before a later in-place op): the batch's values per unit
        (`TopQuantile.candidates`, float32 on the CPU: the pass may run in bf16)."""
        a = act.detach()
        if a.dim() != 4:
            return a  # `update` says why
        top, seen, per_item = self.tq[layer].candidates(a.float())
        return top.cpu(), seen, per_item

    def update(self, batch, acts, logits) -> None:
        for name in self.layers:
            a = acts[name]
            if isinstance(a, tuple):
                self.tq[name].update_candidates(*a)
                continue
            if a.dim() != 4:
                raise ConvlensError(f"layer {name!r} gives {tuple(a.shape)}: dissection needs "
                                    "spatial maps (N, C, H, W)")
            self.tq[name].update(a.float().cpu())

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

    needs_logits = False

    def __init__(self, thresholds: dict[str, torch.Tensor], vocab: Vocabulary,
                 classes: Sequence[str], value_range=(0.0, 1.0), mean=None, std=None,
                 top: int = TOP):
        self.thresholds = {k: v.clone() for k, v in thresholds.items()}
        self.layers = list(self.thresholds)
        self.vocab, self.classes = vocab, list(classes)
        self.value_range, self.mean, self.std = tuple(value_range), mean, std
        self.counts = {name: IoUCounts(t) for name, t in self.thresholds.items()}
        self.top_k = int(top)  # each unit's top items by max activation, for the figure
        self.top = {name: TopItems(self.top_k) for name in self.thresholds}
        self.images = 0
        self.without_masks = 0
        self.bad_masks = 0  # mask files that could not be used (the concept taken as absent)

    def config(self) -> dict[str, Any]:
        return {"thresholds": self.thresholds, "vocab": self.vocab, "classes": self.classes,
                "value_range": self.value_range, "mean": self.mean, "std": self.std,
                "top": self.top_k}

    def begin(self, batch) -> None:
        """The batch's concepts, before its forward pass: `summarize` counts each layer in
        its forward hook, while its maps are fresh (and before a later in-place op)."""
        codes, table = self.concepts(batch, codes=True)
        self._batch = (codes, table, {})  # codes per device (`bilinear.Codes`)

    def _codes(self, device) -> tuple[Codes, torch.Tensor]:
        codes, table, moved = self._batch
        if device not in moved:  # the layers of one size share its tile layout
            moved[device] = Codes(codes.to(device), len(table))
        return moved[device], table

    def summarize(self, layer: str, act: torch.Tensor):
        """``(counts (U, K), max per map (N, U))`` of the batch (`IoUCounts.above`); the
        activation itself where no batch began (fed by hand) or where it is not the layer's
        thresholded map: a module run several times per forward counts with its last call
        (`engine.local.feed`), and the first batch shows it every call (a ResNet bottleneck's
        ReLU: 64 units twice, then 256). `update` counts it, or says why it cannot."""
        a = act.detach().float()
        if (getattr(self, "_batch", None) is None or a.dim() != 4
                or a.shape[1] != len(self.thresholds[layer])):
            return a
        return self._count(layer, a)

    def _count(self, layer: str, a: torch.Tensor):
        if a.dim() != 4:
            raise ConvlensError(f"layer {layer!r} gives {tuple(a.shape)}: dissection needs "
                                "spatial maps (N, C, H, W)")
        rows = a.amax(3) if a.shape[3] >= 16 else None
        peak = a.amax((2, 3)) if rows is None else rows.amax(2)
        hint = peak if rows is None else rows
        return self.counts[layer].above(a, self._codes(a.device)[0], hint), peak

    def _pixels(self, x: torch.Tensor) -> torch.Tensor:
        """The batch's pixels in [0, 1] (the colours are named on what the eye sees)."""
        x = given = x.detach().float().cpu()
        if self.mean is not None and self.std is not None:
            x = x * torch.tensor(self.std)[:, None, None]
            x += torch.tensor(self.mean)[:, None, None]
        lo, hi = self.value_range
        if (lo, hi) != (0, 1):  # (x - 0) / 1 is x
            x = (x - lo) / (hi - lo)
        return x.clamp(0, 1) if x is given else x.clamp_(0, 1)

    def concepts(self, batch, codes: bool = False):
        """The batch's concept masks ``(N, C, H, W)`` at the model's input size. The items'
        masks (of the image as loaded) go through the image's preprocessing geometry
        (`preprocess_mask`: shorter side resized, centre crop, nearest neighbour); an item
        without an object mask has no object or texture concept. `codes`: the same as
        ``(codes (N, H, W), table (K, C))`` (`labels.concept_codes`)."""
        size = tuple(batch.images.shape[2:])
        meta = [m or {} for m in batch.meta]

        def fit(m) -> torch.Tensor:
            return torch.from_numpy(preprocess_mask(m, size))

        has = [m.get("mask") is not None for m in meta]
        masks = (torch.stack([fit(m["mask"]) if h else torch.zeros(size, dtype=torch.bool)
                              for m, h in zip(meta, has)]) if any(has) else None)
        backgrounds = [m.get("background") if h else None for m, h in zip(meta, has)]
        pixels = self._pixels(batch.images) if batch.images.shape[1] == 3 else None
        own = [{k: fit(v) for k, v in (m.get("concept_masks") or {}).items()} for m in meta]
        make = concept_codes if codes else concept_masks
        return make(self.vocab, batch.labels, masks, backgrounds, pixels, self.classes, own,
                    size=size if self.vocab.own else None)

    def update(self, batch, acts, logits) -> None:
        n = len(batch)
        self.without_masks += sum((m or {}).get("mask") is None for m in batch.meta)
        for m in batch.meta:
            for why in (m or {}).get("mask_errors") or ():
                warnings.warn(f"{why}: taken as absent", BadMaskWarning, stacklevel=2)
                self.bad_masks += 1
        if getattr(self, "_batch", None) is None:  # activations given by hand
            self.begin(batch)
        for name in self.layers:
            got = acts[name]
            if isinstance(got, torch.Tensor):
                got = self._count(name, got.detach().float())
            hist, peak = got
            codes, table = self._codes(hist.device)
            self.counts[name].add(hist, codes, table)
            self.top[name].update(peak, batch.indices)
        self._batch = None
        self.images += n

    def merge(self, other: "Overlaps") -> "Overlaps":
        for name in self.layers:
            self.counts[name].merge(other.counts[name])
            self.top[name].merge(other.top[name])
        self.images += other.images
        self.without_masks += other.without_masks
        self.bad_masks += other.bad_masks
        return self

    def spawn(self) -> "Overlaps":
        return Overlaps(**self.config())

    def to(self, device) -> "Overlaps":
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"counts": {k: vars(v) for k, v in self.counts.items()},
                "top": {k: v.state_dict() for k, v in self.top.items()},
                "images": self.images, "without_masks": self.without_masks,
                "bad_masks": self.bad_masks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state["counts"].items():
            vars(self.counts[k]).update(v)
        for k, v in state["top"].items():
            self.top[k].load_state_dict(v)
        self.images, self.without_masks = state["images"], state["without_masks"]
        self.bad_masks = state.get("bad_masks", 0)

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
    """The background kinds the data's items may name (``meta["background"]``): the dataset's
    ``backgrounds`` attribute (the builtin generators' lists; a manifest's ``background``
    column's values)."""
    return list(getattr(data, "backgrounds", None) or [])


class _Rotate:
    """A forward hook: the layer's output ``a (N, U, h, w)`` -> ``Q a`` at every position, with
    ``Q`` a random orthogonal ``U x U`` matrix drawn from `seed` (on first use)."""

    def __init__(self, seed: int):
        self.seed, self.q = int(seed), None

    def __call__(self, module, inputs, out):
        if self.q is None or self.q.shape[0] != out.shape[1]:
            self.q = random_rotation(out.shape[1], self.seed)
        return torch.einsum("uc,nchw->nuhw", self.q.to(out.device, out.dtype), out)


def random_rotation(units: int, seed: int = 0) -> torch.Tensor:
    """A ``units x units`` orthogonal matrix drawn uniformly (Haar): the QR decomposition of a
    Gaussian matrix with the signs of R's diagonal moved into Q (Mezzadri 2007)."""
    g = torch.Generator().manual_seed(int(seed))
    q, r = torch.linalg.qr(torch.randn(units, units, generator=g, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float()


def rotated(lens, layer: str, seed: int = 0):
    """A copy of `lens` whose `layer` gives its units rotated by a random orthogonal matrix
    (Bau et al. 2017, §3.2): the same information (``Q`` is invertible; distances and norms
    are kept) spread over new axes. Dissect the copy at `layer` to ask whether the units' axes
    matter: the copy's later layers see the rotated maps, so dissect it at `layer` only. The
    model given is left as it is.

    Example::

        base = dissect(lens, data, layers=["features.11"])
        turned = dissect(rotated(lens, "features.11"), data, layers=["features.11"])
    """
    import copy

    from ...hooks import find_module, model_of

    if not isinstance(lens, Lens):
        raise ConvlensError(f"rotated() takes a convlens.Lens, got {type(lens).__name__}")
    twin = copy.deepcopy(lens)
    find_module(model_of(twin), layer).register_forward_hook(_Rotate(seed))
    twin.name = f"{getattr(lens, 'name', None) or 'model'} ({layer} rotated, seed {seed})"
    return twin


def data_concepts(data) -> list[str]:
    """The data's own concepts, ``"<category>:<name>"`` (its ``concepts`` attribute: a
    manifest's ``mask:<category>:<name>`` columns), whose masks its items carry in
    ``meta["concept_masks"]``."""
    return [str(c) for c in (getattr(data, "concepts", None) or [])]


def dissect_layers(lens, data, layers: Sequence[str] | None = None, q: float = QUANTILE,
                   colours: bool = True, n: int | None = None,
                   indices: Sequence[int] | None = None, out: str | os.PathLike | None = None,
                   run: RunSettings | None = None, top: int = TOP, show: int = SHOW,
                   most: int = MOST) -> dict[str, Any]:
    """The two passes: ``{"thresholds": {layer: (U,)}, "iou": {layer: (U, C)}, "vocab",
    "detectors": {layer: detectors(...)}, "top": {layer: TopItems} (each unit's `top` items
    by max activation, kept in the second pass), "examples" (`unit_examples` of the `show`
    units of highest IoU per layer, at most `most`: their top items re-loaded with region and
    concept mask), "images", "without_masks", "seconds", "resumed_from"}``."""
    run = as_run(run)
    lens, data = lens_and_data(lens, data)
    layers = list(layers) if layers else spatial_layers(lens)
    classes = list(getattr(data, "classes", None) or getattr(lens, "labels", None) or [])
    backgrounds = data_backgrounds(data)
    vocab = Vocabulary.build(classes, backgrounds, colours=colours, concepts=data_concepts(data))
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
                      list(getattr(lens, "std", ())) or None, top)
    cp2 = (pass_checkpoint(lens, data, order, folder / WORK / "overlaps", run,
                           {"q": q, "layers": layers, "concepts": vocab.names, "top": top})
           if folder is not None else None)
    info2 = run_pass(lens, data, [second], order, run, "dissect: overlaps", cp2)
    iou = second.finalize()
    if second.bad_masks:
        warnings.warn(f"{second.bad_masks} mask files could not be used: their concepts were "
                      "taken as absent from those images", BadMaskWarning, stacklevel=2)
    t0 = time.perf_counter()
    examples = unit_examples(lens, data, second, second.top, choose_units(iou, show, most),
                             vocab.names, run.batch_size)
    if folder is not None:
        shutil.rmtree(folder / WORK, ignore_errors=True)
    return {"thresholds": thresholds, "iou": iou, "vocab": vocab,
            "detectors": {k: detectors(v, vocab.names, vocab.categories, DETECTOR_IOU)
                          for k, v in iou.items()},
            "top": second.top, "examples": examples,
            "images": second.images, "without_masks": second.without_masks,
            "bad_masks": second.bad_masks,
            "seconds": info1.seconds + info2.seconds + time.perf_counter() - t0,
            "resumed_from": {"thresholds": info1.resumed_from, "overlaps": info2.resumed_from}}


def dissect(lens, data, layers: Sequence[str] | None = None, q: float = QUANTILE,
            rule: float = DETECTOR_IOU, colours: bool = True, n: int | None = None,
            indices: Sequence[int] | None = None, out: str | os.PathLike | None = None,
            run: RunSettings | None = None, top: int = TOP, show: int = SHOW):
    """Network dissection (Bau et al. 2017, https://arxiv.org/abs/1704.05796; METHODS.md):
    what each unit of `layers` (default: every ReLU with a spatial map) detects among the
    concepts the data labels per pixel.

    Pass 1 finds each unit's threshold ``T_k``, the activation it exceeds on a share `q`
    (0.005) of the data's positions, exactly (`dissection.TopQuantile`); pass 2 upsamples
    each map to the image (bilinear), cuts it at ``T_k`` and counts its intersection and union
    with each concept's mask over the data: the object's mask named by its class, the
    background around it named by the generator's background (builtin data, or a manifest's
    ``background`` column), each pixel's colour name (Broden's 11, nearest prototype in
    CIELAB), and the data's own concepts (a manifest's ``mask:<category>:<name>`` columns,
    docs/concepts.md). Masks follow the image's preprocessing (shorter side resized, centre
    crop; `convlens.data.images.preprocess_mask`). A unit detects its best concept
    when ``IoU > rule`` (0.04). Both passes stream on the engine (``run``: local or Ray) and,
    with `out`, checkpoint there and resume after a kill.

    The second pass also keeps each unit's `top` (5) items by max activation (``res.top``);
    the `show` (3) units of highest IoU per layer (36 at most) are drawn as in the paper: those
    items re-loaded, each with the unit's region (its map cut at ``T_k``) and its concept's
    mask outlined (``res.examples``; the pictures of the saved result).

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
    got = dissect_layers(lens, data, layers, q, colours, n, indices, out, run, top, show)
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
              "without_masks": got["without_masks"], "bad_masks": got["bad_masks"],
              "seconds": round(got["seconds"], 3),
              "engine": as_run(run).engine, "top": top, "show": show,
              "resumed_from": got["resumed_from"]}
    ex = got["examples"]
    result = DissectionResult(
        pd.DataFrame(rows, columns=["layer", "unit", "threshold", "concept", "category", "iou",
                                    "detector"]),
        pd.DataFrame(det_rows, columns=["layer", "category", "unique", "units", "layer_units"]),
        pd.DataFrame(iou_rows, columns=["layer", "unit", "concept", "iou"]), params,
        top_table(got["top"]), examples_table(ex["rows"]), ex["images"], ex["regions"],
        ex["masks"])
    if out is not None:
        result.save(out, lens=lens, pictures=False)
    return result
