"""Throughput of `convlens.scan` against a bare forward pass of the same model and data.

    .venv/bin/python benchmarks/bench_scan.py [--models fashion-net resnet18] [--threads 1]

For each model, loops over the same data (same `Loader`, batch size, float32, threads):

- ``bare``: ``lens(images)`` under ``torch.no_grad()`` in eval mode, nothing else;
- ``topk``: `scan` with top-9 on every ReLU layer (the issue's target), no statistics, codes
  or predictions;
- ``all``: `scan` with its defaults: top-9 on every ReLU, activation statistics, codes and
  predictions, checkpointing into a folder every 50 batches.

The runs alternate (bare, topk, all, bare, ...) for `--repeats` rounds. Each is timed twice:
CPU time of the process (what the work costs; robust when other jobs share the machine) and
wall time. A ratio is bare time / scan time: ``pass`` times the loop alone (`scan`'s own
clocks, ``meta["cpu_seconds"]``), ``e2e`` the whole call (setup: hashing the weights for the
checkpoint, finding the code layer; and writing the folder). Reported: the ratio of the best
(smallest) times over the rounds, which filters out interference, and for wall time the
median of the per-round ratios. fashion-net: Fashion-MNIST test images (28×28 grey) with the
shipped weights (random ones if absent; speed does not depend on them). resnet18:
torchvision's architecture with random weights on synthetic 224×224 RGB images.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

try:
    import convlens  # noqa: F401
except ImportError:  # a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from suite.scan import Noise  # noqa: E402  (shared with benchmarks/bench.py's rows)

from convlens import Lens, load_model  # noqa: E402
from convlens.data import Loader, load_data  # noqa: E402
from convlens.data.base import ImageDataset  # noqa: E402
from convlens.engine.settings import RunSettings  # noqa: E402
from convlens.errors import ConvlensError  # noqa: E402
from convlens.lens import default_layers  # noqa: E402
from convlens.techniques.units.scan import scan  # noqa: E402


def setup(name: str, n: int) -> tuple[Lens, ImageDataset, str]:
    if name == "fashion-net":
        try:
            lens = load_model("builtin:fashion-net")
            note = "shipped weights"
        except ConvlensError:
            from convlens.data import fashion
            from convlens.models.nets import fashion_net
            lens = Lens(fashion_net(), (fashion.MEAN,), (fashion.STD,), (1, 28, 28),
                        list(fashion.CLASSES), name="fashion-net")
            note = "random weights (shipped ones absent)"
        data = load_data("builtin:fashion-mnist:test", lens=lens)
        return lens, data, f"Fashion-MNIST test, first {n}; {note}"
    if name == "resnet18":
        lens = load_model("torchvision:resnet18")
        return lens, Noise(n, 224, lens=lens), f"{n} synthetic 224x224 RGB; random weights"
    raise SystemExit(f"unknown model {name}")


def bare(lens, data, n, batch_size) -> tuple[float, float]:
    """(wall, cpu) seconds of the bare loop."""
    loader = Loader(data, batch_size=batch_size, indices=range(n))
    lens.eval()
    t, c = time.perf_counter(), time.process_time()
    with torch.no_grad():
        for batch in loader:
            lens(batch.images)
    return time.perf_counter() - t, time.process_time() - c


def scanned(lens, data, n, batch_size, full: bool) -> tuple[float, float, float, float]:
    """(pass wall, pass cpu, end-to-end wall, end-to-end cpu) seconds of one scan."""
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t, c = time.perf_counter(), time.process_time()
        kw = {} if full else {"stats": False, "codes": None, "predictions": False}
        res = scan(lens, data, default_layers(lens), topk=9, n=n, out=tmp if full else None,
                   run=RunSettings(batch_size=batch_size, progress=False), **kw)
        e2e = time.perf_counter() - t, time.process_time() - c
        return res.params["seconds"], res.params["cpu_seconds"], *e2e


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["fashion-net", "resnet18"])
    ap.add_argument("--n", type=int, nargs="+", default=None,
                    help="images per run, one per model (default 2000 fashion-net, 192 resnet18)")
    ap.add_argument("--batch-size", type=int, nargs="+", default=None,
                    help="one per model (default 128 fashion-net, 32 resnet18)")
    ap.add_argument("--repeats", type=int, default=5, help="rounds (default 5)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    defaults = {"fashion-net": (2000, 128), "resnet18": (192, 32)}

    print(f"# scan vs bare forward: {platform.machine()}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, {torch.get_num_threads()} thread(s), float32 on CPU, "
          f"{args.repeats} rounds; {time.strftime('%Y-%m-%d %H:%M')}")
    print("| model | data | batch | top-9 layers | bare img/s (cpu) | topk: pass cpu | e2e cpu "
          "| wall (median) | all: pass cpu | e2e cpu | wall (median) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for i, name in enumerate(args.models):
        n = args.n[i] if args.n else defaults[name][0]
        bs = args.batch_size[i] if args.batch_size else defaults[name][1]
        lens, data, what = setup(name, n)
        layers = default_layers(lens)
        # warm-up: caches, allocator, lazy imports, the layer table
        bare(lens, data, min(n, 2 * bs), bs)
        scanned(lens, data, min(n, 2 * bs), bs, False)
        scanned(lens, data, min(n, 2 * bs), bs, True)
        b, tk, al = [], [], []
        for _ in range(args.repeats):
            b.append(bare(lens, data, n, bs))
            tk.append(scanned(lens, data, n, bs, False))
            al.append(scanned(lens, data, n, bs, True))
        bc = min(x[1] for x in b)

        def cols(runs):
            pass_cpu = bc / min(r[1] for r in runs)
            e2e_cpu = bc / min(r[3] for r in runs)
            wall = statistics.median(x[0] / r[2] for x, r in zip(b, runs))
            return f"{pass_cpu:.2f} | {e2e_cpu:.2f} | {wall:.2f}"

        print(f"| {name} | {what} | {bs} | {len(layers)} ReLU | {n / bc:.0f} | {cols(tk)} | "
              f"{cols(al)} |", flush=True)


if __name__ == "__main__":
    main()
