"""Speed of convlens's FGSM and PGD against torchattacks on the same model, inputs and settings.

    .venv/bin/python benchmarks/bench_adversarial.py [--rounds 5] [--threads 1]
                                                     [--models fashion-net,shapes-net]

For each built-in model: one batch of its test images (fashion-net 256, shapes-net 64), the
true labels, ε = 8/255; PGD with 10 steps of α = 2/255 and no random start. Both libraries get
normalised images and the model's mean/std (torchattacks through ``set_normalization_used``),
so both un-normalise, attack in pixel space and normalise again. Rows:

- ``torchattacks FGSM`` / ``PGD``: the adversarial images only;
- ``convlens ... evaluate=False``: the same work (images and the result object);
- ``convlens ...``: the full result: also the model's answers on x_adv (one more forward pass).

Every row runs once to warm up, then `rounds` times interleaved (each round in a new seeded
random order, so a busy machine slows all alike). Medians of wall and CPU seconds (this
process) per batch; ratios to torchattacks' row of the same attack. Each run also compares the
images: the largest difference in pixel units and how many images differ by more than 1e-6.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

try:
    import convlens
except ImportError:  # a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import convlens
from convlens.data import Loader
from convlens.techniques.adversarial.attacks import fgsm, pgd

MODELS = {"fashion-net": ("builtin:fashion-net", "builtin:fashion-mnist:test", 256),
          "shapes-net": ("builtin:shapes-net", "builtin:shapes:test", 64)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", default="fashion-net,shapes-net")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    import torchattacks

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, torchattacks "
          f"{torchattacks.__version__}, python {platform.python_version()}; median of "
          f"{args.rounds} interleaved rounds")
    print("| model | method | wall s / batch | vs torchattacks (wall) | CPU s / batch "
          "| vs torchattacks (CPU) | max abs diff in pixels (images > 1e-6) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    eps, alpha, steps = 8 / 255, 2 / 255, 10
    for key in args.models.split(","):
        spec, data, batch = MODELS[key]
        lens = convlens.load_model(spec).eval()
        b = next(iter(Loader(convlens.load_data(data, lens=lens), batch_size=batch)))
        x, y = b.images, b.labels

        def peer(atk):
            atk.set_normalization_used(lens.mean, lens.std)
            return lambda: atk(x, y)

        ta_fgsm = peer(torchattacks.FGSM(lens, eps=eps))
        ta_pgd = peer(torchattacks.PGD(lens, eps=eps, alpha=alpha, steps=steps,
                                       random_start=False))
        rows = {
            "torchattacks FGSM": ta_fgsm,
            "convlens fgsm, evaluate=False": lambda: fgsm(lens, x, y, eps, evaluate=False),
            "convlens fgsm": lambda: fgsm(lens, x, y, eps),
            "torchattacks PGD": ta_pgd,
            "convlens pgd, evaluate=False": lambda: pgd(lens, x, y, eps, alpha, steps,
                                                        random_start=False, evaluate=False),
            "convlens pgd": lambda: pgd(lens, x, y, eps, alpha, steps, random_start=False),
        }
        # the same images? (pixel units; torchattacks returns normalised images)
        std = torch.tensor(lens.std).view(1, -1, 1, 1)
        diffs = {}
        for attack, ours, theirs in (
                ("FGSM", fgsm(lens, x, y, eps).x_adv, ta_fgsm()),
                ("PGD", pgd(lens, x, y, eps, alpha, steps, random_start=False).x_adv, ta_pgd())):
            d = ((ours - theirs) * std).abs().flatten(1).amax(1)
            diffs[attack] = f"{float(d.max()):.1e} ({int((d > 1e-6).sum())}/{len(d)})"
        wall = {k: [] for k in rows}
        cpu = {k: [] for k in rows}
        for fn in rows.values():
            fn()
        order = list(rows)
        rng = random.Random(0)
        for _ in range(args.rounds):
            rng.shuffle(order)  # no row always runs first (or right after another)
            for k in order:
                fn = rows[k]
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                wall[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
        for k in rows:
            attack = "FGSM" if "fgsm" in k.lower() else "PGD"
            base = f"torchattacks {attack}"
            w, c = statistics.median(wall[k]), statistics.median(cpu[k])
            bw, bc = statistics.median(wall[base]), statistics.median(cpu[base])
            diff = diffs[attack] if k.startswith("convlens") else ""
            print(f"| {key} (batch {batch}) | {k} | {w:.3f} | {(w / bw - 1) * 100:+.1f}% | {c:.3f} "
                  f"| {(c / bc - 1) * 100:+.1f}% | {diff} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
