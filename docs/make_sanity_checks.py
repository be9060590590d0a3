"""Regenerate docs/sanity_checks.png and docs/sanity_checks.csv (Adebayo et al. 2018).

    .venv/bin/python docs/make_sanity_checks.py [--n 32] [--seed 0] [--threads 1]

Cascading randomisation of builtin:shapes-net from the top layer down, on the first N images
of builtin:shapes:test, each method explaining the image's true class; Spearman rank
correlation and SSIM of every map with the trained model's map, averaged over the images.
About a minute on one core.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

try:
    import convlens
except ImportError:  # a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import convlens
from convlens.data import Loader
from convlens.techniques.gradients.sanity import cascading_randomization

HERE = Path(__file__).resolve().parent
METHODS = ["saliency", "smoothgrad", "integrated_gradients", "deconvnet", "guided_backprop",
           "grad_cam", "guided_grad_cam"]
KWARGS = {"smoothgrad": {"samples": 16}, "integrated_gradients": {"steps": 32}}


def figure(sc, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s_n, m_n = len(sc.stages), len(sc.methods)
    fig = plt.figure(figsize=(13, 9.5), dpi=90)
    grid = fig.add_gridspec(2, 1, height_ratios=[1, 1.6], hspace=0.25)
    top = grid[0].subgridspec(1, 2, wspace=0.2)
    xs = np.arange(s_n)
    for k, (arr, title) in enumerate([(sc.spearman, "Spearman rank correlation"),
                                      (sc.ssim, "SSIM")]):
        ax = fig.add_subplot(top[k])
        for m, name in enumerate(sc.methods):
            mean, std = arr[:, m].mean(1), arr[:, m].std(1)
            ax.plot(xs, mean, marker="o", ms=3, label=name)
            ax.fill_between(xs, mean - std, mean + std, alpha=0.08)
        ax.set_xticks(xs, sc.stages, rotation=45, ha="right", fontsize=7)
        ax.set_ylim(-0.1, 1.02)
        ax.set_title(f"{title} with the trained model's map")
        ax.axhline(0, color="grey", lw=0.5)
        if k == 0:
            ax.legend(fontsize=7)
    low = grid[1].subgridspec(m_n, s_n + 1, wspace=0.05, hspace=0.08)
    img = sc.images[0].transpose(1, 2, 0)
    for m, name in enumerate(sc.methods):
        ax = fig.add_subplot(low[m, 0])
        ax.imshow(img)
        ax.set_axis_off()
        ax.text(-4, 32, name, ha="right", va="center", fontsize=7)
        for s in range(s_n):
            ax = fig.add_subplot(low[m, s + 1])
            mp = sc.maps[s, m, 0]
            ax.imshow(mp, cmap="inferno", vmin=0, vmax=mp.max() if mp.max() > 0 else 1)
            ax.set_axis_off()
            if m == 0:
                ax.set_title(sc.stages[s].replace("classifier.", "cls.").replace(
                    "features.", "feat."), fontsize=7)
    fig.suptitle("Cascading randomisation of shapes-net (top layer first): which maps notice?",
                 fontsize=11)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=32, help="images (default 32)")
    ap.add_argument("--seed", type=int, default=0, help="re-initialisation seed (default 0)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--out", default=str(HERE), help="folder for the figure and CSV")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    lens = convlens.load_model("builtin:shapes-net")
    ds = convlens.load_data(f"builtin:shapes:test:{args.n}", lens=lens)
    batch = next(iter(Loader(ds, batch_size=args.n)))
    sc = cascading_randomization(lens, batch.images, target=batch.labels.tolist(),
                                 methods=METHODS, seed=args.seed, keep=4, method_kwargs=KWARGS)
    out = Path(args.out)
    table = sc.table()
    table.to_csv(out / "sanity_checks.csv", index=False, float_format="%.4f")
    figure(sc, out / "sanity_checks.png")
    wide = table.pivot(index="randomised_down_to", columns="method", values="spearman_mean")
    wide = wide.loc[sc.stages, sc.methods]
    print("Spearman (mean over images):")
    print(wide.round(3).to_string())
    wide = table.pivot(index="randomised_down_to", columns="method", values="ssim_mean")
    print("SSIM (mean over images):")
    print(wide.loc[sc.stages, sc.methods].round(3).to_string())
    print(f"{args.n} images, {time.perf_counter() - t0:.0f} s; wrote {out}/sanity_checks.csv "
          f"and sanity_checks.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
