"""`convlens saliency | deconvnet | guided-backprop | grad-cam | guided-grad-cam | smoothgrad |
integrated-gradients` (the seed's "data gradient and friends", METHODS.md §5)."""
from __future__ import annotations

import argparse

from .common import (
    command,
    image_options,
    images_from,
    lens_from,
    model_options,
    options,
    output_options,
    positive_float,
    positive_int,
    save_result,
)


def _common(p: argparse.ArgumentParser, name: str) -> None:
    model_options(p)
    image_options(p)
    p.add_argument("--target", default="auto", metavar="CLASS|auto|LAYER:CHANNEL[:Y:X]",
                   help="what to explain: auto (the predicted class, default), a class index or "
                        "name (score before softmax), or one unit of a layer, e.g. "
                        "features.11:5 (at its strongest position) or features.11:5:3:4")
    output_options(p, name)


def _cam_layer(p):
    p.add_argument("--layer", metavar="NAME", default=None,
                   help="conv layer for Grad-CAM (default: the last conv block's output)")


def _run(args, fn, **kwargs) -> int:
    """Load model and images, explain each image's target, save, and say what was explained."""
    from ..techniques.gradients.targets import parse_target

    lens = lens_from(args)
    x, _ = images_from(args, lens)
    res = fn(lens, x, target=parse_target(lens, args.target), **kwargs)
    save_result(res, args, lens)
    delta = res.params.get("delta")
    for i, t in enumerate(res.targets):
        extra = "" if delta is None else f", completeness error {delta[i]:+.3g}"
        print(f"  image {i}: {t}, predicted {lens.label(int(res.predicted[i]))}{extra}")
    return 0


@command("saliency", "image-specific class saliency: max |dS/dx| over colour channels")
@options(lambda p: _common(p, "saliency"))
def cmd_saliency(args) -> int:
    """Saliency map (Simonyan et al. 2014): the gradient of the class score (before softmax) or
    of one unit with respect to the pixels; map = max over colour channels of |gradient|.
    Writes map, signed gradient (attribution), overlays and manifest.json."""
    from ..techniques.gradients.gradients import saliency
    return _run(args, saliency)


@command("deconvnet", "DeconvNet projection (Zeiler & Fergus) of a class or one unit")
@options(lambda p: _common(p, "deconvnet"))
def cmd_deconvnet(args) -> int:
    """DeconvNet (Zeiler & Fergus 2014): project a unit (others of its layer zeroed) or a class
    score back to pixels; every ReLU passes max(R, 0) back whatever its input's sign; max
    pooling uses the forward switches."""
    from ..techniques.gradients.gradients import deconvnet
    return _run(args, deconvnet)


@command("guided-backprop", "guided backpropagation (Springenberg et al.) of a class or unit")
@options(lambda p: _common(p, "guided-backprop"))
def cmd_guided_backprop(args) -> int:
    """Guided backpropagation (Springenberg et al. 2015): the gradient, but every ReLU (module
    or functional, in-place or not) passes back [f > 0] * max(R, 0)."""
    from ..techniques.gradients.gradients import guided_backprop
    return _run(args, guided_backprop)


def _cam_opts(name):
    def add(p):
        _common(p, name)
        _cam_layer(p)
    return add


@command("grad-cam", "Grad-CAM heat map at a conv layer (default: the last conv block)")
@options(_cam_opts("grad-cam"))
def cmd_grad_cam(args) -> int:
    """Grad-CAM (Selvaraju et al. 2017): ReLU(sum_k alpha_k A^k), alpha_k the gradient of the
    target averaged over the layer's positions; upsampled bilinearly to the input."""
    from ..techniques.gradients.cam import grad_cam
    return _run(args, grad_cam, layer=args.layer)


@command("guided-grad-cam", "guided backprop times the upsampled Grad-CAM")
@options(_cam_opts("guided-grad-cam"))
def cmd_guided_grad_cam(args) -> int:
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backpropagation times Grad-CAM."""
    from ..techniques.gradients.cam import guided_grad_cam
    return _run(args, guided_grad_cam, layer=args.layer)


def _smooth_opts(p):
    _common(p, "smoothgrad")
    _cam_layer(p)
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
