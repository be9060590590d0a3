"""`convlens train`: retrain a built-in model from scratch with its recipe."""
from __future__ import annotations

import json
import sys

from .common import command, options


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
    from ..models.train import train_builtin
    from ..techniques.monitor import TrainingMonitor

    name = args.model.removeprefix("builtin:")
    out = args.out or f"{name}.pt"
    _, result = train_builtin(name, out=out, seed=args.seed, epochs=args.epochs, monitor=TrainingMonitor,
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
