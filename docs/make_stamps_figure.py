"""Draw 64 ``builtin:stamps`` items with the mask outline, the box and the class name.

    python docs/make_stamps_figure.py [--split train] [--start 0] [--out docs/stamps_examples.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
try:
    from convlens.data.stamps import CLASSES, DEFAULT_SIZE, render
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(ROOT / "src"))
    from convlens.data.stamps import CLASSES, DEFAULT_SIZE, render


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--split", default="train", choices=["train", "test", "seen"])
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--size", type=int, default=DEFAULT_SIZE)
    ap.add_argument("--out", default=str(ROOT / "docs" / "stamps_examples.png"))
    args = ap.parse_args(argv)

    fig, axes = plt.subplots(8, 8, figsize=(13, 14.4))
    for k, ax in enumerate(axes.ravel()):
        item = render(args.split, args.start + k, args.size)
        a = item.attributes
        s = args.size
        # continuous pixel coordinates: pixel x covers [x, x + 1)
        ax.imshow(item.image, extent=(0, s, s, 0), interpolation="nearest")
        centres = np.arange(s) + 0.5
        if item.mask.any():
            ax.contour(centres, centres, item.mask.astype(float), levels=[0.5],
                       colors="yellow", linewidths=0.7)
        x0, y0, x1, y1 = item.box
        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False,
                                   edgecolor="cyan", linewidth=0.6, linestyle="--"))
        flags = []
        if a["occluded"] > 0:
            flags.append(f"occ{a['occluded']:.2f}")
        if a["truncated"] > 0:
            flags.append(f"tr{a['truncated']:.2f}")
        if a["clutter"]:
            flags.append(f"cl{a['clutter']}")
        stamp = Path(item.stamp).stem[:14]
        ax.set_title(f"{CLASSES[item.label]}: {stamp}\ns={a['scale']:.2f} {a['background'][:6]} "
                     + " ".join(flags), fontsize=6.5, pad=2)
        ax.set_xlim(0, s)
        ax.set_ylim(s, 0)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"builtin:stamps:{args.split}, items {args.start}..{args.start + 63}, "
                 f"{args.size}x{args.size} (yellow: visible mask outline, cyan: box)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(args.out, dpi=80)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
