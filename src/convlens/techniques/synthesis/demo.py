"""The demo's steps of the synthesis views (`convlens demo`): images reconstructed from three
layers' codes, the class models and the feature visualisation of the last spatial layer's
units. Each yields ``(folder name, result)`` and a detail line for the log."""
from __future__ import annotations

import torch

from ...lens import default_layers
from ...views import DemoContext, Skip
from .featvis import class_model, feature_visualization
from .inversion import invert


def _spatial_layers(lens) -> list[str]:
    """The demo's layers with a spatial map (those whose units the scan shows)."""
    return [n for n in default_layers(lens, spatial_only=True)
            if next(i.grid for i in lens.layers(fields=False) if i.name == n) is not None]


def step_invert(ctx: DemoContext):
    """Reconstruct the first 4 images (quick: 2, 1 on a large input) from the first, middle and
    last layer, in 200 steps (quick: 60); the budget may cut images and steps."""
    layers = default_layers(ctx.lens)
    picks = list(dict.fromkeys([layers[0], layers[len(layers) // 2], layers[-1]]))
    got = ctx.budget.fit(per=len(picks), images=(4, 2, 1), steps=(200, 60))
    yield "inversion", invert(ctx.lens, ctx.images()[:got["images"]], picks,
                              steps=got["steps"], progress=ctx.progress)
    yield ", ".join(picks)


def step_class_model(ctx: DemoContext):
    """Every class when there are few; else the classes predicted for the demo's images and
    the first few, 8 (quick on a large input: 4); 150 steps (quick: 40). The budget may cut
    classes (where there are many) and steps."""
    lens = ctx.lens
    k = lens.num_classes or 0
    targets = None  # every class, when there are few
    if not k or k > 12:  # e.g. ImageNet's 1,000: the classes predicted for the demo's images
        with torch.no_grad():
            predicted = lens(ctx.images()).argmax(1).tolist()
        got = ctx.budget.fit(classes=(8, 8, 4), steps=(150, 40))
        most = got["classes"]
        targets = sorted(set(predicted) | set(range(min(k or most, most))))[:most]
    else:
        got = ctx.budget.fit(per=k, steps=(150, 40))
    yield "class_model", class_model(lens, targets, steps=got["steps"], progress=ctx.progress)
    if targets is not None:
        yield f"{len(targets)} of {k} classes"


def step_feature_visualization(ctx: DemoContext):
    """One image per unit of the last spatial layer (the units the scan shows): 24 units (quick:
    12, 6 on a large input), 128 steps (quick: 32); the budget may cut units and steps."""
    spatial = _spatial_layers(ctx.lens)
    if not spatial:
        raise Skip("no layer with spatial maps")
    layer = spatial[-1]  # the layer whose units the scan shows: one image per unit
    got = ctx.budget.fit(units=(24, 12, 6), steps=(128, 32))
    yield "featvis", feature_visualization(ctx.lens, layer, channels=range(got["units"]),
                                           steps=got["steps"], data=ctx.data,
                                           progress=ctx.progress)
    yield layer
