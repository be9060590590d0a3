"""The `convlens` command line: thin wrappers that parse, call the API and save.

A user error (bad spec, unknown layer, missing file) prints one line on stderr and exits with
code 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Callable

from .errors import ConvlensError

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
    from .models import load_model

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

    from .data import Loader
    from .data.images import open_image

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
    from .data import load_data
    return load_data(args.data, lens=lens, max_pixels=getattr(args, "max_pixels", None))


# -- commands ------------------------------------------------------------------------------
def _layers_opts(p):
    model_options(p)
    p.add_argument("--layer", action="append", metavar="NAME",
                   help="show only this layer (repeatable); default: every named module")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table",
                   help="output format (default: an aligned table)")
    p.add_argument("--out", metavar="DIR", help="also save the table as a result (for the report)")


@command("layers", "list every layer: type, output shape, receptive field size/stride/centre")
@options(_layers_opts)
def cmd_layers(args) -> int:
    """Print the layer table of a model (one dry run at the model's input size)."""
    from .lens import format_layers

    lens = lens_from(args)
    infos = lens.layers()
    if args.layer:
        for name in args.layer:
            lens.layer(name)  # an unknown name: error naming the close matches
        infos = [i for i in infos if i.name in args.layer]
    if args.format == "table":
        print(f"# {lens.name}: input {'x'.join(map(str, lens.input_size))}, "
              f"{lens.num_classes or '?'} classes; receptive fields in input pixels")
        print(format_layers(infos))
    elif args.format == "json":
        print(json.dumps([i.row() for i in infos], indent=1))
    else:
        import csv
        rows = [i.row() for i in infos]
        w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["name"])
        w.writeheader()
        w.writerows(rows)
    if args.out:
        from .lens import LayersResult
        LayersResult(infos).save(args.out, lens=lens, command=["convlens"] + sys.argv[1:])
    return 0


def _data_opts(p):
    data_options(p)
    model_options(p, required=False)


@command("data", "check a data spec: count items and classes, report unreadable files")
@options(_data_opts)
def cmd_data(args) -> int:
    """Read every item of a dataset once (preprocessed for --model if given) and summarise."""
    from collections import Counter

    from .data import Loader

    lens = lens_from(args) if args.model else None
    ds = data_from(args, lens)
    loader = Loader(ds, batch_size=args.batch_size, workers=args.workers, progress=True)
    counts: Counter = Counter()
    shape = None
    for batch in loader:
        counts.update(batch.labels.tolist())
        shape = tuple(batch.images.shape[1:])
    good = sum(counts.values())
    print(f"{args.data}: {len(ds)} items, {good} loaded, {len(loader.skipped)} skipped"
          + (f", image shape {'x'.join(map(str, shape))}" if shape else ""))
    if counts:
        names = ds.classes
        for k in sorted(counts):
            name = names[k] if names and 0 <= k < len(names) else ("(no label)" if k < 0 else str(k))
            print(f"  {k:>4}  {name:<24} {counts[k]}")
    return 0


def _evaluate_opts(p):
    model_options(p)
    data_options(p)
    p.add_argument("--limit", type=int, default=None, help="only the first N items")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


@command("evaluate", "top-1 / top-5 and per-class accuracy of a model on labelled data")
@options(_evaluate_opts)
def cmd_evaluate(args) -> int:
    """Accuracy of --model on --data: top-1, top-5 and per class."""
    from dataclasses import asdict

    from .evaluate import evaluate

    lens = lens_from(args)
    ev = evaluate(lens, data_from(args, lens), batch_size=args.batch_size,
                  workers=args.workers, limit=args.limit)
    print(json.dumps(asdict(ev), indent=1) if args.json else f"{lens.name} on {args.data}: " + ev.summary())
    return 0


def _train_opts(p):
    p.add_argument("model", metavar="builtin:NAME",
                   help="the built-in model to retrain from scratch (fashion-net, shapes-net)")
    p.add_argument("--out", metavar="FILE", help="where to save the state dict (default: NAME.pt)")
    p.add_argument("--epochs", type=int, help="override the recipe's number of epochs")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--history", metavar="FILE", help="also save the per-epoch log as JSON")
    p.add_argument("--monitor", metavar="DIR",
                   help="where the training monitor (dead filters, sparsity, filter noise on "
                        "512 test images, every --monitor-every steps) saves its table and plots "
                        "(default: NAME-monitor)")
    p.add_argument("--monitor-every", type=int, default=None, metavar="STEPS",
                   help="monitor every STEPS optimiser steps (default: once per epoch)")


@command("train", "retrain a built-in model from scratch with its recipe (deterministic)")
@options(_train_opts)
def cmd_train(args) -> int:
    """Retrain builtin:fashion-net or builtin:shapes-net from scratch with the recipe in
    docs/models.md, seeded, and save the weights; use them with --weights FILE."""
    from .models.train import train_builtin

    name = args.model.removeprefix("builtin:")
    out = args.out or f"{name}.pt"
    _, result = train_builtin(name, out=out, seed=args.seed, epochs=args.epochs, monitor=True,
                              monitor_every=args.monitor_every)
    mon = result.monitor.result(f"{name}, seed {args.seed}").save(
        args.monitor or f"{name}-monitor", command=["convlens"] + sys.argv[1:])
    print(f"training monitor: {mon}/monitor.png")
    if args.history:
        with open(args.history, "w", encoding="utf-8") as f:
            json.dump(result.to_dict(), f, indent=1)
    print(f"{name}: test accuracy {result.test_accuracy:.4f} after {len(result.history)} epochs "
          f"in {result.seconds:.0f} s; weights saved to {out}")
    return 0


# -- entry point ---------------------------------------------------------------------------
def _import_commands() -> None:
    import importlib
    import pkgutil

    from . import commands
    for mod in sorted(m.name for m in pkgutil.iter_modules(commands.__path__)):
        importlib.import_module(f"{commands.__name__}.{mod}")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    _import_commands()

    parser = argparse.ArgumentParser(
        prog="convlens",
        description="See what a convolutional network has learned. Each sub-command is one "
                    "view; `convlens COMMAND --help` explains its options.")
    parser.add_argument("--version", action="version", version=f"convlens {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (add, fn, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=(fn.__doc__ or help_).strip())
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks for errors")
        add(p)
        p.set_defaults(func=fn)
    return parser


def _one_line_warnings(message, category, filename, lineno, file=None, line=None):
    print(f"convlens: warning: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = getattr(args, "debug", False)
    if not debug:
        warnings.showwarning = _one_line_warnings
    try:
        return int(args.func(args) or 0)
    except ConvlensError as e:
        if debug:
            raise
        print(f"convlens: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("convlens: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
