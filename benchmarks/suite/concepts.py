"""Network dissection's two passes (issue 27) against a bare forward pass capturing the same
layers over the same images (BENCHMARKS.md, "dissection"; goal 0.7: each pass at least 70 % of
the bare images/s).

Pass 1 (`Thresholds`): each unit's exact top-0.5 % threshold; its check counts, in one more
hooked pass, the values above and at each threshold (``T`` is the K-th largest iff fewer than
K lie above it and at least K at or above it). Pass 2 (`Overlaps`): each unit's upsampled,
thresholded map against every concept's mask; its check is the literal computation, each map
upsampled with ``F.interpolate``, cut at ``T`` and counted against the masks, on the first
images (IoU counts are integers: the difference must be 0)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Context, Row, Skipped

GOAL = 0.7


def literal_counts(a: torch.Tensor, t: torch.Tensor, masks: torch.Tensor, chunk: int = 64):
    """Bau et al.'s counts the slow way: every map upsampled to the masks' size (bilinear),
    cut at ``t`` and counted against every mask: (intersections (U, C), |M_k| (U,),
    |L_c| (C,)), float64."""
    lab = masks.double().transpose(0, 1).reshape(masks.shape[1], -1)
    inter = torch.zeros(a.shape[1], masks.shape[1], dtype=torch.float64)
    size = torch.zeros(a.shape[1], dtype=torch.float64)
    for u0 in range(0, a.shape[1], chunk):
        up = F.interpolate(a[:, u0:u0 + chunk].float(), size=masks.shape[2:], mode="bilinear",
                           align_corners=False)
        on = (up >= t[u0:u0 + chunk, None, None].to(up.device)).transpose(0, 1).cpu()
        on = on.reshape(on.shape[0], -1).double()
        inter[u0:u0 + chunk] = on @ lab.T
        size[u0:u0 + chunk] = on.sum(1)
    return inter, size, lab.sum(1)


def _rows(ctx: Context, lens, data, n: int, batch: int, what: str, check: int) -> list:
    from convlens.data import Loader
    from convlens.engine import item_order, run_pass
    from convlens.engine.settings import RunSettings
    from convlens.hooks import capture
    from convlens.techniques.concepts.dissect import (
        Overlaps,
        Thresholds,
        data_backgrounds,
        spatial_layers,
    )
    from convlens.techniques.concepts.dissection import IoUCounts
    from convlens.techniques.concepts.labels import Vocabulary

    lens.model.to(ctx.device).eval()
    if data.lens is None:
        data.with_lens(lens)
    layers = spatial_layers(lens)
    order = item_order(data, n)
    run = RunSettings(batch_size=batch, progress=False)
    classes = list(getattr(data, "classes", None) or lens.labels or [])
    vocab = Vocabulary.build(classes, data_backgrounds(data))

    def first():
        th = Thresholds(layers, n)
        run_pass(lens, data, [th], order, run, "thresholds")
        return th.finalize()

    def second(thresholds, indices=order):
        ov = Overlaps(thresholds, vocab, classes, value_range=lens.value_range,
                      mean=list(lens.mean), std=list(lens.std))
        run_pass(lens, data, [ov], indices, run, "overlaps")
        return ov

    def bare():
        with torch.no_grad(), capture(lens, layers):
            for b in Loader(data, batch_size=batch, indices=order.tolist()):
                lens(b.images.to(ctx.device, non_blocking=True))

    def kth_largest(thresholds, _) -> float:
        """Units whose threshold is not the K-th largest of their values, K = ceil(q * values)
        (one more hooked pass, counting the values above and at each threshold)."""
        above = {k: 0 for k in layers}
        at = {k: 0 for k in layers}
        per = {}
        with torch.no_grad(), capture(lens, layers) as cap:
            for b in Loader(data, batch_size=batch, indices=order.tolist()):
                lens(b.images.to(ctx.device))
                for k in layers:
                    v = cap[k].float().transpose(0, 1).reshape(cap[k].shape[1], -1)
                    t = thresholds[k].to(v.device)[:, None]
                    above[k] += (v > t).sum(1).cpu()
                    at[k] += (v >= t).sum(1).cpu()
                    per[k] = per.get(k, 0) + v.shape[1]
        bad = 0
        for k in layers:
            kk = math.ceil(0.005 * per[k])
            bad += int(((above[k] >= kk) | (at[k] < kk)).sum())
        return float(bad)

    thresholds = first()  # the second pass's input (not timed)
    sample = order[:check]

    def literal(ov, _) -> float:
        """Largest |IoU count| difference to the literal upsampling, on the first `check`
        images (a separate run of the pass on them)."""
        got = second(thresholds, sample)
        ref = {k: [0, 0, 0] for k in layers}
        for b in Loader(data, batch_size=batch, indices=sample.tolist()):
            with torch.no_grad(), capture(lens, layers) as cap:
                lens(b.images.to(ctx.device))
            masks = got.concepts(b)
            for k in layers:
                for j, v in enumerate(literal_counts(cap[k].float(), thresholds[k], masks)):
                    ref[k][j] = ref[k][j] + v
        worst = 0.0
        for k in layers:
            c: IoUCounts = got.counts[k]
            for mine, theirs in zip((c.inter, c.unit_size, c.concept_size), ref[k]):
                worst = max(worst, float((mine - theirs).abs().max()))
        return worst

    work = f"{what}, batch {batch}, {n} images, {len(layers)} ReLU layers"
    return [
        Row("concepts", f"dissect thresholds pass, {what}", work, n, "images", first, bare,
            "bare forward pass (same layers captured)", kth_largest, 0.0,
            "units whose T is not the exact K-th largest", goal=GOAL),
        Row("concepts", f"dissect overlaps pass, {what}", work, n, "images",
            lambda: second(thresholds), bare, "bare forward pass (same layers captured)",
            literal, 0.0, f"IoU counts vs literal upsampling, first {len(sample)} images",
            goal=GOAL),
    ]


def rows(ctx: Context) -> list:
    import convlens
    from convlens.errors import ConvlensError

    out = []
    if ctx.mode == "gpu":
        from .scan import Noise

        lens = convlens.load_model("torchvision:resnet18")
        return _rows(ctx, lens, Noise(1024, 224, lens), 1024, 128, "resnet18 224 px", 128)
    if ctx.mode == "smoke":
        lens = convlens.load_model("builtin:shapes-net")
        data = convlens.load_data("builtin:shapes:test", lens=lens)
        return _rows(ctx, lens, data, 32, 16, "shapes-net 64 px", 32)
    lens = convlens.load_model("builtin:stamps-net")
    try:
        data = convlens.load_data("builtin:stamps:test", lens=lens)
        out += _rows(ctx, lens, data, 512, 64, "stamps-net 96 px", 64)
    except ConvlensError as e:  # the photos are not installed
        out.append(Skipped("concepts", "dissect passes, stamps-net 96 px", str(e)))
    return out
