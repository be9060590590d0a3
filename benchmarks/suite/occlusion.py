"""Occlusion maps (BENCHMARKS.md "Occlusion maps", issue 7; `benchmarks/bench_occlusion.py`):
convlens's incremental (exact) mode against the naive batched loop (convlens mode "exact": one
full forward pass per occluded copy, at its best batch size) and against Captum's `Occlusion`.

Workload (as BENCHMARKS.md): torchvision VGG16 and ResNet-18 (random weights, seed 0) on
builtin:shapes test image 0 at 224 px, window 16, stride 8 (27 x 27 = 729 positions);
fashion-net (shipped weights) on Fashion-MNIST test image 0, window 4, stride 2 (169 positions);
shapes-net (shipped weights) on builtin:shapes test image 0 at 64 px, window 8, stride 2 (841
positions). The target is the predicted class of the clean image.

The naive loop costs 151 CPU s per VGG16 map on one thread (BENCHMARKS.md), too long to run four
times, so on the CPU the two large nets are compared on an evenly spread subset of positions (as
the script times its naive rows): both sides evaluate the same positions through the runners
`occlusion` itself uses (`evaluate` with `naive_runner` / `incremental_runner`), and the maps are
compared there. The small nets, and every net on a GPU (VGG16, ResNet-50), run the whole map
through the public `occlusion(mode=...)` on both sides. Captum computes whole maps only: it is
compared on the small nets on the CPU and on VGG16 on a GPU.

Outputs: the target's logit at every position, relative to the largest clean logit (float32:
1e-5, measured 2e-7 to 1e-6; bf16 autocast: 5e-2, measured 5e-3 on ResNet-18, as the two sides
round differently), and Captum's attribution against ours rebuilt from the p map, relative to
the clean p(target) (same tolerances).
"""
from __future__ import annotations

import functools
import time

import numpy as np
import torch

from .base import Context, Row, Skipped, peer

FAMILY = "occlusion"

# name: (spec, image side, window, stride, naive batch on the CPU). The CPU batches are the
# fastest of 8/16/32 in BENCHMARKS.md's run (one thread); on a GPU the batch is probed (in
# float32, while the rows are built), so resnet50's 64 is never used.
MODELS = {
    "vgg16": ("torchvision:vgg16", 224, 16, 8, 8),
    "resnet18": ("torchvision:resnet18", 224, 16, 8, 16),
    "resnet50": ("torchvision:resnet50", 224, 16, 8, 64),
    "fashion-net": ("builtin:fashion-net", 28, 4, 2, 32),
    "shapes-net": ("builtin:shapes-net", 64, 8, 2, 32),
}
GOAL = {"vgg16": 3.0}  # issue 7: incremental occlusion at least 3x the naive loop on VGG16


@functools.lru_cache(maxsize=None)
def load(name: str, device: str):
    """(lens on `device`, one normalised image (1, C, H, W), words); cached across precisions."""
    import convlens

    spec, size = MODELS[name][:2]
    lens = convlens.load_model(spec).eval()
    if name == "fashion-net":
        from convlens.data.fashion import load_arrays

        x = lens.preprocess(load_arrays("test")[0][0])[None]
        words = "shipped weights, Fashion-MNIST test image 0"
    else:
        from convlens.data.shapes import TEST_SEED, render_batch

        x = lens.preprocess(render_batch(TEST_SEED, [0], size)[0][0])[None]
        words = ("shipped weights" if spec.startswith("builtin:") else "random weights") + \
            f", builtin:shapes test image 0 at {size} px"
    return lens.to(device), x.to(device), words


def rel_logits(scale: float):
    """Largest |logit difference| over the map, relative to `scale` (the clean image's
    largest |logit|: random-weight nets have small logits)."""
    def diff(a, b) -> float:
        a, b = torch.as_tensor(a).double().cpu(), torch.as_tensor(b).double().cpu()
        if a.shape != b.shape:
            raise ValueError(f"maps of different shapes: {tuple(a.shape)} vs {tuple(b.shape)}")
        return float((a - b).abs().max()) / max(scale, 1e-12)
    return diff


def best_batch(ctx: Context, run, grid, target, candidates) -> int:
    """The naive loop's fastest batch among `candidates` (GPU only: wall time, synchronised)."""
    from convlens.techniques.occlusion.occluders import evaluate

    best = None
    with torch.no_grad():
        for bs in candidates:
            probe = grid[: 2 * bs]
            evaluate(run, probe[:bs], target, bs, {"forwards": 0})  # warm-up (kernels, cuDNN)
            ctx.sync()
            t = time.perf_counter()
            evaluate(run, probe, target, bs, {"forwards": 0})
            ctx.sync()
            per = (time.perf_counter() - t) / len(probe)
            if best is None or per < best[1]:
                best = (bs, per)
    return best[0]


def rows(ctx: Context) -> list[Row | Skipped]:
    # (model, positions timed: None for the whole map, else an evenly spread subset)
    plan = ctx.pick(
        smoke=[("fashion-net", None), ("shapes-net", 48)],
        cpu=[("vgg16", 48), ("resnet18", 48), ("fashion-net", None), ("shapes-net", None)],
        gpu=[("vgg16", None), ("resnet50", None)])
    captum_on = ctx.pick(smoke=["fashion-net"], cpu=["fashion-net", "shapes-net"],
                         gpu=["vgg16"])
    out: list[Row | Skipped] = []
    for name, subset in plan:
        out += model_rows(ctx, name, subset, name in captum_on)
        if ctx.mode == "cpu" and subset is not None:
            # Captum has no subset of positions: its whole map, four times, would take the
            # row minutes (resnet18, one loaded thread: 35 CPU s a map, convlens 11 s)
            out.append(Skipped(FAMILY, f"{name}: incremental vs Captum Occlusion",
                               "whole maps only, too slow for the CPU run (BENCHMARKS.md has "
                               "them; run --device cuda)"))
    return out


def model_rows(ctx: Context, name: str, subset: int | None, with_captum: bool
               ) -> list[Row | Skipped]:
    from convlens.incremental import IncrementalEngine
    from convlens.techniques.occlusion.occluders import (
        evaluate,
        incremental_runner,
        naive_runner,
    )
    from convlens.techniques.occlusion.occlusion import occlusion, positions

    spec, size, window, stride, naive_bs = MODELS[name]
    lens, x, words = load(name, str(ctx.device))
    with torch.no_grad(), ctx.autocast():
        clean = lens(x)
    target = int(clean.argmax(1))
    tgt = torch.tensor(target, device=ctx.device)
    pos = positions(size, window, stride)
    grid = [(y, xx) for y in pos for xx in pos]
    fill = torch.zeros_like(x)  # fill "zero" (occlusion's default): the dataset's mean pixel
    naive = naive_runner(lens, x, fill, (window, window), None, None)
    if ctx.gpu:
        naive_bs = best_batch(ctx, naive, grid, tgt, (64, 128, 256))
    inc_batch = ctx.pick(64, 64, 128)
    args = dict(target=target, window=window, stride=stride)
    bf16 = ctx.precision == "bf16"
    model = spec.split(":")[1]
    what = f"{model}, {words}, window {window}, stride {stride}, {len(pos)}x{len(pos)} positions"

    def incremental():
        res = occlusion(lens, x, mode="incremental", batch_size=inc_batch, **args)
        if res.stats.get("engine") != "incremental":  # a silent fallback would be timed as ours
            raise RuntimeError(f"incremental engine not used: {res.stats.get('fallback')}")
        return res

    out: list[Row | Skipped] = []
    if subset is None:  # the whole map: the public function on both sides
        def ours():
            return incremental().logit[0]

        def baseline():
            return occlusion(lens, x, mode="exact", batch_size=naive_bs, **args).logit[0]

        items, note = len(grid), ""
    else:  # the same evenly spread positions on both sides, through occlusion's runners
        idx = np.linspace(0, len(grid) - 1, min(subset, len(grid))).round().astype(int)
        sub = [grid[i] for i in idx]
        engine, why = IncrementalEngine.build(lens.model, x, None)
        if engine is None:
            return [Skipped(FAMILY, f"{name}: incremental vs naive", why)]
        with torch.no_grad(), ctx.autocast():
            engine.prepare(x)  # the clean pass the engine keeps, at the row's precision
        inc = incremental_runner(engine, fill, (window, window), None)

        def ours():
            with torch.no_grad():
                return evaluate(inc, sub, tgt, inc_batch, {"forwards": 0})["logit"]

        def baseline():
            with torch.no_grad():
                return evaluate(naive, sub, tgt, naive_bs, {"forwards": 0})["logit"]

        items = len(sub)
        what += f", timed on {len(sub)} of them"
        note = (f"both sides evaluate the same {len(sub)} evenly spread positions of the "
                f"{len(grid)} (the naive loop takes minutes per whole map on one CPU thread), "
                "through the runners occlusion() uses; the clean pass the incremental engine "
                "keeps per image (one forward pass, about one position's naive cost) runs "
                "before timing")
    out.append(Row(
        FAMILY, f"{name}: incremental vs naive", what, items, "positions", ours, baseline,
        f"naive batched loop (convlens mode 'exact', batch {naive_bs})",
        rel_logits(float(clean.float().abs().max())), 5e-2 if bf16 else 1e-5,
        "max |target-logit difference| over the map / max |clean logit|", GOAL.get(name), note))

    if not with_captum:
        return out
    row = f"{name}: incremental vs Captum Occlusion"
    attr = peer("captum.attr", FAMILY, row)
    if isinstance(attr, Skipped):
        return out + [attr]
    import captum

    c = x.shape[1]
    occluder = attr.Occlusion(lambda inp: torch.softmax(lens(inp), 1))

    def captum_map():
        with torch.no_grad():
            return occluder.attribute(
                x, sliding_window_shapes=(c, window, window), strides=(c, stride, stride),
                baselines=0.0, target=target, perturbations_per_eval=naive_bs)[0].mean(0)

    def difference(res, theirs):
        # Captum's attribution at a pixel: the mean drop of p(target) over the windows that
        # cover it; ours rebuilt from the p map the same way (the grids agree: here
        # (size - window) % stride == 0, so Captum clips no window at the border)
        drop = res.clean_prob[0].double() - res.prob[0].double()
        total = torch.zeros(size, size, dtype=torch.float64)
        count = torch.zeros(size, size, dtype=torch.float64)
        for i, y in enumerate(res.pos_y):
            for j, xx in enumerate(res.pos_x):
                total[y:y + window, xx:xx + window] += drop[i, j]
                count[y:y + window, xx:xx + window] += 1
        ours_attr = total / count.clamp(min=1)
        return float((theirs.double().cpu() - ours_attr).abs().max()) / \
            max(float(res.clean_prob[0]), 1e-12)

    assert (size - window) % stride == 0, "Captum's grid would differ from occlusion's"
    out.append(Row(
        FAMILY, row, f"{model}, {words}, window {window}, stride {stride}, whole map "
        f"({len(grid)} positions)", len(grid), "positions", incremental, captum_map,
        f"captum {captum.__version__} Occlusion (perturbations_per_eval {naive_bs})",
        difference, 5e-2 if bf16 else 1e-5,
        "max |Captum attribution - ours rebuilt from the map| / clean p(target)", None,
        "Captum's attribution is the mean drop of p(target) over the windows covering a pixel; "
        "ours is rebuilt from the p map the same way (not timed)"))
    return out
