"""Reproduce the measurement behind the filter noise threshold (docs/filters.md).

For every conv layer of the shipped nets, the noise score of each filter trained and freshly
initialised (10 seeds of the nets' own initialisation).

    .venv/bin/python docs/make_filters_table.py
"""
import numpy as np
import torch
from torch import nn

from convlens import load_model
from convlens.models.builtin import BUILTIN_MODELS
from convlens.techniques.activity.filters import NOISE_THRESHOLD, noise_score

print("| model | layer | weights | filters | median | 10th pct | 90th pct | "
      "share noisy (> %.2f) |" % NOISE_THRESHOLD)
print("|---|---|---|---:|---:|---:|---:|---:|")
for name in ("fashion-net", "shapes-net"):
    trained = load_model(f"builtin:{name}").model
    fresh = []
    for seed in range(10):
        torch.manual_seed(seed)
        fresh.append(BUILTIN_MODELS[name].build())
    convs = [n for n, m in trained.named_modules() if isinstance(m, nn.Conv2d)]
    for layer in convs:
        for label, models in (("trained", [trained]), ("fresh (10 inits)", fresh)):
            s = np.concatenate([noise_score(dict(m.named_modules())[layer].weight) for m in models])
            print(f"| {name} | {layer} | {label} | {len(s)} | {np.median(s):.3f} | "
                  f"{np.quantile(s, .1):.3f} | {np.quantile(s, .9):.3f} | "
                  f"{(s > NOISE_THRESHOLD).mean():.2f} |")
