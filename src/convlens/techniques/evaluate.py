"""Accuracy of a model on a dataset: top-1, top-5 and per class."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..data import Loader
from ..errors import ConvlensError
from ..hooks import preserved
from ..lens import lens_and_data


@dataclass
class Evaluation:
    """Top-1 / top-5 accuracy over `n` labelled items, per-class accuracy, skipped files."""

    n: int
    top1: float
    top5: float
    per_class: dict[str, float] = field(default_factory=dict)
    per_class_n: dict[str, int] = field(default_factory=dict)
    skipped: int = 0

    def summary(self) -> str:
        lines = [f"top-1 {self.top1:.4f}  top-5 {self.top5:.4f}  ({self.n} images"
                 + (f", {self.skipped} skipped)" if self.skipped else ")")]
        for name, acc in self.per_class.items():
            lines.append(f"  {name:<24} {acc:.4f}  ({self.per_class_n[name]})")
        return "\n".join(lines)


@torch.no_grad()
def evaluate(lens, data, batch_size: int = 256, workers: int = 0, progress: bool = True,
             limit: int | None = None) -> Evaluation:
    """Top-1 and top-5 accuracy of `lens` on the labelled items of `data`.

    Example::

        ev = evaluate(load_model("builtin:fashion-net"), load_data("builtin:fashion-mnist:test"))
        print(ev.summary())
    """
    lens, data = lens_and_data(lens, data)
    if data.lens is None:
        data.with_lens(lens)
    k = lens.num_classes
    indices = range(min(limit, len(data))) if limit else None
    loader = Loader(data, batch_size=batch_size, workers=workers, progress=progress,
                    desc="evaluate", indices=indices)
    n = top1 = top5 = 0
    hits: dict[int, list[int]] = {}
    with preserved(lens):
        lens.eval()
        for batch in loader:
            keep = batch.labels >= 0
            if not keep.any():
                continue
            logits = lens(batch.images[keep])
            y = batch.labels[keep]
            k = logits.shape[1]
            top = logits.topk(min(5, k), dim=1).indices
            ok1 = top[:, 0] == y
            n += len(y)
            top1 += ok1.sum().item()
            top5 += (top == y[:, None]).any(1).sum().item()
            for label, ok in zip(y.tolist(), ok1.tolist()):
                hits.setdefault(label, [0, 0])
                hits[label][0] += ok
                hits[label][1] += 1
    if n == 0:
        raise ConvlensError("no labelled items to evaluate on")
    names = {c: lens.label(c) for c in sorted(hits)}
    return Evaluation(n, top1 / n, top5 / n,
                      {names[c]: hits[c][0] / hits[c][1] for c in sorted(hits)},
                      {names[c]: hits[c][1] for c in sorted(hits)}, len(loader.skipped))
