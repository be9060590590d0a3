"""Every speed claim of BENCHMARKS.md in one command, each against its baseline or peer in the
same process, on a CPU or a GPU (issue 28).

    .venv/bin/python benchmarks/bench.py --smoke          # every row, toy sizes, CPU, < 60 s
    .venv/bin/python benchmarks/bench.py                  # the CPU figures of BENCHMARKS.md
    .venv/bin/python benchmarks/bench.py --device cuda    # GPU sizes, fp32 and bf16 autocast
        [--only scan,cams,...] [--rounds N] [--threads N] [--out DIR]

Rows (benchmarks/suite/<family>.py): the scan and network dissection's two passes against a
bare forward pass; saliency, guided backprop and DeconvNet against plain autograd and Captum;
the CAMs against pytorch-grad-cam and torch-cam; incremental occlusion against the naive
batched loop and Captum; FGSM and PGD against torchattacks; a whole layer of feature
visualisation in one batch against the per-unit loop; batched keypoint transfer against the
per-keypoint loop; deletion and insertion against Quantus; tsne_grid against raw openTSNE.

Each row: a warm-up call of both sides, whose outputs are compared (the row's `equal`: its
largest difference, which must stay within the row's tolerance), then `--rounds` timed calls
of each, interleaved so that a busy machine slows both alike; medians. On the CPU the clock is
the CPU time of this process (one torch thread by default: the work done, steady on a shared
machine); on a GPU it is wall time with the device synchronised before each clock read. The
ratio is the baseline's time over convlens's (above 1: convlens faster); `goal` is the ratio
BENCHMARKS.md asks for, where it asks one.

Writes DIR/bench-<mode>.md and DIR/bench-<mode>.json (default DIR: benchmarks/results) with
the device's name, torch and CUDA versions and the date, and prints the table. Exit status 1 if
any row's outputs differ beyond its tolerance or a row fails; rows whose peer is not installed
are listed as skipped.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import convlens  # noqa: F401
except ImportError:  # a checkout without installing
    sys.path.insert(0, str(HERE.parent / "src"))

from suite import FAMILIES  # noqa: E402
from suite.base import Context, Row, Skipped  # noqa: E402


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:  # the CPU model, where Linux says it
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} CPUs"


def clock(ctx: Context, fn) -> tuple[float, float, object]:
    """(wall s, CPU s of this process, output) of one call, the device synchronised."""
    ctx.sync()
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    ctx.sync()
    return time.perf_counter() - w, time.process_time() - c, out


def measure(ctx: Context, row: Row, rounds: int) -> dict:
    with ctx.autocast():
        _, _, ours = clock(ctx, row.ours)
        _, _, theirs = clock(ctx, row.baseline)
        diff = float(row.difference(ours, theirs))
        del ours, theirs
        times = {"ours": [], "baseline": []}
        for r in range(min(rounds, row.rounds or rounds)):
            sides = ("ours", "baseline") if r % 2 == 0 else ("baseline", "ours")
            for side in sides:
                w, c, _ = clock(ctx, row.ours if side == "ours" else row.baseline)
                times[side].append((w, c))
    use = 0 if ctx.gpu else 1  # wall on a GPU, CPU seconds on the CPU
    t_ours = statistics.median(t[use] for t in times["ours"])
    t_base = statistics.median(t[use] for t in times["baseline"])
    ratio = t_base / t_ours if t_ours > 0 else float("nan")
    return {"family": row.family, "name": row.name, "workload": row.workload,
            "unit": row.unit, "items": row.items, "baseline": row.baseline_name,
            "clock": "wall s" if ctx.gpu else "CPU s",
            "convlens_s": t_ours, "baseline_s": t_base,
            "convlens_per_s": row.items / t_ours if t_ours > 0 else None,
            "baseline_per_s": row.items / t_base if t_base > 0 else None,
            "ratio": ratio, "goal": row.goal,
            "goal_met": None if row.goal is None else bool(ratio >= row.goal),
            "difference": diff, "tolerance": row.tolerance, "equal": row.equal,
            "outputs_ok": bool(diff <= row.tolerance), "note": row.note,
            "precision": ctx.precision, "status": "ok" if diff <= row.tolerance else "DIFFERS"}


def fmt(v, digits=3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def markdown(meta: dict, rows: list[dict]) -> str:
    lines = [f"# convlens benchmarks ({meta['mode']})", "",
             f"{meta['date']} · {meta['device']} · torch {meta['torch']}"
             + (f" · CUDA {meta['cuda']}" if meta["cuda"] else "")
             + f" · {meta['threads']} torch thread(s) · {meta['rounds']} rounds · "
             f"{meta['seconds']:.0f} s in all", "",
             "Ratio: the baseline's time over convlens's (above 1: convlens faster); clock: CPU "
             "seconds of the process on the CPU, wall seconds on a GPU; medians."
             + (" Smoke run: toy sizes, one round; the ratios and goals mean nothing here, "
                "the output checks do." if meta["mode"] == "smoke" else ""), "",
             "| family | row | precision | workload | convlens /s | baseline | baseline /s | "
             "ratio | goal | outputs: max difference (tolerance) | status |",
             "|---|---|---|---|---:|---|---:|---:|---:|---|---|"]
    for r in rows:
        if r["status"] == "skipped" or r["status"] == "error":
            lines.append(f"| {r['family']} | {r['name']} | {r.get('precision', '')} | – | – | – "
                         f"| – | – | – | – | {r['status']}: {r['reason']} |")
            continue
        goal = "–" if r["goal"] is None else (f"{r['goal']:.2g}x "
                                              + ("met" if r["goal_met"] else "**not met**"))
        lines.append(
            f"| {r['family']} | {r['name']} | {r['precision']} | {r['workload']} | "
            f"{fmt(r['convlens_per_s'])} {r['unit']} | {r['baseline']} | "
            f"{fmt(r['baseline_per_s'])} | {r['ratio']:.2f}x | {goal} | "
            f"{r['equal']}: {r['difference']:.2g} ({r['tolerance']:g}) | {r['status']} |")
    notes = [f"- {r['family']} / {r['name']}: {r['note']}" for r in rows if r.get("note")]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true",
                    help="every row at toy sizes on the CPU (what make test runs)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    ap.add_argument("--only", default=None, metavar="F1,F2",
                    help="families to run (default all: " + ", ".join(FAMILIES) + ")")
    ap.add_argument("--rounds", type=int, default=None,
                    help="timed calls of each side (default 1 smoke, 3 otherwise)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads on the CPU (default 1: CPU seconds are the work done)")
    ap.add_argument("--precision", default=None, metavar="fp32,bf16",
                    help="default fp32 on the CPU, fp32,bf16 on a GPU")
    ap.add_argument("--out", default=str(HERE / "results"), help="folder for the .md and .json")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no GPU here")
    if args.smoke and device.type != "cpu":
        ap.error("--smoke runs on the CPU")
    mode = "smoke" if args.smoke else ("gpu" if device.type == "cuda" else "cpu")
    families = FAMILIES if args.only is None else tuple(args.only.split(","))
    for f in families:
        if f not in FAMILIES:
            ap.error(f"unknown family {f!r}; known: {', '.join(FAMILIES)}")
    precisions = (args.precision.split(",") if args.precision else
                  (["fp32", "bf16"] if device.type == "cuda" else ["fp32"]))
    for p in precisions:
        if p not in ("fp32", "bf16"):
            ap.error(f"unknown precision {p!r}: fp32 or bf16")
    rounds = args.rounds or (1 if args.smoke else 3)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    results = []
    for precision in precisions:
        ctx = Context(mode, device, precision)
        for family in families:
            t0 = time.perf_counter()
            try:
                built = importlib.import_module(f"suite.{family}").rows(ctx)
            except Exception as e:  # noqa: BLE001  reported as the family's error
                traceback.print_exc()
                results.append({"family": family, "name": "(building the rows)",
                                "precision": precision, "status": "error",
                                "reason": f"{type(e).__name__}: {e}"})
                continue
            for row in built:
                if isinstance(row, Skipped):
                    results.append({"family": row.family, "name": row.name,
                                    "precision": precision, "status": "skipped",
                                    "reason": row.reason})
                    continue
                try:
                    r = measure(ctx, row, rounds)
                except Exception as e:  # noqa: BLE001
                    traceback.print_exc()
                    r = {"family": row.family, "name": row.name, "precision": precision,
                         "status": "error", "reason": f"{type(e).__name__}: {e}"}
                results.append(r)
                print(f"{family:>14} | {row.name:<44} | {r['status']:<7} | "
                      + (f"{r['ratio']:.2f}x, difference {r['difference']:.2g}"
                         if r["status"] not in ("error",) else r["reason"]), flush=True)
            print(f"{family:>14}   {time.perf_counter() - t0:.1f} s", flush=True)
    meta = {"mode": mode, "device": device_name(device), "torch": torch.__version__,
            "cuda": torch.version.cuda if device.type == "cuda" else None,
            "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "threads": torch.get_num_threads(), "rounds": rounds,
            "precisions": precisions, "seconds": time.perf_counter() - start}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(meta, results)
    (out / f"bench-{mode}.md").write_text(md)
    (out / f"bench-{mode}.json").write_text(json.dumps({"meta": meta, "rows": results},
                                                       indent=1, default=str))
    print("\n" + md)
    print(f"written: {out / f'bench-{mode}.md'}, {out / f'bench-{mode}.json'}")
    bad = [r for r in results if r["status"] in ("DIFFERS", "error")]
    for r in bad:
        print(f"FAILED: {r['family']} / {r['name']}: {r['status']} "
              f"{r.get('reason', '')}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
