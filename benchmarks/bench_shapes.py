"""Single-core generation speed of ``builtin:shapes``.

    .venv/bin/python benchmarks/bench_shapes.py [--n 3000] [--sizes 64 96 128]

Prints items/s for ``render_batch`` (images + labels, the training fast path)
and for ``render`` (full ground truth) on one CPU core.
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
    from convlens.data.shapes import render, render_batch
except ImportError:  # a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from convlens.data.shapes import render, render_batch


def _rate(fn, n):
    t = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - t)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=3000, help="items per measurement")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64])
    ap.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = ap.parse_args(argv)

    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        print(f"pinned to CPU {cpu}")

    for size in args.sizes:
        render_batch(0, range(64), size)  # warm up: texture cache, grids

        def batch(n, size=size):
            for start in range(0, n, 256):
                render_batch(0, range(start, min(start + 256, n)), size)

        def full(n, size=size):
            for i in range(n):
                render(0, i, size)

        rb = max(_rate(batch, args.n) for _ in range(args.repeats))
        rf = max(_rate(full, args.n) for _ in range(args.repeats))
        print(f"size {size}: render_batch {rb:,.0f} items/s, render (with ground truth) "
              f"{rf:,.0f} items/s  [1 core, n={args.n}, best of {args.repeats}]")


if __name__ == "__main__":
    main()
