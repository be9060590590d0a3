"""Throughput of guided backprop and DeconvNet against plain saliency (raw autograd) and Captum.

    .venv/bin/python benchmarks/bench_gradients.py [--batch 32] [--size 224] [--rounds 3]
                                                   [--threads N] [--model resnet18]

torchvision resnet18 with random weights on the CPU, one batch of random images, each image's
own class target. Every method runs once to warm up, then `rounds` times, interleaved (round
robin) so that a busy machine slows all of them alike; the table gives the median wall seconds
per batch, images per second, the median CPU seconds of this process per batch (steadier than
wall time on a shared machine, and equal to it with one thread) and the ratios to raw autograd
saliency (``x.requires_grad_();
autograd.grad(model(x)[i, t_i].sum(), x)``). The convlens methods return full results (map,
signed attribution, display images); Captum's return the attribution only.
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
    from convlens import Lens
except ImportError:  # a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from convlens import Lens
from convlens.techniques.gradients.gradients import deconvnet, guided_backprop, saliency


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")

    import torchvision
    torch.manual_seed(0)
    model = getattr(torchvision.models, args.model)(weights=None).eval()
    lens = Lens(model, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (3, args.size, args.size))
    x = torch.randn(args.batch, 3, args.size, args.size)
    t = torch.arange(args.batch) % 1000

    def raw():
        xi = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xi).gather(1, t[:, None]).sum(), xi)
        return g

    methods = {
        "raw autograd saliency": raw,
        "convlens saliency": lambda: saliency(lens, x, t),
        "convlens guided_backprop": lambda: guided_backprop(lens, x, t),
        "convlens deconvnet": lambda: deconvnet(lens, x, t),
    }
    try:
        from captum.attr import Deconvolution, GuidedBackprop, Saliency
        methods.update({
            "captum Saliency": lambda: Saliency(model).attribute(
                x.clone().requires_grad_(True), target=t.tolist(), abs=False),
            "captum GuidedBackprop": lambda: GuidedBackprop(model).attribute(
                x.clone().requires_grad_(True), target=t.tolist()),
            "captum Deconvolution": lambda: Deconvolution(model).attribute(
                x.clone().requires_grad_(True), target=t.tolist()),
        })
    except ImportError:
        print("captum not installed: its rows are skipped")

    times = {name: [] for name in methods}
    cpu = {name: [] for name in methods}
    for fn in methods.values():  # warm up
        fn()
    for _ in range(args.rounds):
        for name, fn in methods.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)

    base = statistics.median(times["raw autograd saliency"])
    cbase = statistics.median(cpu["raw autograd saliency"])
    print(f"# {args.model}, batch {args.batch}, {args.size}x{args.size}, CPU, "
          f"{torch.get_num_threads()} threads, median of {args.rounds} interleaved rounds")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, python {platform.python_version()}")
    print("| method | wall s / batch (median) | images / s | vs raw (wall) "
          "| CPU s / batch (median) | vs raw (CPU) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, ts in times.items():
        med, cmed = statistics.median(ts), statistics.median(cpu[name])
        print(f"| {name} | {med:.3f} | {args.batch / med:.1f} | {(med / base - 1) * 100:+.1f}% "
              f"| {cmed:.3f} | {(cmed / cbase - 1) * 100:+.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
