"""The demo steps of fooling: the smallest change to another class (`fool`) and robustness
against FGSM over the data (`robustness`)."""
from __future__ import annotations

from ...views import DemoContext


def step_fool(ctx: DemoContext):
    """The first 4 images, each turned into the class after the one the model predicts: 3
    values of c, 50 steps each (quick: 2 and 12; the budget may cut the steps). Its work: a
    pass per image, step and c, twice where an image needs the search again."""
    import torch

    from .fooling import fool

    lens, quick = ctx.lens, ctx.quick
    x = ctx.images()[:4]
    k = lens.num_classes or 2
    with torch.no_grad():
        pred = lens(x).argmax(1)
    search = 2 if quick else 3
    got = ctx.budget.fit(per=len(x) * search * 2, steps=(50, 12))
    yield "fool", fool(lens, x, target=(pred + 1) % k, steps=got["steps"], search=search)


def step_robustness(ctx: DemoContext):
    """FGSM at ε = 0, 0.01, 0.03, 0.1 over the first 2000 items of the data (quick: 200; the
    budget may cut them), 6 examples. Its work: a pass per item and a forward per ε."""
    from ...engine.settings import RunSettings
    from .robustness import robustness

    n = min(ctx.n_scan, 2000)
    got = ctx.budget.fit(per=2.5, items=(n, min(n, 200)))
    yield "robustness", robustness(ctx.lens, ctx.data, eps=[0, 0.01, 0.03, 0.1],
                                   indices=range(got["items"]), examples=6,
                                   run=RunSettings(progress=ctx.progress))
