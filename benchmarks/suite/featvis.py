"""Feature visualisation of a whole layer (BENCHMARKS.md "Feature visualisation: a whole layer in
one batch", issue 16; `benchmarks/bench_featvis.py`): every channel optimised as one batch
against one channel at a time (the loop of Lucid, lucent and most tutorials), in image-steps
(one image through one optimisation step) per second.

Rows (the second on one layer per mode: the first's loop is what costs):

* "whole layer vs loop": BENCHMARKS.md's workload, `feature_visualization` with its defaults
  (1/f Fourier image, random jitter/scale/rotation every step, Adam, the forward pass stopped
  after the layer): ``channels="all"`` against one call per channel. Both sides do the whole
  layer, so the two times are for the same image-steps. Their images cannot be equal: a call
  draws one start (one seed per call, a batch's images being slices of one draw) and every step's
  transforms for its whole batch, so channel c gets another start and other jitter alone than
  in the batch. What is compared is each channel's final objective (its mean activation on
  its image, without transforms) across the layer: 1 - their correlation must stay under 0.2
  (measured 0.002-0.03 at BENCHMARKS.md's sizes), a sanity bound, not an equality.
* "whole layer vs loop, same start": the same render loop (`convlens.optimize.render`, which
  `feature_visualization` runs) without transforms, the one-at-a-time run of channel c started
  from image c of the batch's start. Adam is elementwise and each image's objective reads only
  its own activations, so the images must agree up to float rounding, which Adam's steps
  grow: the mean pixel difference is compared (see `same_start_row` for the tolerances).
"""
from __future__ import annotations

import functools

import torch

from .base import Context, Row, Skipped

FAMILY = "featvis"


@functools.lru_cache(maxsize=None)
def load(spec: str, device: str):
    import convlens

    return convlens.load_model(spec).eval().to(device)


def rows(ctx: Context) -> list[Row | Skipped]:
    # (model spec, layer, steps); cpu: BENCHMARKS.md's three layers at its 32 steps (about 3
    # minutes on one loaded thread, the loops over every channel most of it); gpu: 8 steps,
    # as the loop of 64 single-image calls is bound by kernel launches
    plan = ctx.pick(
        smoke=[("builtin:fashion-net", "features.0", 4)],
        cpu=[("builtin:fashion-net", "features.6", 32), ("builtin:fashion-net", "features.3", 32),
             ("builtin:shapes-net", "features.6", 32)],
        gpu=[("torchvision:vgg16", "features.2", 8)])
    same_start = ctx.pick(smoke=[0], cpu=[1], gpu=[0])  # which entries get the second row
    out: list[Row | Skipped] = []
    for k, (spec, layer, steps) in enumerate(plan):
        out.append(defaults_row(ctx, spec, layer, steps))
        if k in same_start:
            out.append(same_start_row(ctx, spec, layer, steps))
    return out


def words(spec: str, layer: str, channels: int, steps: int, lens) -> str:
    c, h, w = lens.input_size
    return (f"{spec.split(':')[1]} {layer} ({channels} channels), {c}x{h}x{w}, {steps} steps, "
            f"batch {channels} vs {channels} calls of 1")


def defaults_row(ctx: Context, spec: str, layer: str, steps: int) -> Row:
    from convlens.techniques.synthesis.featvis import _layer_channels, feature_visualization

    lens = load(spec, str(ctx.device))
    channels = _layer_channels(lens, layer)
    opts = {"steps": steps, "progress": False}

    def batched():
        return feature_visualization(lens, layer, channels="all", **opts).values

    def one_at_a_time():
        return torch.cat([feature_visualization(lens, layer, channels=[c], **opts).values
                          for c in range(channels)])

    def disagreement(a, b) -> float:
        # the images differ by design (start and transforms drawn per call); what each image
        # reaches for its channel must still track the channel: 1 - the Pearson correlation,
        # over the layer's channels, of the final objective of the two runs (about 1 if a
        # batch's images were optimised for the wrong channels)
        ab = torch.stack([a.double().flatten(), b.double().flatten()])
        return float(1 - torch.corrcoef(ab)[0, 1])

    return Row(
        FAMILY, f"{spec.split(':')[1]} {layer}: whole layer vs loop",
        words(spec, layer, channels, steps, lens) + ", FFT image, standard transforms, Adam",
        channels * steps, "image-steps", batched, one_at_a_time,
        "per-unit loop (feature_visualization, one channel per call)", disagreement, 0.2,
        "1 - correlation over channels of the final objective (a sanity bound, not equality)",
        5.0,
        "both sides run feature_visualization with its defaults over every channel "
        "(BENCHMARKS.md timed the loop on 8 channels and compared rates); the images cannot "
        "be equal (start and per-step transforms are drawn per call, for the whole batch); "
        "the 'same start' row (one layer) checks equality up to rounding")


def same_start_row(ctx: Context, spec: str, layer: str, steps: int) -> Row:
    from convlens.optimize import FFTImage, channel, render
    from convlens.techniques.synthesis.featvis import _layer_channels

    lens = load(spec, str(ctx.device))
    channels = _layer_channels(lens, layer)
    size = tuple(lens.input_size)
    sd, lr = 0.5, 0.05  # feature_visualization's defaults (init_sd, Adam's rate)

    def start(batch: int) -> FFTImage:
        return FFTImage(batch, size, sd=sd, seed=0, device=ctx.device)

    first = start(channels).spectrum.detach().clone()  # the batch's start, image c for channel c

    def batched():
        return render(lens, channel(layer, list(range(channels))), start(channels), [],
                      steps=steps, lr=lr, progress=False).images

    def one_at_a_time():
        images = []
        for c in range(channels):
            prm = start(1)
            with torch.no_grad():
                prm.spectrum.copy_(first[c:c + 1])
            images.append(render(lens, channel(layer, [c]), prm, [], steps=steps, lr=lr,
                                 progress=False).images)
        return torch.cat(images)

    def mean_pixel(a, b) -> float:
        return float((a.double() - b.double()).abs().mean())

    # The kernels of a batch and of one image round differently (1e-6 after one step); Adam's
    # steps carry that on and grow it (fashion-net features.3, 32 steps, CPU: mean 3e-4, max
    # 0.04; shapes-net: bitwise equal). An image from another start differs by 0.11-0.18 on
    # average: the tolerances sit well between. TF32 convolutions (a GPU's float32) and bf16
    # round more coarsely.
    tol = 3e-2 if ctx.gpu or ctx.precision == "bf16" else 5e-3
    return Row(
        FAMILY, f"{spec.split(':')[1]} {layer}: whole layer vs loop, same start",
        words(spec, layer, channels, steps, lens) + ", FFT image, no transforms, Adam",
        channels * steps, "image-steps", batched, one_at_a_time,
        "per-unit loop (render, one channel per call)", mean_pixel, tol,
        "mean |pixel difference| of the images (pixels in [0, 1])", None,
        "the render loop feature_visualization runs, without transforms; channel c starts "
        "alone from image c of the batch's start, so only rounding separates the images: "
        "batched and single-image kernels round differently and Adam's steps grow it (CPU, "
        "fashion-net features.3, 32 steps: mean 3e-4, max 0.04); an image from another start "
        "differs by 0.11-0.18 on average")
