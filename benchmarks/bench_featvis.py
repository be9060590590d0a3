"""Feature visualisation of a whole layer: every channel in one batch against one channel at a
time (the loop of Lucid, lucent and most tutorials), in image-steps per second.

    .venv/bin/python benchmarks/bench_featvis.py [--model builtin:shapes-net] [--layer features.6]
        [--steps 32] [--single 8] [--rounds 3] [--threads N] [--param fft|pixel]

Both arms run the same code (`feature_visualization`: 1/f Fourier image, the standard random
jitter/scale/rotation, Adam, the forward pass stopped after the layer); only the batch differs.
"batched" optimises all C channels as one batch of C images; "one at a time" calls it once per
channel for the first `--single` channels (a rate, so a subset is enough). An image-step is one
image through one optimisation step. Rounds are interleaved so that a busy machine slows both
arms alike; the table gives medians of wall and CPU seconds (CPU time of this process: steadier
than wall time on a shared machine, equal to it with one thread) and the ratio batched / one at
a time.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

try:
    import convlens  # noqa: F401
except ImportError:  # a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from convlens import load_model
from convlens.techniques.synthesis.featvis import _layer_channels, feature_visualization


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="builtin:shapes-net")
    ap.add_argument("--layer", default="features.6")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--single", type=int, default=8, help="channels run one at a time")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--param", default="fft", choices=("fft", "pixel"))
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")

    lens = load_model(args.model)
    channels = _layer_channels(lens, args.layer)
    single = list(range(min(args.single, channels)))
    opts = {"steps": args.steps, "param": args.param, "progress": False}

    def batched():
        feature_visualization(lens, args.layer, channels="all", **opts)
        return channels * args.steps

    def one_at_a_time():
        for c in single:
            feature_visualization(lens, args.layer, channels=[c], **opts)
        return len(single) * args.steps

    arms = {"batched (all channels, one batch)": batched,
            "one channel at a time": one_at_a_time}
    wall = {k: [] for k in arms}
    cpu = {k: [] for k in arms}
    work = {}
    feature_visualization(lens, args.layer, channels=[0], steps=2, progress=False)  # warm up
    for _ in range(args.rounds):
        for name, fn in arms.items():
            t0, c0 = time.perf_counter(), time.process_time()
            work[name] = fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)

    print(f"# {args.model} {args.layer} ({channels} channels), {args.steps} steps, "
          f"param {args.param}, CPU, {torch.get_num_threads()} threads, median of "
          f"{args.rounds} interleaved rounds")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| arm | image-steps | wall s (median) | image-steps / s (wall) | CPU s (median) "
          "| image-steps / CPU s |")
    print("|---|---:|---:|---:|---:|---:|")
    rate, crate = {}, {}
    for name in arms:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        rate[name], crate[name] = work[name] / w, work[name] / c
        print(f"| {name} | {work[name]} | {w:.2f} | {rate[name]:.1f} | {c:.2f} "
              f"| {crate[name]:.1f} |")
    b, s = arms
    print(f"\nbatched / one at a time: {rate[b] / rate[s]:.1f}x (wall), "
          f"{crate[b] / crate[s]:.1f}x (CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
