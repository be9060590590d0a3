"""Single-core generation speed of ``builtin:stamps``.

    .venv/bin/python benchmarks/bench_stamps.py [--n 2000] [--sizes 96 128]

Prints items/s for ``render_batch`` (images + labels, the training fast path) and for
``render`` (with the mask, box and attributes) on one CPU core, after a warm-up that fills the
per-process caches (the stamp catalogue, decoded stamps, background photos). The time to build
the catalogue (decoding every candidate PNG once for the photo rule) is printed separately.
"""

from __future__ import annotations

import os

# one core: no BLAS / OpenMP threads, and pin the process where the OS allows it
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

try:
    from convlens.data import stamps
except ImportError:  # a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from convlens.data import stamps


def _rate(fn, n):
    t = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - t)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000, help="items per measurement")
    ap.add_argument("--sizes", type=int, nargs="+", default=[96])
    ap.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = ap.parse_args(argv)

    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        print(f"pinned to CPU {cpu}")

    t = time.perf_counter()
    stamps.catalogue()
    print(f"catalogue (photo rule over every candidate stamp): {time.perf_counter() - t:.2f} s")

    for size in args.sizes:
        # warm up: every stamp of the split decoded once, the background photos loaded
        stamps.render_batch("train", range(args.n), size)

        def batch(n, size=size):
            for start in range(0, n, 256):
                stamps.render_batch("train", range(start, min(start + 256, n)), size)

        def full(n, size=size):
            for i in range(n):
                stamps.render("train", i, size)

        rb = max(_rate(batch, args.n) for _ in range(args.repeats))
        rf = max(_rate(full, args.n) for _ in range(args.repeats))
        print(f"size {size}: render_batch {rb:,.0f} items/s, render (with ground truth) "
              f"{rf:,.0f} items/s  [1 core, n={args.n}, best of {args.repeats}]")


if __name__ == "__main__":
    main()
