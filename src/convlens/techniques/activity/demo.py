"""The demo steps of the activity family (`convlens demo`): the layer table, the activations of
the demo's images, the first layer's filters and the dead filters over the data."""
from __future__ import annotations

from ...views import DemoContext


def layers(ctx: DemoContext):
    from ...lens import LayersResult
    yield "layers", LayersResult(ctx.lens.layers())


def activations(ctx: DemoContext):
    from .activations import activations as run
    yield "activations", run(ctx.lens, ctx.images())


def filters(ctx: DemoContext):
    from .filters import filters as run
    yield "filters", run(ctx.lens)


def activation_stats(ctx: DemoContext):
    from ...engine.settings import RunSettings
    from .activations import activation_stats as run
    yield "stats", run(ctx.lens, ctx.data, n=ctx.n_scan, run=RunSettings(progress=ctx.progress))
