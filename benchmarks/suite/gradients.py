"""Gradient maps (BENCHMARKS.md, "Gradient maps"; benchmarks/bench_gradients.py): convlens's
saliency, guided backprop and DeconvNet against the plain input gradient (raw autograd) and
Captum's GuidedBackprop and Deconvolution.

torchvision ResNet with random weights, random normalised images, each image's own class
target (``i % 1000``). The convlens methods return their full result (the signed attribution,
the ``max_c |.|`` map and display images, on the CPU); the baselines return the attribution.
What is compared is the signed attribution (``result.attribution``, ``(N, C, H, W)``).
"""
from __future__ import annotations

import importlib.metadata

import torch

from convlens import Lens
from convlens.techniques.gradients.gradients import deconvnet, guided_backprop, saliency

from .base import Context, Row, Skipped, max_abs, peer

FAMILY = "gradients"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def rel_max(a, b) -> float:
    """Largest absolute difference over the largest magnitude of `b` (scale-free)."""
    scale = float(torch.as_tensor(b).detach().abs().max())
    return max_abs(a, b) / scale if scale > 0 else max_abs(a, b)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def rows(ctx: Context) -> list[Row | Skipped]:
    import torchvision

    arch = ctx.pick("resnet18", "resnet18", "resnet50")
    size = ctx.pick(64, 224, 224)
    batch = ctx.pick(2, 32, 256)
    with torch.random.fork_rng(devices=[]):  # seeded weights, the global state untouched
        torch.default_generator.manual_seed(0)  # the CPU generator only
        model = getattr(torchvision.models, arch)(weights=None).eval()
    layout = torch.channels_last if ctx.gpu else torch.contiguous_format  # cuDNN's fast layout
    model = model.to(ctx.device, memory_format=layout)
    lens = Lens(model, MEAN, STD, (3, size, size))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=gen)
    x = x.to(ctx.device).contiguous(memory_format=layout)
    t = (torch.arange(batch) % 1000).to(ctx.device)
    targets = t.tolist()
    workload = f"{arch} (random weights), batch {batch}, {size} px, each image's own class"

    # The error allowed between two computations of the same gradient, relative to its
    # largest value: fp32 on the CPU agrees to float rounding; on a GPU cuDNN runs fp32
    # convolutions in TF32 by default (10-bit mantissa); under bf16 autocast every
    # intermediate gradient is rounded to 8 bits, differently where the libraries order the
    # same operations differently.
    tol = {"bf16": 5e-2}.get(ctx.precision, 1e-3 if ctx.gpu else 1e-5)
    equal = "max |signed attribution difference| / max |attribution|"

    def raw():  # the plain input gradient of each image's class score
        xi = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xi).gather(1, t[:, None]).sum(), xi)
        return g

    def attribution(fn):
        return lambda: fn(lens, x, targets)

    def ours_vs(out, theirs):
        return rel_max(out.attribution, theirs)

    def shapes_only(out, theirs):
        if tuple(out.attribution.shape) != tuple(theirs.shape):
            raise ValueError(f"shapes differ: {tuple(out.attribution.shape)} vs "
                             f"{tuple(theirs.shape)}")
        return 0.0

    note_full = ("every row of this family: convlens returns its full result (attribution, "
                 "map and display images, on the CPU), the baseline the gradient on the device")
    note_goal = ("BENCHMARKS.md's target: guided backprop and DeconvNet cost at most 5 % more "
                 "than the plain gradient (ratio >= 0.95)")
    out: list[Row | Skipped] = [
        Row(FAMILY, "saliency vs raw autograd saliency", workload, batch, "images",
            attribution(saliency), raw, "raw autograd (torch.autograd.grad)", ours_vs, tol,
            equal, note=note_full),
        # BENCHMARKS.md's target: guided backprop and DeconvNet within 5 % of the plain
        # gradient. Different methods: their values are checked against Captum below.
        Row(FAMILY, "guided backprop vs raw autograd saliency", workload, batch, "images",
            attribution(guided_backprop), raw, "raw autograd saliency", shapes_only, 0.0,
            "shapes only (another method; values: the Captum row)", goal=0.95,
            note=note_goal),
        Row(FAMILY, "DeconvNet vs raw autograd saliency", workload, batch, "images",
            attribution(deconvnet), raw, "raw autograd saliency", shapes_only, 0.0,
            "shapes only (another method; values: the Captum row)", goal=0.95),
    ]

    captum = peer("captum.attr", FAMILY, "guided backprop and DeconvNet vs Captum")
    if isinstance(captum, Skipped):
        return out + [captum]
    version = f"captum {_version('captum')}"

    def captum_call(cls):
        return lambda: cls(model).attribute(x.clone().requires_grad_(True), target=targets)

    out += [
        Row(FAMILY, "guided backprop vs Captum GuidedBackprop", workload, batch, "images",
            attribution(guided_backprop), captum_call(captum.GuidedBackprop),
            f"{version} GuidedBackprop", ours_vs, tol, equal),
        Row(FAMILY, "DeconvNet vs Captum Deconvolution", workload, batch, "images",
            attribution(deconvnet), captum_call(captum.Deconvolution),
            f"{version} Deconvolution", ours_vs, tol, equal),
    ]
    return out
