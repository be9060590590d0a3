"""Faithfulness metrics (BENCHMARKS.md, "Faithfulness metrics against Quantus";
benchmarks/bench_faithfulness.py): convlens's deletion and insertion against Quantus's
PixelFlipping, 36 equal steps of whole pixels.

* deletion: Quantus ``PixelFlipping(features_in_step=C * H * W / 36, perturb_baseline=0)``
  (Quantus counts the values of all channels: C of them per pixel);
* insertion: ``PixelFlipping`` started from convlens's blurred image (`rise_blur`) with a
  perturbation that puts the original values back (Quantus has no insertion).

What is compared: the curves, the target's probability after each step (convlens's
``probability[:, 1:]``: Quantus leaves out the unperturbed start). They are equal when both
libraries remove the same pixels at each step, which needs a map without ties: Quantus sorts
the map repeated over the channels with numpy's unstable argsort, so tied pixels (the zeros
of a rectified map) come in another order, and their channel values interleave across a
step's boundary. Each map is therefore replaced, untimed, by the ranks of its positions in
the order convlens uses (a stable descending sort: ties to the earlier position), a strict
order that gives convlens the same curves as the map itself
(tests/test_faithfulness_peers.py compares maps without ties in the same way).

Sizes: builtin:stamps-net (shipped weights, offline) on the first images of
builtin:stamps:test (3 x 96 x 96), each image's predicted class, the maps of saliency,
Grad-CAM and guided backprop (computed once, untimed); on a GPU a torchvision ResNet-50 with
random weights at 192 px (Quantus needs whole pixels per step, ``3 k | H * W``, which no
224 px step allows).
"""
from __future__ import annotations

import importlib.metadata

import numpy as np
import torch

import convlens
from convlens.techniques.faithfulness.metrics import deletion, insertion
from convlens.techniques.faithfulness.substrates import rise_blur

from .base import Context, Row, Skipped, max_abs, peer

FAMILY = "faithfulness"
STEPS = 36


def strict_order(maps: torch.Tensor) -> torch.Tensor:
    """``(N, H, W)`` maps as float ranks (``H*W - 1`` the most relevant position), ties broken
    as convlens breaks them: the same order, without ties."""
    n, h, w = maps.shape
    order = torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(h * w).expand_as(order).contiguous())
    return (h * w - 1 - ranks).float().view(n, h, w)  # exact in float32 below 2**24


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _work(ctx: Context):
    """(lens, what, [(x on the device, targets, [maps])], methods)."""
    if ctx.gpu:
        import torchvision

        with torch.random.fork_rng(devices=[]):  # seeded weights, the global state untouched
            torch.default_generator.manual_seed(0)  # the CPU generator only
            model = torchvision.models.resnet50(weights=None).eval()
        model = model.to(ctx.device, memory_format=torch.channels_last)
        size, n = 192, 32
        lens = convlens.Lens(model, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                             (3, size, size))
        x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))
        batches = [x.to(ctx.device).contiguous(memory_format=torch.channels_last)]
        what = f"resnet50 (random weights), {n} random images, {size} px"
        methods = ["saliency"]
    else:
        from convlens.data import Loader

        lens = convlens.load_model("builtin:stamps-net")
        data = convlens.load_data("builtin:stamps:test", lens)
        n = ctx.pick(2, 100)  # BENCHMARKS.md measured 100 images
        batches = [b.images for b in Loader(data, batch_size=100, indices=list(range(n)))]
        what = f"builtin:stamps-net, the first {n} builtin:stamps:test images, 96 px"
        methods = ["saliency", "grad_cam", "guided_backprop"]
    work = []
    for x in batches:
        with torch.no_grad():
            t = lens(x).argmax(1)
        maps = [strict_order(getattr(convlens, m)(lens, x, target=t.tolist()).map.detach())
                for m in methods]
        work.append((x, t, maps))
    return lens, what, work, methods


def rows(ctx: Context) -> list[Row | Skipped]:
    names = ("deletion vs Quantus PixelFlipping", "insertion vs Quantus PixelFlipping")
    quantus = peer("quantus", FAMILY, " and ".join(names))
    if isinstance(quantus, Skipped):
        return [Skipped(FAMILY, name, quantus.reason) for name in names]
    if ctx.precision == "bf16" and not ctx.gpu:
        # CPU autocast keeps softmax in bf16, and Quantus turns its output into numpy
        return [Skipped(FAMILY, name, "Quantus converts the probabilities to numpy, which has "
                        "no bfloat16 (CPU autocast keeps softmax in bf16)") for name in names]
    lens, what, work, methods = _work(ctx)
    model = lens.model
    c, h, w = work[0][0].shape[1:]
    per_step = h * w // STEPS
    if (h * w) % (c * per_step):  # Quantus's check: its steps must divide H * W
        raise ValueError(f"{STEPS} steps of whole pixels do not fit Quantus at {h}x{w}")
    rows_per_pass = 256 if ctx.gpu else 64  # convlens's forward-pass rows (its default: 64)
    device = str(ctx.device)
    # Quantus takes numpy arrays: converted once, untimed (convlens takes the tensors)
    host = [(x.float().cpu().numpy(), t.cpu().numpy(), [m[:, None].numpy() for m in maps])
            for x, t, maps in work]
    n_maps = sum(len(x) for x, _, _ in work) * len(methods)

    def ours(metric):
        def call():
            return torch.cat([metric(lens, x, m, targets=t, steps=STEPS,
                                     batch_size=rows_per_pass).probability[:, 1:]
                              for x, t, maps in work for m in maps])
        return call

    def q_deletion():
        curves = []
        for xn, yn, maps in host:
            for a in maps:
                pf = quantus.PixelFlipping(features_in_step=c * per_step, perturb_baseline=0.0,
                                           normalise=False, abs=False, disable_warnings=True)
                curves.append(np.asarray(pf(model=model, x_batch=xn, y_batch=yn, a_batch=a,
                                            device=device, softmax=True,
                                            batch_size=len(xn))))
        return np.concatenate(curves)

    def q_insertion():
        curves = []
        for (x, _, _), (xn, yn, maps) in zip(work, host):
            orig = xn.reshape(len(xn), -1)

            def put_back(arr, indices, **kw):  # the original values of those positions
                out = arr.copy()
                r = np.arange(arr.shape[0])[:, None]
                out[r, indices] = orig[r, indices]
                return out
            start = rise_blur(x).float().cpu().numpy()  # the blurred image, as convlens's
            for a in maps:
                pf = quantus.PixelFlipping(features_in_step=c * per_step, perturb_func=put_back,
                                           normalise=False, abs=False, disable_warnings=True)
                # one Quantus batch for all: put_back's rows are the call's rows (Quantus
                # splits x_batch into batches of 64 by default, which would misalign them)
                curves.append(np.asarray(pf(model=model, x_batch=start, y_batch=yn,
                                            a_batch=a, device=device, softmax=True,
                                            batch_size=len(xn))))
        return np.concatenate(curves)

    # fp32: both run the same images through the same model, in other batches and layouts
    # (float rounding, ~1e-6; a GPU's TF32 convolutions more); bf16: the logits rounded to
    # 8 bits in other batches
    tol = 1e-2 if ctx.precision == "bf16" else 1e-4
    workload = (f"{what}; maps of {', '.join(methods)}, ties broken; {STEPS} steps; each "
                f"image's predicted class; convlens {rows_per_pass} rows per forward pass")
    equal = "max |probability difference| over the curves' points"
    version = f"quantus {_version('quantus')} PixelFlipping"
    note = ("maps replaced by the ranks of their positions (ties broken as convlens breaks "
            "them), so that Quantus's unstable sort removes the same whole pixels"
            + ("; random weights: the probabilities are about 1e-3, so the check is weak"
               if ctx.gpu else ""))
    return [
        Row(FAMILY, names[0], workload, n_maps, "image-maps", ours(deletion), q_deletion,
            version, max_abs, tol, equal, note=note),
        Row(FAMILY, names[1], workload, n_maps, "image-maps", ours(insertion), q_insertion,
            f"{version} from the blurred image, original values put back", max_abs, tol,
            equal),
    ]
