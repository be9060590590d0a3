"""Accuracy tables of builtin:stamps-net for docs/models.md: per class and the confusion matrix.

    python docs/make_stamps_model_card.py [--weights FILE] [--n 10000] [--splits test seen]

Renders the first N items of each split with the fast path (the same images as
``builtin:stamps:SPLIT``), classifies them and prints markdown: top-1, top-5, per-class accuracy
and the confusion matrix (rows: true class, columns: predicted; counts).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
try:
    from convlens.data import stamps
    from convlens.models import load_model
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(ROOT / "src"))
    from convlens.data import stamps
    from convlens.models import load_model


@torch.no_grad()
def predict(lens, images: np.ndarray, batch: int = 250) -> torch.Tensor:
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i:i + batch]).permute(0, 3, 1, 2).float() / 255.0
        out.append(lens(lens.normalize(x)))
    return torch.cat(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--splits", nargs="+", default=["test", "seen"])
    args = ap.parse_args(argv)

    lens = load_model("builtin:stamps-net", weights=args.weights)
    lens.eval()
    names = list(stamps.CLASSES)
    for split in args.splits:
        images, labels = stamps.render_batch(split, range(args.n), lens.input_size[-1])
        logits = predict(lens, images)
        y = torch.from_numpy(labels)
        top = logits.topk(5, dim=1).indices
        top1 = (top[:, 0] == y).float().mean().item()
        top5 = (top == y[:, None]).any(1).float().mean().item()
        conf = np.zeros((len(names), len(names)), dtype=int)
        np.add.at(conf, (labels, top[:, 0].numpy()), 1)
        print(f"\n### {split}: top-1 {top1:.4f}, top-5 {top5:.4f} ({args.n} items)\n")
        print("| true \\ predicted | " + " | ".join(names) + " | accuracy |")
        print("|---" * (len(names) + 2) + "|")
        for k, name in enumerate(names):
            row = " | ".join(str(v) for v in conf[k])
            print(f"| **{name}** | {row} | {conf[k, k] / conf[k].sum():.3f} |")


if __name__ == "__main__":
    main()
