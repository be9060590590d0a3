"""``convlens class-model`` (Simonyan et al. 2014, §2) and ``convlens feature-visualization``
(Olah et al., Distill 2017): images optimised to excite a class or the channels of a layer."""
from __future__ import annotations

import argparse

from .common import (
    command,
    lens_from,
    model_options,
    nonnegative_int,
    options,
    output_options,
    positive_float,
    positive_int,
    save_result,
)


def _ints(s: str) -> list[int]:
    try:
        v = [int(a) for a in s.split(",") if a.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {s!r}")
    if not v:
        raise argparse.ArgumentTypeError("give at least one channel")
    return v


def _class_opts(p: argparse.ArgumentParser) -> None:
    model_options(p)
    p.add_argument("--targets", metavar="C1,C2,...",
                   help="the classes to model (indices or label names, comma-separated; "
                        "default: all)")
    p.add_argument("--steps", type=positive_int, default=200, help="gradient steps (default 200)")
    p.add_argument("--l2", type=float, default=3e-3, metavar="LAMBDA",
                   help="weight of the L2 prior lambda ||I||^2 (default 3e-3)")
    p.add_argument("--lr", type=positive_float, default=0.1,
                   help="rate of the ascent (default 0.1)")
    p.add_argument("--jitter", type=nonnegative_int, default=0, metavar="PX",
                   help="random shift before each step, pixels (Yosinski et al.; default 0)")
    p.add_argument("--blur", type=float, default=0.0, metavar="SIGMA",
                   help="Gaussian blur of this std (pixels) every 4 steps (default 0: off)")
    output_options(p, "class-model")


@command("class-model", "class model visualisation: the image that maximises each class score "
                        "(Simonyan et al. 2014)")
@options(_class_opts)
def cmd_class_model(args) -> int:
    """For each class c, the image I* = argmax_I S_c(I) - lambda ||I||^2 (S_c: the class score
    before softmax; Simonyan, Vedaldi & Zisserman 2014, §2), by gradient ascent from the mean
    image plus a little noise, pixels kept in range. Writes the images (.npy), a table of
    scores and p(class | image), the labelled grid (.png) and manifest.json."""
    from ..techniques.synthesis.featvis import class_model

    lens = lens_from(args)
    targets = None if not args.targets else [
        c.strip() for c in args.targets.split(",") if c.strip()]
    res = class_model(lens, targets, steps=args.steps, l2_weight=args.l2, lr=args.lr,
                      jitter_px=args.jitter, blur_sigma=args.blur, seed=args.seed)
    save_result(res, args, lens)
    for line in res.summary():
        print(line)
    return 0


def _featvis_opts(p: argparse.ArgumentParser) -> None:
    model_options(p)
    p.add_argument("--layer", required=True, metavar="NAME",
                   help="the layer whose channels to visualise (`convlens layers` lists them)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--channels", type=_ints, metavar="C1,C2,...", help="channels to visualise")
    g.add_argument("--all", action="store_true",
                   help="every channel of the layer, one batch (the default without --channels)")
    p.add_argument("--objective", choices=("channel", "neuron"), default="channel",
                   help="channel: mean activation over positions (default); neuron: the "
                        "activation at the centre position")
    p.add_argument("--param", choices=("fft", "pixel"), default="fft",
                   help="image parameterisation: fft (1/f-scaled spectrum, decorrelated colour "
                        "with --data; default) or pixel")
    p.add_argument("--steps", type=positive_int, default=256,
                   help="optimisation steps (default 256)")
    p.add_argument("--lr", type=positive_float, default=0.05, help="Adam's rate (default 0.05)")
    p.add_argument("--data", metavar="SPEC",
                   help="data to measure colour statistics on (decorrelated colour space)")
    p.add_argument("--no-transforms", action="store_true",
                   help="no random jitter, scale and rotation between steps")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="channels per batch (default: all at once)")
    output_options(p, "feature-visualization")


@command("feature-visualization", "feature visualisation: images that maximise each channel "
                                   "of a layer (Olah et al. 2017)")
@options(_featvis_opts)
def cmd_feature_visualization(args) -> int:
    """Optimise one image per channel of --layer so that the channel's mean activation (or its
    centre neuron) is as large as possible: 1/f Fourier parameterisation in decorrelated colour,
    random jitter, scale and rotation at each step, Adam (Olah et al., Distill 2017). All
    channels are one batch. Writes the images (.npy), a table of the objective per channel, the
    grid (.png) and manifest.json."""
    from ..errors import ConvlensError
    from ..techniques.synthesis.featvis import feature_visualization

    lens = lens_from(args)
    if args.batch_size is not None and args.batch_size < 1:
        raise ConvlensError(f"--batch-size must be at least 1, got {args.batch_size}")
    res = feature_visualization(
        lens, args.layer, channels=args.channels or "all", steps=args.steps, param=args.param,
        lr=args.lr, data=args.data, transforms=None if args.no_transforms else "standard",
        batch_size=args.batch_size, unit=args.objective, seed=args.seed)
    save_result(res, args, lens)
    for line in res.summary():
        print(line)
    return 0
