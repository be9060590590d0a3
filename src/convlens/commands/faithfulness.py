"""`convlens faithfulness`: which map can I trust (issue 26)."""
from __future__ import annotations

import argparse

from .common import (
    command,
    data_from,
    data_options,
    engine_options,
    item_indices,
    lens_from,
    model_options,
    on_interrupt,
    options,
    output_options,
    positive_int,
    run_from,
    save_result,
)


def _names(s: str) -> list[str]:
    vals = [v.strip().replace("-", "_") for v in s.split(",") if v.strip()]
    if not vals:
        raise argparse.ArgumentTypeError("give at least one name")
    return vals


def _fractions(s: str) -> list[float]:
    try:
        vals = [float(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {s!r}")
    if not vals or not all(0 < v < 1 for v in vals):
        raise argparse.ArgumentTypeError("fractions must lie strictly between 0 and 1")
    return vals


def _opts(p: argparse.ArgumentParser) -> None:
    from ..techniques.faithfulness.faithfulness import (
        DEFAULT_METRICS,
        METHODS,
        METRICS,
        PASS_BATCH,
    )

    model_options(p)
    data_options(p, batch_help="perturbed images per forward pass (default 64); the pass "
                               f"takes {PASS_BATCH} images at a time")
    g = p.add_argument_group("faithfulness")
    g.add_argument("--methods", type=_names, default=None, metavar="M1,M2,...",
                   help="maps to score (default all: " + ", ".join(METHODS) + ")")
    g.add_argument("--metrics", type=_names, default=None, metavar="K1,K2,...",
                   help="metrics (default: " + ", ".join(DEFAULT_METRICS) + "; also: "
                   + ", ".join(k for k in METRICS if k not in DEFAULT_METRICS) + ")")
    g.add_argument("--steps", type=positive_int, default=28,
                   help="deletion and insertion steps (default 28)")
    g.add_argument("--fractions", type=_fractions, default=None, metavar="P1,P2,...",
                   help="ROAD's fractions removed (default 0.1,...,0.9)")
    g.add_argument("--samples", type=positive_int, default=16,
                   help="noise draws per image for infidelity (default 16)")
    g.add_argument("--sensitivity-samples", type=positive_int, default=4,
                   help="noise draws per image for max-sensitivity, each a new map "
                        "(default 4)")
    engine_options(p, checkpoint_every=1)  # a batch: PASS_BATCH images, minutes each
    output_options(p, "faithfulness")


@command("faithfulness", "which map can I trust: every method scored over a dataset")
@options(_opts)
def cmd_faithfulness(args) -> int:
    """Draw every method's map of each image's predicted class over --data and score it:
    deletion and insertion, ROAD (most and least relevant first), average drop and increase
    in confidence, infidelity, max-sensitivity, the pointing game and energy in the mask
    (where the items carry masks), and the randomisation check; each method's mean with a 95 %
    bootstrap interval, ranked per metric, with the curves. Streams the data a few images at
    a time and checkpoints as it goes (run the same command again after a crash and it
    resumes). It is costly: each image takes tens of forward passes per method; all 16
    methods on ResNet-18 at 224 px take about 5 CPU minutes an image (Score-CAM half of it,
    SmoothGrad and integrated gradients a sixth each): --methods picks fewer."""
    from ..techniques.faithfulness.faithfulness import faithfulness

    lens = lens_from(args)
    data = data_from(args, lens)
    on_interrupt(args, f"progress is saved in {args.out}/.convlens-faithfulness every "
                       f"{args.checkpoint_every} batches: run the same command again to continue")
    kw = {} if args.fractions is None else {"fractions": args.fractions}
    res = faithfulness(lens, data, methods=args.methods, metrics=args.metrics,
                       steps=args.steps, samples=args.samples,
                       sensitivity_samples=args.sensitivity_samples, seed=args.seed,
                       out=args.out, indices=item_indices(args, len(data)), run=run_from(args),
                       **kw)
    m = res.params
    resumed = f", resumed after {m['resumed_from']} items" if m.get("resumed_from") else ""
    print(f"{lens.name} on {args.data}: {m['images']} images ({m['skipped']} skipped) in "
          f"{m['seconds']:.1f} s{resumed}")
    for line in res.summary():
        print(line)
    save_result(res, args, lens)
    return 0
