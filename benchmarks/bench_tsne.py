"""`tsne_grid` end to end against raw openTSNE and scikit-learn's TSNE, on the same codes.

    .venv/bin/python benchmarks/bench_tsne.py [--n 10000] [--jobs 1] [--repeats 1] [--no-sklearn]

The codes are fashion-net's (the input of its last linear layer, 256-d) on N Fashion-MNIST
test images (all 10000, or a seeded sample), computed once and not timed. Then, in this one process:

- raw openTSNE: ``openTSNE.TSNE(perplexity=30, negative_gradient_method="fft").fit(codes)``,
  with openTSNE's defaults, and again with convlens's one changed default
  (``ints_in_interval=2``, `FFT_OPTIONS`): the baseline for convlens's own overhead;
- convlens: ``tsne_grid(codes, thumbnails, ...)``: PCA to 50, the same openTSNE, kNN accuracy
  in 2-D and code space, trustworthiness (2000 points), the 50 x 50 grid assignment; and
  separately the time to save it (tables and both pictures);
- scikit-learn: ``sklearn.manifold.TSNE(perplexity=30, init="pca")`` (Barnes-Hut), once.

Every method gets the same number of threads (`--jobs`, also the BLAS/OpenMP limit, as
`tsne_grid` sets it). The raw openTSNE runs and convlens alternate `--repeats` times and the
best time counts. Prints wall and CPU seconds of this process (the steadier measure on a
shared machine) and their ratios as a Markdown table.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

try:
    import convlens
except ImportError:  # a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import convlens


def fashion_codes(n: int, weights: str | None):
    """fashion-net's codes of n test images (all 10000 by default; fewer: a seeded sample)."""
    from convlens.techniques.units.codes import cnn_codes

    lens = convlens.load_model("builtin:fashion-net", weights)
    data = convlens.load_data("builtin:fashion-mnist:test", lens=lens)
    from convlens.engine.settings import RunSettings
    return cnn_codes(lens, data, n=n, run=RunSettings(batch_size=500, progress=False))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000, help="codes (default 10000)")
    ap.add_argument("--jobs", type=int, default=1, help="threads for every method (default 1)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of openTSNE and convlens")
    ap.add_argument("--no-sklearn", action="store_true", help="skip scikit-learn's TSNE")
    ap.add_argument("--weights", help="fashion-net weights (default: the built-in ones)")
    args = ap.parse_args(argv)
    cli_args = list(argv if argv is not None else sys.argv[1:])

    import openTSNE
    import sklearn
    from sklearn.manifold import TSNE as SkTSNE
    from threadpoolctl import threadpool_limits

    from convlens.techniques.tsne.tsne import FFT_OPTIONS, tsne_grid

    t = time.perf_counter()
    c = fashion_codes(args.n, args.weights)
    print(f"codes {c.codes.shape} from {c.layer} in {time.perf_counter() - t:.1f} s (not timed)",
          flush=True)
    x = c.codes
    limit = threadpool_limits(args.jobs) if args.jobs > 0 else None

    def timed(fn):
        """(wall seconds, CPU seconds of this process, result) of fn()."""
        w, c0 = time.perf_counter(), time.process_time()
        out = fn()
        return time.perf_counter() - w, time.process_time() - c0, out

    raw, same, ours, save = [], [], [], []  # (wall, cpu) pairs
    for r in range(args.repeats):
        for runs, opts, what in ((raw, {}, "defaults"), (same, FFT_OPTIONS, str(FFT_OPTIONS))):
            w, cpu, _ = timed(lambda: openTSNE.TSNE(
                perplexity=30, negative_gradient_method="fft", random_state=r, n_jobs=args.jobs,
                **opts).fit(x))
            runs.append((w, cpu))
            print(f"raw openTSNE ({what}): {w:.1f} s (CPU {cpu:.1f} s)", flush=True)
        w, cpu, res = timed(lambda: tsne_grid(c, seed=r, n_jobs=args.jobs))
        ours.append((w, cpu))
        print(f"convlens tsne_grid: {w:.1f} s (CPU {cpu:.1f} s)  {res.params['seconds']}",
              flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            w, cpu, _ = timed(lambda: res.save(tmp))
        save.append((w, cpu))
        print(f"  save (tables, scatter, grid): {w:.1f} s (CPU {cpu:.1f} s)", flush=True)
    print(res.summary(), flush=True)

    sk = None
    if not args.no_sklearn:
        w, cpu, _ = timed(lambda: SkTSNE(perplexity=30, init="pca", random_state=0,
                                         n_jobs=args.jobs).fit_transform(x))
        sk = (w, cpu)
        print(f"scikit-learn TSNE: {w:.1f} s (CPU {cpu:.1f} s)", flush=True)

    if limit is not None:
        limit.restore_original_limits()
    best = [min(v[i] for v in runs) for runs in (raw, same, ours, save) for i in (0, 1)]
    b_raw, c_raw, b_same, c_same, b_ours, c_ours, b_save, c_save = best  # best wall, best CPU
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print()
    print(f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores (load average {load:.1f} "
          f"at the end), Python {platform.python_version()}, openTSNE {openTSNE.__version__}, "
          f"scikit-learn {sklearn.__version__}; {datetime.date.today()}; "
          f"`{' '.join(['benchmarks/bench_tsne.py'] + cli_args)}`")
    print()
    print(f"| {args.n} fashion-net codes (256-d), {args.jobs} thread(s) | wall s | ratio (wall) "
          "| CPU s | ratio (CPU) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| raw openTSNE (FFT, defaults) on the codes | {b_raw:.1f} | 1.00 | {c_raw:.1f} "
          "| 1.00 |")
    print(f"| raw openTSNE (FFT, {FFT_OPTIONS}) on the codes | {b_same:.1f} | "
          f"{b_same / b_raw:.2f} x | {c_same:.1f} | {c_same / c_raw:.2f} x |")
    for what, bw, bc in (("convlens `tsne_grid` (PCA 50 + openTSNE + kNN/trust + 50x50 grid)",
                          b_ours, c_ours),
                         ("convlens, plus saving tables and both pictures",
                          b_ours + b_save, c_ours + c_save)):
        print(f"| {what} | {bw:.1f} | {bw / b_raw:.2f} x ({bw / b_same:.2f} x same settings) "
              f"| {bc:.1f} | {bc / c_raw:.2f} x ({bc / c_same:.2f} x same settings) |")
    if sk is not None:
        print(f"| scikit-learn TSNE (Barnes-Hut) | {sk[0]:.1f} | {sk[0] / b_raw:.2f} x "
              f"(convlens {sk[0] / b_ours:.2f} x faster) | {sk[1]:.1f} | {sk[1] / c_raw:.2f} x "
              f"(convlens {sk[1] / c_ours:.2f} x faster) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
