"""Accuracy of a model on a dataset: top-1, top-5 and per class."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...data import Loader
from ...data.labels import align_labels, warn_if_differ
from ...engine.settings import RunSettings, as_run
from ...errors import ConvlensError
from ...hooks import preserved
from ...lens import as_batch, lens_and_data


@dataclass
class Evaluation:
    """Top-1 / top-5 accuracy over `n` labelled items, per-class accuracy, skipped files.

    Classes are the data's (its class names are the truth); predictions are compared through
    `convlens.data.labels.align_labels`. When the data's classes are none of the model's
    labels, ``top1``/``top5`` are None and ``note`` says why; ``per_class`` then holds each data
    class's most frequent prediction instead."""

    n: int
    top1: float | None
    top5: float | None
    per_class: dict[str, float] = field(default_factory=dict)
    per_class_n: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    note: str | None = None
    most_predicted: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        count = f"({self.n} images" + (f", {self.skipped} skipped)" if self.skipped else ")")
        if self.top1 is None:
            lines = [f"accuracy unavailable {count}: {self.note}"]
            for name, pred in self.most_predicted.items():
                lines.append(f"  {name:<24} most often predicted: {pred}  "
                             f"({self.per_class_n[name]})")
            return "\n".join(lines)
        lines = [f"top-1 {self.top1:.4f}  top-5 {self.top5:.4f}  {count}"]
        if self.note:
            lines.append(f"  note: {self.note}")
        for name, acc in self.per_class.items():
            lines.append(f"  {name:<24} {acc:.4f}  ({self.per_class_n[name]})")
        return "\n".join(lines)


@torch.no_grad()
def evaluate(lens, data, n: int | None = None, indices=None,
             run: RunSettings | None = None) -> Evaluation:
    """Top-1 and top-5 accuracy of `lens` on the labelled items of `data`, per data class.

    `n`: the first `n` items only; `indices`: exactly these items. `run`: how the pass runs
    (batch size, default 256 here; workers; progress: `RunSettings`).

    Example::

        ev = evaluate(load_model("builtin:fashion-net"), load_data("builtin:fashion-mnist:test"))
        print(ev.summary())
    """
    lens, data = lens_and_data(lens, data)
    if n is not None and n < 1:
        raise ConvlensError(f"n must be at least 1, got {n}")
    run = as_run(run) if run is not None else RunSettings(batch_size=256)
    label_map = align_labels(getattr(data, "classes", None), lens.labels)
    warn_if_differ(label_map)
    if indices is None and n:
        indices = range(min(n, len(data)))
    loader = Loader(data, batch_size=run.batch_size, workers=run.workers, progress=run.progress,
                    desc="evaluate", indices=indices)
    n = top1 = top5 = 0
    hits: dict[int, list[int]] = {}
    votes: dict[int, dict[int, int]] = {}
    with preserved(lens):
        lens.eval()
        for batch in loader:
            keep = batch.labels >= 0
            if not keep.any():
                continue
            logits = lens(as_batch(lens, batch.images[keep]))
            y = batch.labels[keep]
            target = torch.as_tensor(label_map.model_class(y.numpy()))
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices.cpu()
            for label, t, row in zip(y.tolist(), target.tolist(), top.tolist()):
                v = votes.setdefault(label, {})
                v[row[0]] = v.get(row[0], 0) + 1
                if t < 0:
                    continue
                n += 1
                top1 += row[0] == t
                top5 += t in row
                hits.setdefault(label, [0, 0])
                hits[label][0] += row[0] == t
                hits[label][1] += 1
    if not votes:
        raise ConvlensError("no labelled items to evaluate on")
    counts = {label_map.data_name(c): sum(v.values()) for c, v in sorted(votes.items())}
    if n == 0:  # no data class matches a model class
        most = {label_map.data_name(c): lens.label(max(v, key=v.get))
                for c, v in sorted(votes.items())}
        return Evaluation(sum(counts.values()), None, None, {}, counts, len(loader.skipped),
                          label_map.note(), most)
    names = {c: label_map.data_name(c) for c in sorted(hits)}
    return Evaluation(n, top1 / n, top5 / n,
                      {names[c]: hits[c][0] / hits[c][1] for c in sorted(hits)},
                      {names[c]: hits[c][1] for c in sorted(hits)}, len(loader.skipped),
                      label_map.note())
