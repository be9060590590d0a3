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
            if next(i.grid for i in lens.layers() if i.name == n) is not None]


def step_invert(ctx: DemoContext):
    """Reconstruct the first images from the first, middle and last layer."""
    layers = default_layers(ctx.lens)
    picks = list(dict.fromkeys([layers[0], layers[len(layers) // 2], layers[-1]]))
    n = 1 if ctx.lighter else 2 if ctx.quick else 4
    yield "inversion", invert(ctx.lens, ctx.images()[:n], picks,
                              steps=60 if ctx.quick else 200, progress=ctx.progress)
    yield ", ".join(picks)


def step_class_model(ctx: DemoContext):
    """Every class when there are few; else the classes predicted for the demo's images and
    the first few."""
    lens = ctx.lens
    k = lens.num_classes or 0
    targets = None  # every class, when there are few
    if not k or k > 12:  # e.g. ImageNet's 1,000: the classes predicted for the demo's images
        with torch.no_grad():
            predicted = lens(ctx.images()).argmax(1).tolist()
        most = 4 if ctx.lighter else 8
        targets = sorted(set(predicted) | set(range(min(k or most, most))))[:most]
    yield "class_model", class_model(lens, targets, steps=40 if ctx.quick else 150,
                                     progress=ctx.progress)
    if targets is not None:
        yield f"{len(targets)} of {k} classes"


def step_feature_visualization(ctx: DemoContext):
    """One image per unit of the last spatial layer (the units the scan shows)."""
    spatial = _spatial_layers(ctx.lens)
    if not spatial:
        raise Skip("no layer with spatial maps")
    layer = spatial[-1]  # the layer whose units the scan shows: one image per unit
    units = 12 if ctx.quick else 24  # units shown per layer (and feature-visualised)
    yield "featvis", feature_visualization(ctx.lens, layer,
                                           channels=range(6 if ctx.lighter else units),
                                           steps=32 if ctx.quick else 128, data=ctx.data,
                                           progress=ctx.progress)
    yield layer
