"""`convlens evaluate`: top-1, top-5 and per-class accuracy of a model on labelled data."""
from __future__ import annotations

import json

from .common import command, data_from, data_options, lens_from, model_options, options


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

    from ..techniques.evaluate import evaluate

    lens = lens_from(args)
    ev = evaluate(lens, data_from(args, lens), batch_size=args.batch_size,
                  workers=args.workers, limit=args.limit)
    print(json.dumps(asdict(ev), indent=1) if args.json else f"{lens.name} on {args.data}: " + ev.summary())
    return 0
