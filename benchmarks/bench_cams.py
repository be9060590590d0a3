"""Throughput of the CAM family (issue 25) against pytorch-grad-cam and torch-cam, in one run.

    .venv/bin/python benchmarks/bench_cams.py [--images 2] [--batch 8] [--size 224]
        [--rounds 2] [--threads 1] [--only gradient,ablation,score]

torchvision resnet18 with random weights on the CPU, Grad-CAM's layer (``layer4``, the last
block's output), each image's own class target.

* Score-CAM and Ablation-CAM (`--images` random images): convlens, pytorch-grad-cam
  (``batch_size`` attribute) and torch-cam (Score-CAM only: it has no Ablation-CAM), all with
  32 masked or ablated copies per forward pass. Each row also gives how far its map (before
  upsampling and scaling) is from convlens's, relative: the peers' Score-CAM differ from the
  paper in how the masks are upsampled (tests/test_cams_peers.py says how), Ablation-CAM
  agrees.
* The gradient CAMs and Eigen-CAM on one batch of `--batch` images, against convlens's
  Grad-CAM (same target pass).

Every method runs `rounds` times, interleaved (round robin), so that a busy machine slows all
of them alike; the table gives the median CPU seconds of this process per run (one torch
thread: CPU time is the work done, steadier than wall time on a shared machine), images per
CPU second and the ratio of its CPU seconds to the reference row's (above 1: slower).
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

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's progress bars

import torch  # noqa: E402

try:
    import convlens
except ImportError:  # a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import convlens

# the peers' calls, shared with benchmarks/bench.py's rows (this script's folder is on sys.path)
from suite.cams import pgc_cam, rel, tc_cam  # noqa: E402


def run(methods: dict, rounds: int, reference: str, n: int, title: str,
        same: bool = True) -> None:
    """Time `methods` (round robin); `same`: they compute the same map (compare it)."""
    cpu = {name: [] for name in methods}
    wall = {name: [] for name in methods}
    maps = {}
    for _ in range(rounds):
        for name, fn in methods.items():
            t0, c0 = time.perf_counter(), time.process_time()
            maps[name] = fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    base = statistics.median(cpu[reference])
    print(f"\n### {title}\n")
    print(f"| method | CPU s / run (median) | images / CPU s | CPU vs {reference} "
          "| wall s / run (median) | map vs convlens (rel.) |")
    print("|---|---:|---:|---:|---:|---:|")
    ours = maps[reference]
    for name in methods:
        c, w = statistics.median(cpu[name]), statistics.median(wall[name])
        diff = f"{rel(maps[name], ours):.1e}" if same else "(another method)"
        print(f"| {name} | {c:.2f} | {n / c:.3f} | {c / base:.3f}x | {w:.2f} "
              f"| {diff} |", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=2, help="images for Score- and Ablation-CAM")
    ap.add_argument("--batch", type=int, default=8, help="images for the gradient CAMs")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="gradient,ablation,score")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    import torchvision
    from pytorch_grad_cam import AblationCAM, ScoreCAM
    from torchcam.methods import ScoreCAM as TcScoreCAM

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    lens = convlens.Lens(model, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                         (3, args.size, args.size))
    layer, bs = "layer4", 32
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(max(args.images, args.batch), 3, args.size, args.size, generator=gen)
    t = torch.arange(len(x)) * 97 % 1000
    xi, ti = x[:args.images], t[:args.images]
    print(f"# resnet18 (random weights), {args.size}x{args.size}, layer {layer}, CPU, "
          f"{torch.get_num_threads()} torch thread(s), median of {args.rounds} interleaved "
          f"rounds; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, python {platform.python_version()}, load average "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    with torch.no_grad():
        model(x[:2])  # warm up
    only = args.only.split(",")
    if "gradient" in only:
        xb, tb = x[:args.batch], t[:args.batch]
        run({f"convlens {m}": (lambda m=m: getattr(convlens, m)(lens, xb, tb, layer=layer).cam)
             for m in ("grad_cam", "grad_cam_plus_plus", "xgrad_cam", "hires_cam", "layer_cam",
                       "eigen_cam")},
            args.rounds, "convlens grad_cam", len(xb),
            f"gradient CAMs and Eigen-CAM, batch of {len(xb)} (vs Grad-CAM)", same=False)
    if "ablation" in only:
        run({"convlens ablation_cam": lambda: convlens.ablation_cam(
                lens, xi, ti, layer=layer, batch_size=bs).cam,
             "pytorch-grad-cam AblationCAM": lambda: pgc_cam(
                AblationCAM, model, lens.layer(layer), xi, ti, batch_size=bs)},
            args.rounds, "convlens ablation_cam", len(xi),
            f"Ablation-CAM, {len(xi)} images, {bs} ablated copies per pass")
    if "score" in only:
        run({"convlens score_cam": lambda: convlens.score_cam(
                lens, xi, ti, layer=layer, batch_size=bs).cam,
             "pytorch-grad-cam ScoreCAM": lambda: pgc_cam(
                ScoreCAM, model, lens.layer(layer), xi, ti, batch_size=bs),
             "torch-cam ScoreCAM": lambda: tc_cam(TcScoreCAM, model, layer, xi, ti,
                                                  batch_size=bs)},
            args.rounds, "convlens score_cam", len(xi),
            f"Score-CAM, {len(xi)} images, {bs} masked images per pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
