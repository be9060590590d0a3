"""`convlens evaluate`: top-1, top-5 and per-class accuracy of a model on labelled data."""
from __future__ import annotations

import json

from .common import (
    command,
    data_from,
    data_options,
    format_option,
    item_indices,
    lens_from,
    model_options,
    options,
    run_from,
)


def _evaluate_opts(p):
    model_options(p)
    data_options(p)
    format_option(p)


@command("evaluate", "top-1 / top-5 and per-class accuracy of a model on labelled data")
@options(_evaluate_opts)
def cmd_evaluate(args) -> int:
    """Accuracy of --model on --data: top-1, top-5 and per class. The data's class names are the
    truth: when they differ from the model's labels they are matched by name, and where none
    matches no accuracy is claimed (each class's most frequent prediction is shown instead)."""
    from dataclasses import asdict

    from ..techniques.units.evaluate import evaluate

    lens = lens_from(args)
    data = data_from(args, lens)
    ev = evaluate(lens, data, indices=item_indices(args, len(data)), run=run_from(args))
    if args.format == "json":
        print(json.dumps({"model": lens.name, "weights": lens.weights, "data": args.data,
                          **asdict(ev)}, indent=1))
    elif args.format == "csv":
        print("class,accuracy,images")
        for name, n in ev.per_class_n.items():
            acc = ev.per_class.get(name)
            print(f"{_csv(name)},{'' if acc is None else f'{acc:.6f}'},{n}")
    else:
        print(f"{lens.name} ({lens.weights}) on {args.data}: " + ev.summary())
    return 0


def _csv(s: str) -> str:
    return '"' + s.replace('"', '""') + '"' if any(c in s for c in ',"\n') else s
