"""Draw 64 ``builtin:shapes`` items with mask outline and keypoints.

    python docs/make_shapes_figure.py [--seed 0] [--start 0] [--out docs/shapes_examples.png]
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
    from convlens.data.shapes import SHAPE_CLASSES, render
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(ROOT / "src"))
    from convlens.data.shapes import SHAPE_CLASSES, render


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--out", default=str(ROOT / "docs" / "shapes_examples.png"))
    args = ap.parse_args(argv)

    fig, axes = plt.subplots(8, 8, figsize=(12, 13.2))
    for k, ax in enumerate(axes.ravel()):
        item = render(args.seed, args.start + k, args.size)
        a = item.attributes
        s = args.size
        # continuous pixel coordinates: pixel x covers [x, x + 1)
        ax.imshow(item.image, extent=(0, s, s, 0), interpolation="nearest")
        centres = np.arange(s) + 0.5
        if item.mask.any():
            ax.contour(centres, centres, item.mask.astype(float), levels=[0.5],
                       colors="yellow", linewidths=0.8)
        x0, y0, x1, y1 = item.box
        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False,
                                   edgecolor="cyan", linewidth=0.6, linestyle="--"))
        for name, (x, y) in item.keypoints.items():
            ax.plot(x, y, "o", ms=2.2, mfc="red" if name != "center" else "white",
                    mec="black", mew=0.3)
        flags = []
        if a["occluded"] > 0:
            flags.append(f"occ{a['occluded']:.2f}")
        if a["truncated"] > 0:
            flags.append(f"tr{a['truncated']:.2f}")
        if a["clutter"]:
            flags.append(f"cl{a['clutter']}")
        ax.set_title(f"{SHAPE_CLASSES[item.label]} s={a['scale']:.2f} {a['background'][:4]}\n"
                     + " ".join(flags), fontsize=6.5, pad=2)
        ax.set_xlim(0, s)
        ax.set_ylim(s, 0)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"builtin:shapes, seed {args.seed}, items {args.start}..{args.start + 63} "
                 "(yellow: mask outline, cyan: box, red: keypoints, white: center)",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(args.out, dpi=80)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
