"""The demo steps of fooling: the smallest change to another class (`fool`) and robustness
against FGSM over the data (`robustness`)."""
from __future__ import annotations

from ...views import DemoContext


def step_fool(ctx: DemoContext):
    """The first 4 images, each turned into the class after the one the model predicts."""
    import torch

    from .fooling import fool

    lens, quick = ctx.lens, ctx.quick
    x = ctx.images()[:4]
    k = lens.num_classes or 2
    with torch.no_grad():
        pred = lens(x).argmax(1)
    yield "fool", fool(lens, x, target=(pred + 1) % k, steps=12 if quick else 50,
                       search=2 if quick else 3)


def step_robustness(ctx: DemoContext):
    """FGSM at ε = 0, 0.01, 0.03, 0.1 over the first items of the data, 6 examples."""
    from ...engine.settings import RunSettings
    from .robustness import robustness

    yield "robustness", robustness(ctx.lens, ctx.data, eps=[0, 0.01, 0.03, 0.1],
                                   indices=range(min(ctx.n_scan, 200 if ctx.quick else 2000)),
                                   examples=6, run=RunSettings(progress=ctx.progress))
