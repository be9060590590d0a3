"""``convlens correspondence``: how much spatial information each layer keeps (METHODS.md §7,
Long, Zhang & Darrell 2014): keypoint transfer by nearest neighbour, PCK per layer against
pixels and SIFT."""
from __future__ import annotations

import argparse

from .common import (
    command,
    data_from,
    fraction,
    layers_option,
    lens_from,
    model_options,
    name_list,
    nonnegative_int,
    options,
    output_options,
    positive_int,
    run_from,
    save_result,
)


def _close(s: str) -> tuple[str, tuple[float, float | None]]:
    parts = s.split(":")
    try:
        if len(parts) == 2:
            return parts[0], (float(parts[1]), None)
        if len(parts) == 3:
            return parts[0], (float(parts[1]), float(parts[2]))
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected KEY:TOLERANCE[:PERIOD], got {s!r}")


def _opts(p: argparse.ArgumentParser) -> None:
    model_options(p)
    g = p.add_argument_group("data and pairs")
    g.add_argument("--data", required=True, metavar="SPEC",
                   help="builtin:NAME[:SPLIT], a folder of class folders, or a .csv/.parquet "
                        "manifest (keypoints as kp_<name>_x, kp_<name>_y columns)")
    g.add_argument("--pairs", default="warp", metavar="warp|intraclass|FILE",
                   help="warp: each item and a random warp of it (default); intraclass: two "
                        "items of one class with the same keypoint names; FILE: a CSV/Parquet "
                        "table with columns a, b (item indices or paths)")
    g.add_argument("--n", type=positive_int, default=100, help="number of pairs (default 100)")
    g.add_argument("--warp", default="affine", choices=("affine", "tps", "mixed"),
                   help="warp pairs: affine, thin-plate spline, or alternating (default affine)")
    g.add_argument("--points", type=positive_int, default=8,
                   help="warp pairs of items without keypoints: textured points per image "
                        "(default 8)")
    g.add_argument("--close", type=_close, action="append", metavar="KEY:TOL[:PERIOD]",
                   help="intraclass pairs: metadata that must agree, e.g. rotation:30:360 for "
                        "builtin:shapes, whose keypoint names turn with the shape (repeatable)")
    g.add_argument("--max-pixels", type=positive_int, default=None,
                   help="skip images with more pixels than this (default: PIL's bomb limit)")
    s = p.add_argument_group("scoring")
    layers_option(s, "layers to score (default: every ReLU with a spatial map)")
    s.add_argument("--alpha", type=fraction, default=0.1,
                   help="a transfer is correct within alpha x max(h, w) pixels (default 0.1)")
    s.add_argument("--metric", default="cosine", choices=("cosine", "l2"),
                   help="feature similarity (default cosine)")
    s.add_argument("--baselines", type=name_list("baseline names"), default=["pixels", "sift"],
                   metavar="B1,B2",
                   help="pixels, sift, or none (default pixels,sift)")
    s.add_argument("--search", default="cells", choices=("cells", "grid"),
                   help="features in B: the layer's own cells (default; precision = its stride) "
                        "or interpolated on the baselines' grid (one precision for all)")
    s.add_argument("--step", type=positive_int, default=None,
                   help="grid step in pixels of the baselines' search in B (default size/32)")
    s.add_argument("--batch-size", type=positive_int, default=64,
                   help="images per forward call (default 64)")
    s.add_argument("--examples", type=nonnegative_int, default=4,
                   help="example pairs drawn (default 4)")
    output_options(p, "correspondence")


@command("correspondence", "keypoint transfer by nearest neighbour per layer, PCK against pixels "
                           "and SIFT (Long, Zhang & Darrell 2014)")
@options(_opts)
def cmd_correspondence(args) -> int:
    """For each keypoint of image A, take the feature at its place in a layer, find the most
    similar feature position in image B and map it back to pixels; a transfer is correct within
    alpha x max(h, w) of the true point (PCK). Scores every layer and the pixel and SIFT
    baselines on the same pairs, with bootstrap 95 % intervals. Writes the PCK table, every
    transfer, a plot of PCK against depth and example pairs into --out."""
    from ..techniques.correspondence.correspondence import correspondence

    lens = lens_from(args)
    data = data_from(args, lens)
    baselines = [] if args.baselines == ["none"] else args.baselines
    res = correspondence(lens, args.pairs, args.layers, args.alpha, data=data, n=args.n,
                         metric=args.metric, baselines=baselines, step=args.step,
                         search=args.search, warp=args.warp,
                         close=dict(args.close) if args.close else None, points=args.points,
                         seed=args.seed, examples=args.examples, run=run_from(args))
    for line in res.summary():
        print(line)
    save_result(res, args, lens)
    return 0
