"""What every sub-command shares: the registry (`command`, `options`), the common option
groups (model, data, input images, output) and turning them into a `Lens`, a dataset or a batch.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from ..errors import ConvlensError

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable, str]] = {}


def command(name: str, help: str):
    """Register ``convlens NAME``: the decorated function gets the parsed args."""
    def deco(fn):
        def add(p):  # the parser options are declared by the function's `options` attribute
            for opt in getattr(fn, "options", []):
                opt(p)
        COMMANDS[name] = (add, fn, help)
        return fn
    return deco


def options(*adders):
    def deco(fn):
        fn.options = list(adders) + getattr(fn, "options", [])
        return fn
    return deco


# -- shared options ------------------------------------------------------------------------
def model_options(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", required=required, metavar="SPEC",
                   help="builtin:NAME, torchvision:NAME[:WEIGHTS], timm:NAME, a TorchScript "
                        "file, or package.module:factory")
    g.add_argument("--weights", metavar="FILE",
                   help="checkpoint (state dict) loaded with torch.load(weights_only=True)")
    g.add_argument("--input-size", metavar="C,H,W", type=_ints,
                   help="override the model's input size, e.g. 3,224,224")
    g.add_argument("--mean", metavar="M[,M,M]", type=_floats, help="override the input mean")
    g.add_argument("--std", metavar="S[,S,S]", type=_floats, help="override the input std")
    g.add_argument("--labels", metavar="FILE", help="class names, one per line")


def data_options(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", required=required, metavar="SPEC",
                   help="builtin:NAME[:SPLIT], a folder of class folders, or a .csv/.parquet "
                        "manifest with a 'path' column")
    g.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    g.add_argument("--workers", type=int, default=0, help="data loader processes (default 0)")
    g.add_argument("--max-pixels", type=int, default=None,
                   help="skip images with more pixels than this (default: PIL's bomb limit)")


def _ints(s: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {s!r}")


def _floats(s: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {s!r}")


def lens_from(args):
    """The `Lens` the model options name."""
    from ..models import load_model

    labels = None
    if getattr(args, "labels", None):
        try:
            with open(args.labels, encoding="utf-8") as f:
                labels = [line.rstrip("\n") for line in f if line.strip()]
        except OSError as e:
            raise ConvlensError(f"cannot read labels file {args.labels}: {e.strerror}") from None
    return load_model(args.model, args.weights, mean=args.mean, std=args.std,
                      input_size=args.input_size, labels=labels)


def output_options(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--out", metavar="DIR", default=default,
                   help=f"folder for manifest.json, arrays, tables and pictures (default: {default})")


def save_result(result, args, lens=None, model: dict | None = None) -> None:
    """Save `result` into ``args.out`` with the command line in its manifest; say where.
    `model`: the model entry to record when there is no lens (from a saved result)."""
    out = result.save(args.out, lens=lens, command=["convlens"] + sys.argv[1:], model=model)
    print(f"wrote {out}/manifest.json")


def image_options(p: argparse.ArgumentParser) -> None:
    """--image FILE (repeatable) or --data SPEC with --n: the images a per-image view explains."""
    g = p.add_argument_group("input")
    g.add_argument("--image", action="append", metavar="FILE", help="an image file (repeatable)")
    g.add_argument("--data", metavar="SPEC", help="or a data spec: its first --n items")
    g.add_argument("--n", type=int, default=4, help="images taken from --data (default 4)")
    g.add_argument("--max-pixels", type=int, default=None,
                   help="refuse images with more pixels than this (default: PIL's bomb limit)")


def images_from(args, lens) -> tuple:
    """``(x (N, C, H, W), names)`` from --image FILE... or the first --n items of --data."""
    import torch

    from ..data import Loader
    from ..data.images import open_image

    if getattr(args, "image", None):
        xs = []
        for path in args.image:
            try:
                xs.append(lens.preprocess(open_image(path, getattr(args, "max_pixels", None))))
            except ConvlensError as e:
                raise ConvlensError(f"{path}: {e}") from None
        return torch.stack(xs), list(args.image)
    if getattr(args, "data", None):
        ds = data_from(args, lens)
        batches = list(Loader(ds, batch_size=args.n, indices=range(min(args.n, len(ds)))))
        if not batches:
            raise ConvlensError(f"no readable images in {args.data}")
        return batches[0].images, [ds.source(int(i)) for i in batches[0].indices]
    raise ConvlensError("give --image FILE (repeatable) or --data SPEC")


def data_from(args, lens=None):
    from ..data import load_data
    return load_data(args.data, lens=lens, max_pixels=getattr(args, "max_pixels", None))
