"""``convlens occlusion``: Zeiler & Fergus occlusion maps of one or more image files."""
from __future__ import annotations

import argparse

from .common import (
    command,
    fraction,
    image_options,
    images_from,
    lens_from,
    model_options,
    nonnegative_int,
    options,
    output_options,
    positive_int,
    save_result,
    unit_interval,
)


def _pair(s: str) -> tuple[int, int]:
    try:
        v = [int(a) for a in s.lower().replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or H,W, got {s!r}") from None
    if len(v) == 1:
        v = v * 2
    if len(v) != 2 or min(v) < 1:
        raise argparse.ArgumentTypeError(f"expected N or H,W (positive integers), got {s!r}")
    return v[0], v[1]


def _opts(p: argparse.ArgumentParser) -> None:
    model_options(p)
    image_options(p)
    p.add_argument("--target", default="auto", metavar="CLASS|auto",
                   help="class whose probability is mapped: an index, a label name, or 'auto' "
                        "(each image's predicted class; default)")
    p.add_argument("--window", type=_pair, default=(16, 16), metavar="N|H,W",
                   help="occluder side in pixels (default 16)")
    p.add_argument("--stride", type=_pair, default=(8, 8), metavar="N|H,W",
                   help="occluder step in pixels (default 8)")
    p.add_argument("--fill", default="zero", metavar="zero|gray|mean|blur|VALUE",
                   help="what the occluder shows: zero (the dataset mean pixel; default), gray "
                        "(mid raw grey), mean (the image's mean colour), blur (the image blurred), "
                        "or a raw pixel value")
    p.add_argument("--mode", default="incremental",
                   choices=("incremental", "exact", "naive", "approximate"),
                   help="incremental: exact and fast (default); exact/naive: one full forward pass "
                        "per position; approximate: Krypton's tau threshold and drill-down")
    p.add_argument("--batch-size", type=positive_int, default=64,
                   help="occluded copies per pass (default 64)")
    p.add_argument("--layer", metavar="NAME",
                   help="also map the total activation of one feature map of this layer")
    p.add_argument("--channel", type=nonnegative_int, metavar="C",
                   help="that feature map (default: the strongest in the clean image)")
    p.add_argument("--tau", type=fraction, default=0.8,
                   help="approximate: projective-field threshold in (0, 1]; 1 = off "
                        "(default 0.8)")
    p.add_argument("--drill", type=unit_interval, default=0.5,
                   help="approximate: fraction of fine positions computed after the coarse pass "
                        "(default 0.5)")
    p.add_argument("--coarse-stride", type=_pair, metavar="N|H,W",
                   help="approximate: stride of the coarse pass (default 2 x stride)")
    p.add_argument("--no-reference", action="store_true",
                   help="approximate: skip the exact map (and the SSIM against it)")
    output_options(p, "occlusion")


@command("occlusion", "occlusion maps: p(class), most probable class and a feature map's "
                      "activation per occluder position (Zeiler & Fergus 2014)")
@options(_opts)
def cmd_occlusion(args) -> int:
    """Slide a square occluder over each image and map p(target), the most probable class and,
    with --layer, the total activation of one feature map (Zeiler & Fergus 2014, Fig. 7). Writes
    the maps (.npy), a table of positions, overlays (.png) and manifest.json into --out."""
    from ..techniques.occlusion.occlusion import occlusion

    lens = lens_from(args)
    x, names = images_from(args, lens)
    target = args.target
    result = occlusion(lens, x, target=target, window=args.window, stride=args.stride,
                       fill=args.fill, batch_size=args.batch_size, mode=args.mode,
                       layer=args.layer, channel=args.channel, tau=args.tau, drill=args.drill,
                       coarse_stride=args.coarse_stride, reference=not args.no_reference)
    for line in result.summary(names):
        print(line)
    save_result(result, args, lens)
    return 0
