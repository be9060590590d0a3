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
