"""`convlens smoothgrad | integrated-gradients | cascading-randomization` (the seed's "data
gradient and friends", METHODS.md §5). saliency, deconvnet, guided-backprop, grad-cam and
guided-grad-cam are built from their view records (`convlens.techniques.gradients`,
`commands/views.py`); these three are hand-written: SmoothGrad's --method and --seed,
integrated gradients' --baseline (a word or a number) and the sanity check's --seed are more
than a plain mapping of options."""
from __future__ import annotations

import argparse

from ..techniques.gradients import LAYER, TARGET
from .common import (
    command,
    image_options,
    images_from,
    layer_list,
    lens_from,
    model_options,
    name_list,
    options,
    output_options,
    positive_float,
    positive_int,
    save_result,
)
from .views import add_option


def _common(p: argparse.ArgumentParser, name: str) -> None:
    model_options(p)
    image_options(p)
    add_option(p, TARGET)
    output_options(p, name)


def _run(args, fn, **kwargs) -> int:
    """Load model and images, explain each image's target, save, and say what was explained."""
    from ..techniques.gradients.targets import parse_target

    lens = lens_from(args)
    x, _ = images_from(args, lens)
    res = fn(lens, x, target=parse_target(lens, args.target), **kwargs)
    save_result(res, args, lens)
    for line in res.summary():
        print(line)
    return 0


def _smooth_opts(p):
    _common(p, "smoothgrad")
    add_option(p, LAYER)
    p.add_argument("--method", default="saliency",
                   choices=["saliency", "guided-backprop", "deconvnet", "grad-cam",
                            "guided-grad-cam", "integrated-gradients"],
                   help="the method to smooth (default saliency)")
    p.add_argument("--samples", type=positive_int, default=50,
                   help="noisy copies per image (default 50)")
    p.add_argument("--noise", type=positive_float, default=0.15,
                   help="noise std as a share of each image's value range (default 0.15; the "
                        "noise is seeded by --seed)")
    p.add_argument("--batch-size", type=positive_int, default=64,
                   help="noisy images per pass (default 64)")


@command("smoothgrad", "SmoothGrad: a gradient map averaged over noisy copies of the image")
@options(_smooth_opts)
def cmd_smoothgrad(args) -> int:
    """SmoothGrad (Smilkov et al. 2017): average --method's maps over --samples copies of each
    image with Gaussian noise of std --noise times the image's value range."""
    from ..techniques.gradients.smoothing import smoothgrad
    extra = {"layer": args.layer} if args.method in ("grad-cam", "guided-grad-cam") else {}
    return _run(args, smoothgrad, method=args.method, samples=args.samples,
                noise_level=args.noise, seed=args.seed, batch_size=args.batch_size, **extra)


def _ig_opts(p):
    _common(p, "integrated-gradients")
    p.add_argument("--baseline", default="mean",
                   help="mean (zero after normalisation, default), black, white, or a raw "
                        "pixel value such as 0.5")
    p.add_argument("--steps", type=positive_int, default=50, help="integration points (default 50)")
    p.add_argument("--integration", default="gausslegendre",
                   choices=["gausslegendre", "riemann_left", "riemann_right", "riemann_middle",
                            "riemann_trapezoid"], help="quadrature rule (default gausslegendre)")
    p.add_argument("--internal-batch-size", type=positive_int, default=64,
                   help="images per forward pass along the path (bounds memory; default 64)")


@command("integrated-gradients", "integrated gradients from a baseline image to the input")
@options(_ig_opts)
def cmd_integrated_gradients(args) -> int:
    """Integrated gradients (Sundararajan et al. 2017): (x - x') times the gradient averaged
    along the straight path from the baseline x' to x; prints the completeness error."""
    from ..techniques.gradients.smoothing import integrated_gradients
    try:
        baseline: object = float(args.baseline)
    except ValueError:
        baseline = args.baseline
    return _run(args, integrated_gradients, baseline=baseline, steps=args.steps,
                method=args.integration, internal_batch_size=args.internal_batch_size)


def _sanity_opts(p):
    _common(p, "cascading-randomization")
    p.add_argument("--methods", type=name_list("method names"), default=None,
                   metavar="M1,M2",
                   help="the methods to check, e.g. saliency,guided-backprop (default: saliency, "
                        "guided-backprop, deconvnet, grad-cam, guided-grad-cam, "
                        "integrated-gradients, smoothgrad)")
    p.add_argument("--layers", type=layer_list, default=None, metavar="L1,L2",
                   help="the layers to randomise, top first (default: every conv and linear "
                        "layer, from the output down)")
    p.add_argument("--keep", type=positive_int, default=4,
                   help="keep the maps of this many images for the pictures (default 4)")


@command("cascading-randomization", "sanity checks: how each map changes as the model's "
                                    "weights are randomised, layer by layer from the top")
@options(_sanity_opts)
def cmd_cascading_randomization(args) -> int:
    """Sanity checks for saliency maps (Adebayo et al. 2018): on a copy of the model, re-initialise
    the layers one after another from the output down (seeded by --seed) and compare each
    method's maps with the trained model's (Spearman rank correlation and SSIM, per image)."""
    from ..techniques.gradients.sanity import cascading_randomization
    extra = {} if args.methods is None else {
        "methods": [m.replace("-", "_") for m in args.methods]}
    return _run(args, cascading_randomization, layers=args.layers, seed=args.seed,
                keep=args.keep, **extra)
