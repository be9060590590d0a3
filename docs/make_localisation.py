"""Regenerate docs/localisation.csv: how well each map points at the object (builtin:shapes).

    .venv/bin/python docs/make_localisation.py [--n 500] [--threads 1]

builtin:shapes-net on the first N items of builtin:shapes:test, every method explaining the
true class. Per method: the pointing game (the map's maximum on the visible-object mask;
strict, and with a 4-pixel tolerance, Zhang et al.'s 15 px at 224 scaled to 64) and the share
of the map's total inside the mask. Baselines: a random point / uniform map (hit rate and energy
= the mask's area share) and a centred Gaussian (sigma = 1/4 of the side). Occlusion is
included when `convlens.techniques.occlusion.occlusion` is present (drop of p(class), window 12,
stride 4). A few minutes on one core.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

try:
    import convlens
except ImportError:  # a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import convlens
from convlens.data import Loader
from convlens.techniques.gradients.localisation import energy_in_mask, pointing_game
from convlens.techniques.gradients.smoothing import METHODS

HERE = Path(__file__).resolve().parent
ORDER = ["saliency", "smoothgrad", "integrated_gradients", "deconvnet", "guided_backprop",
         "grad_cam", "guided_grad_cam"]


def occlusion_map(lens, x, target):
    from convlens.techniques.occlusion.occlusion import occlusion
    r = occlusion(lens, x, target=target, window=12, stride=4)
    return (r.clean_prob[:, None, None] - r.prob_image).clamp(min=0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="test images (default 500)")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--out", default=str(HERE / "localisation.csv"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    lens = convlens.load_model("builtin:shapes-net")
    ds = convlens.load_data(f"builtin:shapes:test:{args.n}", lens=lens)
    methods = {m: (lambda lens, x, t, m=m: METHODS[m](lens, x, target=t).map) for m in ORDER}
    if importlib.util.find_spec("convlens.techniques.occlusion.occlusion") is not None:
        methods["occlusion"] = occlusion_map
    else:
        print("occlusion not available: skipped")
    hits = {m: [] for m in methods}
    hits4 = {m: [] for m in methods}
    energy = {m: [] for m in methods}
    seconds = {m: 0.0 for m in methods}
    area, centre_hit, centre_hit4, centre_energy, correct = [], [], [], [], []
    size = lens.input_size[-1]
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    gauss = torch.from_numpy(np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2)
                                    / (2 * (size / 4) ** 2))).float()
    for batch in Loader(ds, batch_size=args.batch_size):
        masks = torch.stack([torch.as_tensor(m["mask"]) for m in batch.meta])
        t = batch.labels.tolist()
        with torch.no_grad():
            correct.append(lens(batch.images).argmax(1) == batch.labels)
        area.append(masks.flatten(1).float().mean(1))
        g = gauss.expand(len(masks), -1, -1)
        centre_hit.append(pointing_game(g, masks))
        centre_hit4.append(pointing_game(g, masks, tolerance=4))
        centre_energy.append(energy_in_mask(g, masks))
        for m, fn in methods.items():
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                maps = fn(lens, batch.images, t)
            seconds[m] += time.perf_counter() - t0
            hits[m].append(pointing_game(maps, masks))
            hits4[m].append(pointing_game(maps, masks, tolerance=4))
            energy[m].append(energy_in_mask(maps, masks))
    n = sum(len(c) for c in correct)
    rows = []
    for m in methods:
        rows.append({"method": m, "pointing_game": torch.cat(hits[m]).float().mean().item(),
                     "pointing_game_tol4": torch.cat(hits4[m]).float().mean().item(),
                     "energy_in_mask": torch.cat(energy[m]).mean().item(),
                     "seconds_per_image": seconds[m] / n})
    a = torch.cat(area).mean().item()
    rows.append({"method": "baseline: random point / uniform map", "pointing_game": a,
                 "pointing_game_tol4": float("nan"), "energy_in_mask": a,
                 "seconds_per_image": 0.0})
    rows.append({"method": "baseline: centred Gaussian",
                 "pointing_game": torch.cat(centre_hit).float().mean().item(),
                 "pointing_game_tol4": torch.cat(centre_hit4).float().mean().item(),
                 "energy_in_mask": torch.cat(centre_energy).mean().item(),
                 "seconds_per_image": 0.0})
    table = pd.DataFrame(rows)
    table.to_csv(args.out, index=False, float_format="%.4f")
    print(f"{n} images of builtin:shapes:test, shapes-net accuracy on them "
          f"{torch.cat(correct).float().mean().item():.3f}, mean mask area {a:.3f}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
