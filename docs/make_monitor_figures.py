"""Reproduce docs/training-monitor.md: the seed's two claims on real fashion-net runs.

(a) activations get sparser as training proceeds; (b) a learning rate far too high leaves many
dead filters where the normal rate leaves few. Each run trains fashion-net from scratch with its
recipe (AdamW, one-cycle) for EPOCHS epochs at a given peak learning rate, with a
TrainingMonitor on the first 512 test images every EVERY steps.

    .venv/bin/python docs/make_monitor_figures.py        # about 5-10 minutes on 2 cores
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
import torch

from convlens.models.train import Recipe, train_builtin
from convlens.techniques.activity.monitor import TrainingMonitor

EPOCHS, EVERY = 2, 50
RATES = {"normal (2e-3)": 2e-3, "10x (2e-2)": 2e-2, "far too high (1e-1)": 1e-1}
OUT = Path(__file__).parent


def main() -> None:
    torch.set_num_threads(2)
    tables = []
    for label, lr in RATES.items():
        t0 = time.time()
        _, res = train_builtin("fashion-net", recipe=Recipe(epochs=EPOCHS, lr=lr),
                               monitor=TrainingMonitor, monitor_every=EVERY, progress=False)
        t = res.monitor.table()
        t["run"], t["lr"], t["test_accuracy"] = label, lr, res.test_accuracy
        tables.append(t)
        print(f"{label}: test accuracy {res.test_accuracy:.4f}, {time.time() - t0:.0f} s",
              file=sys.stderr)
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(OUT / "training-monitor.csv", index=False)
    figure(table, OUT / "training-monitor.png")
    summary(table)


def figure(table: pd.DataFrame, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    act = table[table.kind == "activation"]
    convs = ["features.1", "features.4", "features.7", "features.9", "features.11"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), dpi=100)
    normal = act[act.run == list(RATES)[0]]
    for layer in convs:
        t = normal[normal.layer == layer]
        axes[0].plot(t.epoch, t.sparsity, marker=".", label=layer)
    axes[0].set(title="(a) sparsity over training, normal rate", xlabel="epoch",
                ylabel="share of zero activations (probe)")
    axes[0].legend(fontsize=8)
    for run, t in act[act.layer.isin(convs)].groupby("run", sort=False):
        mean_dead = t.groupby("epoch").dead_fraction.mean()
        axes[1].plot(mean_dead.index, mean_dead.values, marker=".", label=run)
    axes[1].set(title="(b) dead conv channels vs learning rate", xlabel="epoch",
                ylabel="share of dead channels (mean over conv layers)")
    axes[1].legend(fontsize=8)
    last = act[act.step == act.groupby("run").step.transform("max")]
    pivot = last.pivot_table(index="layer", columns="run", values="dead_fraction", sort=False)
    pivot = pivot.reindex([lay for lay in last.layer.unique()])[list(RATES)]
    pivot.plot.bar(ax=axes[2], rot=30, fontsize=8)
    axes[2].set(title="dead channels per layer at the end", ylabel="share dead")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def summary(table: pd.DataFrame) -> None:
    act = table[table.kind == "activation"]
    for run, t in act.groupby("run", sort=False):
        first, last = t[t.step == t.step.min()], t[t.step == t.step.max()]
        print(f"\n{run}: test accuracy {t.test_accuracy.iloc[0]:.4f}")
        print(pd.DataFrame({"layer": first.layer.values,
                            "sparsity_start": first.sparsity.values,
                            "sparsity_end": last.sparsity.values,
                            "dead_start": first.dead_fraction.values,
                            "dead_end": last.dead_fraction.values}).to_string(index=False,
                                                                               float_format="%.3f"))


if __name__ == "__main__":
    main()
