"""`convlens train`: retrain a built-in model from scratch with its recipe."""
from __future__ import annotations

import json
import sys

from .common import command, nonnegative_int, options, positive_int


def _train_opts(p):
    p.add_argument("--model", metavar="builtin:NAME",
                   help="the built-in model to retrain from scratch (fashion-net, shapes-net, "
                        "stamps-net)")
    p.add_argument("--out", metavar="FILE", help="where to save the state dict (default: NAME.pt)")
    p.add_argument("--epochs", type=positive_int, help="override the recipe's number of epochs")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default 0)")
    p.add_argument("--history", metavar="FILE", help="also save the per-epoch log as JSON")
    p.add_argument("--monitor", metavar="DIR",
                   help="where the training monitor (dead filters, sparsity, filter noise on "
                        "512 test images, every --monitor-every steps) saves its table and plots "
                        "(default: NAME-monitor)")
    p.add_argument("--monitor-every", type=positive_int, default=None, metavar="STEPS",
                   help="monitor every STEPS optimiser steps (default: once per epoch)")


@command("train", "retrain a built-in model from scratch with its recipe (deterministic)")
@options(_train_opts)
def cmd_train(args) -> int:
    """Retrain a built-in model (--model builtin:fashion-net, shapes-net or stamps-net) from scratch
    with the recipe in docs/models.md, seeded, and save the weights; use them with
    --weights FILE."""

    from ..errors import ConvlensError
    from ..models.train import train_builtin
    from ..techniques.activity.monitor import TrainingMonitor

    if not args.model:
        raise ConvlensError("give the model to train: --model builtin:NAME")
    name = args.model.removeprefix("builtin:")
    out = args.out or f"{name}.pt"
    _, result = train_builtin(name, out=out, seed=args.seed, epochs=args.epochs,
                              monitor=TrainingMonitor, monitor_every=args.monitor_every)
    mon = result.monitor.result(f"{name}, seed {args.seed}").save(
        args.monitor or f"{name}-monitor", command=["convlens"] + sys.argv[1:])
    print(f"training monitor: {mon}/monitor.png")
    if args.history:
        with open(args.history, "w", encoding="utf-8") as f:
            json.dump(result.to_dict(), f, indent=1)
    print(f"{name}: test accuracy {result.test_accuracy:.4f} after {len(result.history)} epochs "
          f"in {result.seconds:.0f} s; weights saved to {out}")
    return 0
