"""The commands built from the view records (`convlens.views.View`): a view whose record says
``inputs="images"`` or ``inputs="model"`` gets ``convlens <name-with-dashes>`` here, with the
shared option groups (model, input images, output) and the options its record declares. A view
whose record says ``inputs=None`` has a hand-written command in this package, under the same
name."""
from __future__ import annotations

import argparse
import inspect

from ..views import Option, View
from . import common

#: names of the shared value types a record's `Option.type` may give
TYPES = {
    "positive_int": common.positive_int, "nonnegative_int": common.nonnegative_int,
    "positive_float": common.positive_float, "fraction": common.fraction,
    "open_fraction": common.open_fraction, "unit_interval": common.unit_interval,
    "layer_list": common.layer_list, "target": str,
}


def add_option(p: argparse.ArgumentParser, opt: Option) -> None:
    kw = {"help": opt.help, "dest": opt.dest}
    if opt.action:
        kw["action"] = opt.action
    else:
        kw["type"] = TYPES.get(opt.type, opt.type) if isinstance(opt.type, str) else opt.type
        kw["metavar"] = opt.metavar
        if opt.choices is not None:
            kw["choices"] = list(opt.choices)
    if opt.default is not None or not opt.action:
        kw["default"] = opt.default
    p.add_argument(opt.flag, **{k: v for k, v in kw.items() if v is not None or k == "default"})


def options_of(view: View):
    def add(p: argparse.ArgumentParser) -> None:
        common.model_options(p)
        if view.inputs == "images":
            common.image_options(p)
        g = p.add_argument_group(view.title)
        for opt in view.options:
            add_option(g, opt)
        common.output_options(p, view.command)
    return add


def run_view(view: View, args) -> int:
    """Load the model (and the images), call the view's function with the options its record
    names, save the result into --out and print its summary."""
    lens = common.lens_from(args)
    kwargs = {}
    for opt in view.options:
        if opt.parameter is None:
            continue
        value = getattr(args, opt.dest)
        if opt.type == "target":
            from ..techniques.gradients.targets import parse_target
            value = parse_target(lens, value)
        kwargs[opt.parameter] = value
    fn = view.load()
    if "seed" in inspect.signature(fn).parameters and "seed" not in kwargs:
        kwargs["seed"] = args.seed  # --seed: the seed of every random choice (common options)
    if view.inputs == "images":
        x, _ = common.images_from(args, lens)
        result = fn(lens, x, **kwargs)
    else:
        result = fn(lens, **kwargs)
    common.save_result(result, args, lens)
    for line in getattr(result, "summary", lambda: [])():
        print(line)
    return 0


def register_views(views: list[View]) -> None:
    """Add a command for each view that has no hand-written one."""
    for view in views:
        if view.inputs is None or not view.command_line or view.command in common.COMMANDS:
            continue

        def fn(args, view=view) -> int:
            return run_view(view, args)

        fn.__doc__ = f"{view.title}: {view.line}." + (
            f" ({view.function.rpartition(':')[2]} in the Python API.)")
        common.COMMANDS[view.command] = (options_of(view), fn, view.line)
