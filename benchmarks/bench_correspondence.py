"""Keypoint transfer (issue 17): the batched nearest-neighbour search against a per-keypoint
loop, in one run, on the same forward passes.

    .venv/bin/python benchmarks/bench_correspondence.py [--pairs 1000] [--threads 1]
        [--layers layer1,layer2,layer3,layer4] [--api-pairs 200] [--markdown FILE]

Workload: torchvision ResNet-18 (random weights, seeded, eval mode) at 224x224; `--pairs`
synthetic affine-warp pairs of ``builtin:shapes`` rendered at 224 px (each item's own keypoints,
5-11 per shape); every layer of `--layers` scored. Per chunk of 32 pairs the images run through
the model once (timed as "forward"), then both searches run on the same feature maps:

* ``batched``: `convlens.techniques.correspondence.transfer_features`, one batched matrix
  product per chunk and layer (what `correspondence` runs);
* ``careful loop``: per pair and layer, B's map normalised once; per keypoint, the bilinear
  feature at the point, one matrix-vector product with every cell, argmax, back to pixels;
* ``naive loop``: the same with ``F.cosine_similarity`` per keypoint (B's norms every time),
  as a first implementation would write it.

All must give the same points up to exact ties (checked). Reported, in CPU seconds of the
process: keypoint transfers (keypoint x layer) per second of search, the ratios, and end to end
with the forward passes. Pair making (render + warp)
is timed apart. Finally `correspondence()` itself, end to end, on the first `--api-pairs`.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

try:
    import convlens  # noqa: F401
except ImportError:  # a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import convlens  # noqa: E402
from convlens.engine.settings import RunSettings  # noqa: E402
from convlens.techniques.correspondence.correspondence import (  # noqa: E402
    _forward,
    _pad_points,
    correspondence,
    sample,
    spatial_layers,
    to_cells,
    to_pixels,
    transfer_features,
)
from convlens.techniques.correspondence.pairs import Pair, warp_pairs  # noqa: E402


def clock() -> float:
    """CPU seconds of this process: with one torch thread, steadier than wall time on shared
    cores (other jobs' load does not count)."""
    return time.process_time()


def loop_transfer(maps_a, maps_b, pair_points, field, careful: bool) -> list[np.ndarray]:
    """The per-keypoint loop, same geometry and similarity, one keypoint at a time. Naive:
    ``F.cosine_similarity`` of the keypoint's feature with B's map (B's norms every time);
    careful: B normalised once per pair and layer, then one matrix-vector product a keypoint."""
    out = []
    for p, pts in enumerate(pair_points):
        fb = maps_b[p].flatten(1)                                    # (C, HW)
        if careful:
            fb = F.normalize(fb, dim=0)
        w = maps_b.shape[-1]
        got = []
        for x, y in pts:
            u = to_cells(torch.tensor([[[x, y]]], dtype=torch.float64), field)
            q = sample(maps_a[p:p + 1], u)[0, 0]                     # (C,)
            sim = q @ fb if careful else F.cosine_similarity(q[:, None], fb, dim=0)
            got.append(to_pixels(sim.argmax(), w, field).numpy())
        out.append(np.array(got))
    return out


def real_mismatches(maps_a, maps_b, pts, mask, got, ref, field) -> int:
    """Points where the two searches differ by more than a tie: the cosine of the two chosen
    cells with the query (float64) differs by more than 1e-5."""
    n = 0
    cy, cx = field.center
    sy, sx = field.stride
    for p, r in enumerate(ref):
        g = got[p][mask[p]]
        for k in np.nonzero(np.abs(g - r).max(1) > 1e-9)[0]:
            q = sample(maps_a[p:p + 1].double(), to_cells(pts[p:p + 1, k:k + 1], field))[0, 0]
            sims = []
            for x, y in (g[k], r[k]):
                f = maps_b[p, :, round((y - 0.5 - cy) / sy), round((x - 0.5 - cx) / sx)].double()
                sims.append(float(q @ f / max(float(q.norm() * f.norm()), 1e-12)))
            n += abs(sims[0] - sims[1]) > 1e-5
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--layers", default="layer1,layer2,layer3,layer4")
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--api-pairs", type=int, default=200,
                    help="pairs for the end-to-end `correspondence()` row (default 200)")
    ap.add_argument("--markdown", metavar="FILE")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t_start = time.time()
    lens = convlens.load_model("torchvision:resnet18")
    lens.eval()
    layers = args.layers.split(",")
    infos = spatial_layers(lens, layers)

    data = convlens.load_data(f"builtin:shapes:test:{args.pairs}", lens=lens)
    made = warp_pairs(data, args.pairs, "affine", seed=0)  # lazy: made chunk by chunk

    t_pairs = t_fwd = t_batch = t_loop = t_naive = 0.0
    mismatch = ties = n_pairs = n_kp = 0
    with torch.no_grad():
        for s in range(0, len(made), args.chunk):
            t = clock()
            good = [p for p in made[s:s + args.chunk] if isinstance(p, Pair)]
            t_pairs += clock() - t
            n_pairs += len(good)
            n_kp += sum(len(p.points_a) for p in good)
            t = clock()
            maps, ia, ib, _ = _forward(lens, good, layers, 64)
            t_fwd += clock() - t
            pts, mask = _pad_points(good)
            for info in infos:
                ma, mb = maps[info.name][ia], maps[info.name][ib]
                t = clock()
                got = transfer_features(ma, mb, pts, info.field).numpy()
                t_batch += clock() - t
                t = clock()
                ref = loop_transfer(ma, mb, [p.points_a for p in good], info.field, True)
                t_loop += clock() - t
                t = clock()
                naive = loop_transfer(ma, mb, [p.points_a for p in good], info.field, False)
                t_naive += clock() - t
                for r in (ref, naive):
                    ties += sum(int((np.abs(got[k][mask[k]] - r[k]) > 1e-9).any(1).sum())
                                for k in range(len(r)))
                    mismatch += real_mismatches(ma, mb, pts, mask, got, r, info.field)
            print(f"  {min(s + args.chunk, len(made))}/{len(made)} pairs", flush=True)
    transfers = n_kp * len(infos)

    api = warp_pairs(data, min(args.api_pairs, len(made)), "affine", seed=0)
    t = clock()
    res = correspondence(lens, api, layers, baselines=(), examples=0,
                         run=RunSettings(progress=False))
    t_api = clock() - t
    api_transfers = len(res.transfers)

    rows = [
        ("search: batched (`transfer_features`)", t_batch, transfers / t_batch),
        ("search: per-keypoint loop, B normalised once per pair", t_loop, transfers / t_loop),
        ("search: per-keypoint loop, `F.cosine_similarity`", t_naive, transfers / t_naive),
        ("end to end: forward + batched", t_fwd + t_batch, transfers / (t_fwd + t_batch)),
        ("end to end: forward + careful loop", t_fwd + t_loop, transfers / (t_fwd + t_loop)),
        ("end to end: forward + naive loop", t_fwd + t_naive, transfers / (t_fwd + t_naive)),
        (f"`correspondence()` on the first {api.__len__()} pairs (making pairs, forward, search, "
         "tables, bootstrap)", t_api, api_transfers / t_api),
    ]
    lines = [
        f"torchvision resnet18 (random weights), 224 px, {n_pairs} affine-warp pairs of "
        f"builtin:shapes, {n_kp} keypoints x {len(infos)} layers ({', '.join(layers)}) = "
        f"{transfers} transfers; {platform.processor() or platform.machine()}, "
        f"{args.threads} thread(s), torch {torch.__version__}, {datetime.date.today()}; "
        f"CPU seconds of the process; forward passes {t_fwd:.1f} s; pairs made in "
        f"{t_pairs:.1f} s (not counted); wall time of the whole run {time.time() - t_start:.0f} s.",
        "",
        "| method | CPU seconds | transfers / CPU s |",
        "|---|---:|---:|",
    ] + [f"| {name} | {sec:.2f} | {rate:,.0f} |" for name, sec, rate in rows] + [
        "",
        f"Search speed-up of the batched product: **{t_naive / t_batch:.1f}x** over the naive "
        f"loop, **{t_loop / t_batch:.1f}x** over the careful one; end to end (same forward "
        f"passes): {(t_fwd + t_naive) / (t_fwd + t_batch):.2f}x and "
        f"{(t_fwd + t_loop) / (t_fwd + t_batch):.2f}x. Points where a loop picks another cell: "
        f"{ties}, all ties (cosines within 1e-5) but {mismatch}. "
        f"PCK@0.1 of the random-weight net, for the record: "
        + ", ".join(f"{r.layer} {r.pck:.2f}" for r in res.pck.itertuples()) + ".",
    ]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    if mismatch:
        sys.exit(f"{mismatch} points differ between the batched search and the loop")


if __name__ == "__main__":
    main()
