"""The demo step of network dissection."""
from __future__ import annotations

from ...views import DemoContext, Skip


def step_dissect(ctx: DemoContext):
    """Both passes over the demo's items (up to 500; quick: 8): two forward passes each."""
    from ...engine.settings import RunSettings
    from .dissect import dissect

    _, _, meta = ctx.dataset.load(0)
    if "mask" not in (meta or {}) and ctx.lens.input_size[0] != 3:
        raise Skip("the items carry no masks and the images are not in colour: no concept "
                   "is labelled per pixel")
    n = min(ctx.n_scan, 500 if not ctx.quick else 8)
    yield "dissect", dissect(ctx.lens, ctx.data, n=n, run=RunSettings(progress=ctx.progress))


def step_tcav(ctx: DemoContext):
    """TCAV with the data's own backgrounds as concepts (items that record one: the builtin
    shapes and stamps), 4 runs of 30 random images, the first 3 classes (quick: 2 runs)."""
    from ...engine.settings import RunSettings
    from .testing import concept_sets, tcav

    _, _, meta = ctx.dataset.load(0)
    if "background" not in (meta or {}):
        raise Skip("the items record no background to use as concepts (bring concept "
                   "folders: convlens tcav --concepts DIR)")
    sets = concept_sets(ctx.dataset, per=8 if ctx.quick else 30, scan=200 if ctx.quick else 1000,
                        random=20 if ctx.quick else 100)
    yield "tcav", tcav(ctx.lens, ctx.dataset, sets, classes=[0, 1, 2], runs=2 if ctx.quick else 4,
                       n_random=8 if ctx.quick else 30, n=40 if ctx.quick else 300,
                       run=RunSettings(progress=ctx.progress))
