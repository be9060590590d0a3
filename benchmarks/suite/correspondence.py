"""Keypoint transfer (BENCHMARKS.md "Keypoint transfer", issue 17;
`benchmarks/bench_correspondence.py`): the batched nearest-neighbour search `transfer_features`
(one batched matrix product per chunk of 32 pairs and layer, what `correspondence` runs)
against per-keypoint loops, on the same feature maps.

Workload (as BENCHMARKS.md, fewer pairs): torchvision ResNet-18 (random weights, seed 0) at
224 px, affine-warp pairs of builtin:shapes test items (each shape's own keypoints), layers
layer1-layer4 (strides 4-32). The forward passes that make the feature maps run while the rows
are built (not timed: both sides search the same maps). BENCHMARKS.md used 1,000 pairs, whose
forward passes alone take 212 CPU s on one thread and whose maps take 3 GB; 256 pairs here.
On a GPU: ResNet-50 at 224 px, 96 pairs (the loops pay a kernel launch per keypoint). Goal: the
≥ 10x of BENCHMARKS.md against a per-keypoint loop (there: 17.4x against the naive loop, 8.8x
against the careful one). Loops:

* careful: per pair and layer B's map normalised once; per keypoint the bilinear feature at
  the point, one matrix-vector product with every cell, argmax, back to pixels;
* naive: the same with ``F.cosine_similarity`` per keypoint (B's norms every time).

Outputs: the predicted points. Where two cells of B are equally similar to the keypoint's
feature the searches may pick either; a point counts as differing only when the two chosen
cells' cosines with the query (in float64) differ by more than a tie: 1e-5 in float32 (as the
script). Under bf16 autocast the products run in bf16 (8 significant bits), so cells whose
cosines are within bf16's rounding are ties there: 2e-2 (CPU, 32 pairs at 224 px: 168 of 680
points differ by more than 1e-5, none by more than 1e-2).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .base import Context, Row, Skipped

FAMILY = "correspondence"
LAYERS = ("layer1", "layer2", "layer3", "layer4")
CHUNK = 32  # pairs per search call, as the script and `correspondence` (chunk=32)


@dataclass
class Chunk:
    """One chunk of pairs at one layer: the maps of A and B, A's points (padded, with the mask
    of the real ones) and each pair's real points."""

    field: object
    maps_a: torch.Tensor
    maps_b: torch.Tensor
    points: torch.Tensor
    mask: np.ndarray
    points_a: list


@functools.lru_cache(maxsize=None)
def load(spec: str, side: int, n_pairs: int, device: str):
    """(chunks, keypoints, words): the feature maps of `n_pairs` warp pairs at every layer,
    computed once (cached across precisions, in float32)."""
    import convlens
    from convlens.techniques.correspondence.correspondence import (
        _forward,
        _pad_points,
        spatial_layers,
    )
    from convlens.techniques.correspondence.pairs import Pair, warp_pairs

    lens = convlens.load_model(spec, input_size=(3, side, side)).eval().to(device)
    infos = spatial_layers(lens, list(LAYERS))
    data = convlens.load_data(f"builtin:shapes:test:{n_pairs}", lens=lens)
    made = warp_pairs(data, n_pairs, "affine", seed=0)
    chunks, keypoints, usable = [], 0, 0
    with torch.no_grad():
        for s in range(0, len(made), CHUNK):
            good = [p for p in made[s:s + CHUNK] if isinstance(p, Pair)]
            if not good:
                continue
            usable += len(good)
            keypoints += sum(len(p.points_a) for p in good)
            maps, ia, ib, _ = _forward(lens, good, list(LAYERS), 64)
            pts, mask = _pad_points(good)
            for info in infos:
                m = maps[info.name]
                chunks.append(Chunk(info.field, m[ia], m[ib], pts, mask,
                                    [p.points_a for p in good]))
    words = (f"{spec.split(':')[1]} (random weights), {side} px, {usable} affine-warp pairs of "
             f"builtin:shapes, {keypoints} keypoints x {len(infos)} layers")
    return chunks, keypoints * len(infos), words


def loop_transfer(c: Chunk, careful: bool) -> list[np.ndarray]:
    """The per-keypoint loop over one chunk: each pair's predicted points ``(K, 2)``."""
    from convlens.techniques.correspondence.correspondence import sample, to_cells, to_pixels

    out = []
    w = c.maps_b.shape[-1]
    for p, pts in enumerate(c.points_a):
        fb = c.maps_b[p].flatten(1)                                   # (C, HW)
        if careful:
            fb = F.normalize(fb, dim=0)
        got = []
        for x, y in pts:
            u = to_cells(torch.tensor([[[x, y]]], dtype=torch.float64,
                                      device=c.maps_a.device), c.field)
            q = sample(c.maps_a[p:p + 1], u)[0, 0]                    # (C,)
            sim = q @ fb if careful else F.cosine_similarity(q[:, None], fb, dim=0)
            got.append(to_pixels(sim.argmax(), w, c.field))
        out.append(torch.stack(got).cpu().numpy())
    return out


def differing(chunks: list[Chunk], tie: float):
    """Points where the batched search and a loop differ by more than a tie: the float64
    cosines of the two chosen cells with the query differ by more than `tie`."""
    from convlens.techniques.correspondence.correspondence import sample, to_cells

    def count(batched: list[torch.Tensor], loops: list[list[np.ndarray]]) -> float:
        n = 0
        for c, got, ref in zip(chunks, batched, loops):
            cy, cx = c.field.center
            sy, sx = c.field.stride
            for p, r in enumerate(ref):
                g = got[p].numpy()[c.mask[p]]
                for k in np.nonzero(np.abs(g - r).max(1) > 1e-9)[0]:
                    q = sample(c.maps_a[p:p + 1].double(),
                               to_cells(c.points[p:p + 1, k:k + 1].to(c.maps_a.device),
                                        c.field))[0, 0]
                    cos = []
                    for x, y in (g[k], r[k]):
                        f = c.maps_b[p, :, round((y - 0.5 - cy) / sy),
                                     round((x - 0.5 - cx) / sx)].double()
                        cos.append(float(q @ f / max(float(q.norm() * f.norm()), 1e-12)))
                    n += abs(cos[0] - cos[1]) > tie
        return float(n)
    return count


def rows(ctx: Context) -> list[Row | Skipped]:
    from convlens.techniques.correspondence.correspondence import transfer_features

    spec, side, n_pairs = ctx.pick(smoke=("torchvision:resnet18", 64, 16),
                                   cpu=("torchvision:resnet18", 224, 256),
                                   gpu=("torchvision:resnet50", 224, 96))
    chunks, transfers, words = load(spec, side, n_pairs, str(ctx.device))
    bf16 = ctx.precision == "bf16"
    tie = 2e-2 if bf16 else 1e-5

    def batched():
        with torch.no_grad():
            return [transfer_features(c.maps_a, c.maps_b, c.points, c.field) for c in chunks]

    def careful():
        with torch.no_grad():
            return [loop_transfer(c, careful=True) for c in chunks]

    def naive():
        with torch.no_grad():
            return [loop_transfer(c, careful=False) for c in chunks]

    what = f"{words}, search only (forward passes before timing), chunks of {CHUNK} pairs"
    equal = f"points that differ by more than a tie (cosines within {tie:g})"
    note = (f"{n_pairs} pairs, not BENCHMARKS.md's 1,000 (the forward passes run while the rows "
            "are built: minutes on one thread); points whose two cells are equally similar "
            f"to the query (float64 cosines within {tie:g}) are ties, not differences")
    if bf16:
        note += ("; under bf16 autocast the products run in bf16 on both sides, so ties are "
                 f"taken at {tie:g}")
    return [
        Row(FAMILY, "batched search vs careful per-keypoint loop", what, transfers,
            "transfers", batched, careful,
            "per-keypoint loop, B normalised once per pair (careful)",
            differing(chunks, tie), 0, equal, 10.0, note),
        Row(FAMILY, "batched search vs naive per-keypoint loop", what, transfers, "transfers",
            batched, naive, "per-keypoint loop, F.cosine_similarity per keypoint (naive)",
            differing(chunks, tie), 0, equal, 10.0, note),
    ]
