"""``convlens invert``: images reconstructed from the codes of one or more layers (Mahendran &
Vedaldi 2015; METHODS.md §6)."""
from __future__ import annotations

import argparse

from .common import (
    command,
    image_options,
    images_from,
    layer_list,
    lens_from,
    model_options,
    options,
    output_options,
    positive_float,
    positive_int,
    save_result,
)


def _opts(p: argparse.ArgumentParser) -> None:
    model_options(p)
    image_options(p)
    p.add_argument("--layers", type=layer_list, required=True, metavar="L1,L2,...",
                   help="layers to reconstruct from (comma-separated names from "
                        "`convlens layers`); every image is reconstructed from each, in one batch")
    p.add_argument("--steps", type=positive_int, default=400,
                   help="gradient steps (default 400, as the paper)")
    p.add_argument("--lambda-tv", default=None, metavar="W|paper",
                   help="weight of the total-variation prior (default 0.05 for every layer; "
                        "'paper': Mahendran & Vedaldi's 1/10/100 by depth)")
    p.add_argument("--lambda-alpha", type=float, default=None, metavar="W",
                   help="weight of the alpha-norm prior (default: the paper's)")
    p.add_argument("--no-priors", action="store_true",
                   help="turn both priors off (a pure match of the code)")
    p.add_argument("--lr", type=positive_float, default=0.01, help="base rate (default 0.01)")
    output_options(p, "invert")


@command("invert", "reconstruct images from their codes at several layers "
                   "(Mahendran & Vedaldi 2015)")
@options(_opts)
def cmd_invert(args) -> int:
    """Reconstruct each image from the code of each layer: argmin_x ||Phi(x) - Phi0||^2 /
    ||Phi0||^2 + alpha-norm and total-variation priors (Mahendran & Vedaldi 2015), every
    (layer, image) pair in one batch. Writes the reconstructions (.npy), a table of the
    representation and pixel errors per layer and image, the strip (.png) and manifest.json."""
    from ..errors import ConvlensError
    from ..techniques.synthesis.inversion import invert

    lens = lens_from(args)
    x, names = images_from(args, lens)
    lam_tv = args.lambda_tv
    if lam_tv is not None and lam_tv != "paper":
        try:
            lam_tv = float(lam_tv)
        except ValueError:
            raise ConvlensError(
                f"--lambda-tv must be a number or 'paper', got {lam_tv!r}") from None
    res = invert(lens, x, args.layers, steps=args.steps, lambda_tv=lam_tv,
                 lambda_alpha=args.lambda_alpha, regularize=not args.no_priors, lr=args.lr,
                 seed=args.seed, names=names)
    save_result(res, args, lens)
    for line in res.summary():
        print(line)
    return 0
