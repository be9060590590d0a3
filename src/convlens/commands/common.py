"""What every sub-command shares: the registry (`command`, `options`), one vocabulary of options
(model, run, data, input images, layers, output) and turning them into a `Lens`, a dataset or a
batch.

The vocabulary (README, "Common options"): ``--model SPEC [--weights FILE]``, ``--seed S``
(random weights and every random choice), ``--device DEV``, ``--dtype T``; ``--data SPEC`` with
``--n N`` (the first N items; ``--sample`` for a seeded random sample instead), or ``--image
FILE`` (repeatable); ``--layers L1,L2`` (several) or ``--layer NAME`` (one); ``--format
table|csv|json`` for what is printed; ``--out DIR`` (default ``convlens-out/<command>``).
0.1.0 was never released: there are no old spellings.
"""
from __future__ import annotations

import argparse
import difflib
import re
import sys
import warnings
from typing import Callable

from ..errors import ConvlensError

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable, str]] = {}
DTYPES = ("float32", "bfloat16", "float16")


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


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit code 2) with a pointer to --help."""

    def error(self, message: str):  # noqa: D401  (argparse's name)
        m = re.match(r"argument COMMAND: invalid choice: '([^']*)'", message)
        if m:  # one line naming the closest commands, not argparse's list of all of them
            name = m.group(1)
            close = [c for c in COMMANDS if name and (
                name in c or any(len(name) >= 4 and w.startswith(name[:4]) for w in c.split("-")))]
            close = list(dict.fromkeys(close + difflib.get_close_matches(name, COMMANDS, 3, 0.75)))
            message = (f"no command {name!r}" + (f": did you mean {', '.join(close[:3])}?"
                                                 if close else ""))
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- value types -------------------------------------------------------------------------------
def _number(kind, what: str, ok: Callable[[float], bool]):
    def parse(s: str):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}")
        return v
    parse.__name__ = what  # argparse names the type in its messages
    return parse


positive_int = _number(int, "a positive integer", lambda v: v >= 1)
nonnegative_int = _number(int, "an integer >= 0", lambda v: v >= 0)
fraction = _number(float, "a number in (0, 1]", lambda v: 0 < v <= 1)
open_fraction = _number(float, "a number in (0, 1)", lambda v: 0 < v < 1)
unit_interval = _number(float, "a number in [0, 1]", lambda v: 0 <= v <= 1)
positive_float = _number(float, "a positive number", lambda v: v > 0)
port_number = _number(int, "a port number 1-65535", lambda v: 1 <= v <= 65535)


def _ints(s: str) -> tuple[int, ...]:
    try:
        v = tuple(int(a) for a in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas, got {s!r}") from None
    if any(a < 1 for a in v):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {s!r}")
    return v


def _floats(s: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {s!r}") from None


def _input_size(s: str) -> tuple[int, int, int]:
    v = _ints(s)
    if len(v) != 3:
        raise argparse.ArgumentTypeError(f"expected C,H,W (three integers), got {s!r}")
    return v


def name_list(what: str):
    """An argparse type: ``a, b,c`` -> ``["a", "b", "c"]``; nothing given is an error naming
    `what` (e.g. "layer names")."""
    def parse(s: str) -> list[str]:
        names = [n.strip() for n in s.split(",") if n.strip()]
        if not names:
            raise argparse.ArgumentTypeError(f"expected {what} separated by commas")
        return names
    parse.__name__ = what  # argparse names the type in its messages
    return parse


layer_list = name_list("layer names")


class ExtendAction(argparse.Action):
    """A repeatable option whose values are lists: ``--layers a,b --layers c`` -> [a, b, c]."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, (getattr(namespace, self.dest, None) or []) + list(values))


# -- option groups -----------------------------------------------------------------------------
def model_options(p: argparse.ArgumentParser, required: bool = True) -> None:
    """--model, --weights, the preprocessing overrides, and the run options (seed, device,
    dtype)."""
    g = p.add_argument_group("model")
    g.add_argument("--model", required=required, metavar="SPEC",
                   help="builtin:NAME, torchvision:NAME[:WEIGHTS], timm:NAME, a TorchScript "
                        "file, or package.module:factory")
    g.add_argument("--weights", metavar="FILE",
                   help="checkpoint (state dict) loaded with torch.load(weights_only=True); "
                        "without it a torchvision/timm architecture has random weights "
                        "(seeded by --seed)")
    g.add_argument("--input-size", metavar="C,H,W", type=_input_size,
                   help="override the model's input size, e.g. 3,224,224")
    g.add_argument("--mean", metavar="M[,M,M]", type=_floats, help="override the input mean")
    g.add_argument("--std", metavar="S[,S,S]", type=_floats, help="override the input std")
    g.add_argument("--labels", metavar="FILE", help="class names, one per line")
    g.add_argument("--output", metavar="KEY", default=None,
                   help="which part of the model's output is the class scores, when its forward "
                        "returns more than a tensor: a key or attribute (an integer: an index); "
                        "default: the tensor, else its 'logits', else the first tensor of a tuple")
    run_options(p)


def run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seed of random weights (an architecture without --weights) and of every "
                        "random choice: sampling, noise, directions, t-SNE (default 0)")
    g.add_argument("--device", default="cpu", metavar="DEV",
                   help="where the model runs: cpu (default), cuda, cuda:1, mps")
    g.add_argument("--dtype", default="float32", choices=DTYPES,
                   help="number type the model computes in (default float32)")


def data_options(p: argparse.ArgumentParser, required: bool = True, n_help: str = "all",
                 batch_help: str = "images per batch (default 64)") -> None:
    """--data SPEC, --n / --sample, and how to read it."""
    g = p.add_argument_group("data")
    g.add_argument("--data", required=required, metavar="SPEC",
                   help="builtin:NAME[:SPLIT], a folder of class folders, or a .csv/.parquet "
                        "manifest with a 'path' column")
    g.add_argument("--n", type=positive_int, default=None, metavar="N",
                   help=f"use N items: the first N, or a random sample with --sample "
                        f"(default {n_help})")
    g.add_argument("--sample", action="store_true",
                   help="take a random sample of --n items (seeded by --seed) instead of the "
                        "first N")
    g.add_argument("--batch-size", type=positive_int, default=64, help=batch_help)
    g.add_argument("--workers", type=nonnegative_int, default=0,
                   help="data loader processes (default 0)")
    g.add_argument("--max-pixels", type=positive_int, default=None,
                   help="skip images with more pixels than this (default: PIL's bomb limit)")


def image_options(p: argparse.ArgumentParser, n: int = 4) -> None:
    """--image FILE (repeatable) or --data SPEC with --n / --sample: the images a per-image view
    explains."""
    g = p.add_argument_group("input (--image or --data)")
    g.add_argument("--image", action="append", metavar="FILE", help="an image file (repeatable)")
    g.add_argument("--data", metavar="SPEC", help="or a data spec: its first --n items")
    g.add_argument("--n", type=positive_int, default=n, metavar="N",
                   help=f"images taken from --data (default {n})")
    g.add_argument("--sample", action="store_true",
                   help="take a random sample of --n items (seeded by --seed) instead of the "
                        "first N")
    g.add_argument("--max-pixels", type=positive_int, default=None,
                   help="refuse images with more pixels than this (default: PIL's bomb limit)")


def layers_option(p, help_: str, single: bool = False, required: bool = False) -> None:
    """``--layers L1,L2`` (several, repeatable) or, with `single`, ``--layer NAME``."""
    if single:
        p.add_argument("--layer", metavar="NAME", required=required, help=help_)
        return
    p.add_argument("--layers", type=layer_list, action=ExtendAction, default=None, metavar="L1,L2",
                   required=required, help=help_ + " (comma-separated, or repeat the option)")


def engine_options(p: argparse.ArgumentParser, checkpoint_every: int = 50) -> None:
    """How a dataset pass checkpoints, resumes and scales (the engine's options)."""
    r = p.add_argument_group("resume and scale")
    r.add_argument("--checkpoint-every", type=positive_int, default=checkpoint_every, metavar="N",
                   help=f"checkpoint every N batches (default {checkpoint_every})")
    r.add_argument("--no-resume", dest="resume", action="store_false",
                   help="start afresh even if --out holds a checkpoint of this run")
    r.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local (default) or ray (pip install 'convlens[ray]')")
    r.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="Ray cluster to connect to (default: RAY_ADDRESS, else a local Ray)")
    r.add_argument("--shard-size", type=positive_int, default=None, help="items per Ray task")


def output_options(p: argparse.ArgumentParser, view: str) -> None:
    default = f"convlens-out/{view}"
    p.add_argument("--out", metavar="DIR", default=default,
                   help=f"folder for manifest.json, arrays, tables and pictures "
                        f"(default: {default})")


def format_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("table", "csv", "json"), default="table",
                   help="how to print the result (default: an aligned table)")


# -- from options to objects -------------------------------------------------------------------
def lens_from(args, cast: bool = True):
    """The `Lens` the model options name, on --device (in --dtype with `cast`); says so when its
    weights are random."""
    import torch

    from ..models import load_model

    labels = None
    if getattr(args, "labels", None):
        try:
            with open(args.labels, encoding="utf-8") as f:
                labels = [line.rstrip("\n") for line in f if line.strip()]
        except OSError as e:
            raise ConvlensError(f"cannot read labels file {args.labels}: {e.strerror}") from None
    output = getattr(args, "output", None)
    if output is not None and output.lstrip("-").isdigit():
        output = int(output)
    lens = load_model(args.model, args.weights, mean=args.mean, std=args.std,
                      input_size=args.input_size, labels=labels, seed=getattr(args, "seed", 0),
                      output=output)
    if (lens.weights or "").startswith("random weights"):
        warnings.warn(f"{args.model} has {lens.weights} (no --weights FILE): it explains an "
                      "untrained network", RuntimeWarning, stacklevel=2)
    device = getattr(args, "device", "cpu") or "cpu"
    try:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ConvlensError(f"--device {device}: no CUDA device here; use --device cpu")
        lens = lens.to(dev)
    except (RuntimeError, AssertionError) as e:
        raise ConvlensError(f"--device {device}: {str(e).splitlines()[0]}") from None
    dtype = getattr(args, "dtype", "float32") or "float32"
    if cast and dtype != "float32":
        lens = lens.to(getattr(torch, dtype))
    return lens


def save_result(result, args, lens=None, model: dict | None = None) -> None:
    """Save `result` into ``args.out`` with the command line in its manifest; say where.
    `model`: the model entry to record when there is no lens (from a saved result)."""
    out = result.save(args.out, lens=lens, command=["convlens"] + sys.argv[1:], model=model)
    print(f"wrote {out}/manifest.json")


def item_indices(args, length: int):
    """Dataset indices --n and --sample choose (None: all items)."""
    import numpy as np

    n = getattr(args, "n", None)
    if n is None or n >= length:
        return None
    if getattr(args, "sample", False):
        return np.sort(np.random.default_rng(args.seed).choice(length, n, replace=False)).tolist()
    return list(range(n))


def images_from(args, lens) -> tuple:
    """``(x (N, C, H, W), names)`` from --image FILE... or --n items of --data."""
    import torch

    from ..data import Loader
    from ..data.images import open_image

    image, data = getattr(args, "image", None), getattr(args, "data", None)
    if image and data:
        raise ConvlensError("give --image FILE or --data SPEC, not both")
    if image:
        xs = []
        for path in image:
            try:
                xs.append(lens.preprocess(open_image(path, getattr(args, "max_pixels", None))))
            except ConvlensError as e:
                raise ConvlensError(f"{path}: {e}") from None
        x = torch.stack(xs)
        p = next(iter(lens.parameters()), None)
        return (x.to(p.device, p.dtype) if p is not None else x), list(image)
    if data:
        ds = data_from(args, lens)
        if len(ds) == 0:
            raise ConvlensError(f"{data} holds no items")
        idx = item_indices(args, len(ds)) or list(range(len(ds)))
        batches = list(Loader(ds, batch_size=len(idx), indices=idx))
        if not batches:
            raise ConvlensError(f"no readable images among the {len(idx)} taken from {data}")
        x = batches[0].images
        p = next(iter(lens.parameters()), None)
        return (x.to(p.device, p.dtype) if p is not None else x), \
            [ds.source(int(i)) for i in batches[0].indices]
    raise ConvlensError("give --image FILE (repeatable) or --data SPEC")


def data_from(args, lens=None, spec=None):
    """The dataset of ``--data`` (or of `spec`), preprocessed for `lens`."""
    from ..data import load_data
    spec = args.data if spec is None else spec
    ds = load_data(spec, lens=lens, max_pixels=getattr(args, "max_pixels", None))
    ds.spec = spec
    return ds


def on_interrupt(args, message: str) -> None:
    """What Ctrl-C should tell the user from now on (what was saved, how to continue)."""
    args._interrupt_message = message


def run_from(args, **overrides):
    """The `RunSettings` of a dataset view from the shared options (data's --batch-size and
    --workers, the engine's --engine/--checkpoint-every/--no-resume/--ray-address/--shard-size,
    --device and --dtype where the command has them): built once here, never per command."""
    from ..engine.settings import RunSettings

    engine = getattr(args, "engine", "local") or "local"
    dtype = getattr(args, "dtype", None)
    values = {
        "batch_size": getattr(args, "batch_size", None),
        "workers": getattr(args, "workers", None),
        "engine": engine,
        "resume": getattr(args, "resume", None),
        "checkpoint_every": getattr(args, "checkpoint_every", None),
        "shard_size": getattr(args, "shard_size", None),
        "ray_address": getattr(args, "ray_address", None),
        "channels_last": getattr(args, "channels_last", None),
        # locally the model runs where --device put it; a Ray task moves it itself
        "device": None if engine == "local" else getattr(args, "device", None),
        "dtype": None if dtype in (None, "float32") else dtype,
    }
    values.update(overrides)
    return RunSettings(**{k: v for k, v in values.items() if v is not None})
