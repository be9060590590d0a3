"""The demo steps of the units family (`convlens demo`): the scan of the demo's data, then the
top images of the units (and random directions) of two of its layers."""
from __future__ import annotations

from ...views import DemoContext, Skip


def _spatial_layers(lens) -> list[str]:
    from ...lens import default_layers

    return [n for n in default_layers(lens, spatial_only=True)
            if next(i.grid for i in lens.layers(fields=False) if i.name == n) is not None]


def scan(ctx: DemoContext):
    """Top-9 of every ReLU, 4 random directions, codes and predictions of ``n_scan`` items;
    leaves ``ctx.state["scan"]`` (the result) and ``ctx.state["scan_folder"]`` for later steps."""
    from ...engine.settings import RunSettings
    from ...lens import default_layers
    from .scan import scan as run_scan

    folder = ctx.folder / "scan"
    layers = default_layers(ctx.lens)
    run = RunSettings(progress=ctx.progress, resume=False)
    try:
        res = run_scan(ctx.lens, ctx.data, layers, topk=9, directions=4, n=ctx.n_scan,
                       out=folder, run=run)
    except Exception as e:  # a model without a code layer: scan without codes
        if "code" not in str(e):
            raise
        res = run_scan(ctx.lens, ctx.data, layers, topk=9, directions=4, n=ctx.n_scan,
                       codes=None, out=folder, run=run)
    ctx.state["scan"] = res
    ctx.state["scan_folder"] = folder
    yield "scan", res  # saved again, with its pictures
    yield res.accuracy_note()


def unit_patches(ctx: DemoContext):
    """The units of the middle and the last spatial layer, and 4 random directions of the last."""
    from .patches import unit_patches as patches

    if "scan" not in ctx.state:
        raise Skip("needs the scan")
    folder = ctx.state["scan_folder"]
    spatial = _spatial_layers(ctx.lens)
    if not spatial:
        raise Skip("no layer with spatial maps")
    units = 12 if ctx.quick else 24  # units shown per layer
    picks = list(dict.fromkeys([spatial[len(spatial) // 2], spatial[-1]]))
    for layer in picks:
        yield f"units_{layer}", patches(folder, layer, max_units=units)
    yield f"units_dirs_{picks[-1]}", patches(folder, picks[-1], max_units=4, directions=True)
    yield ", ".join(picks) + f"; 4 random directions of {picks[-1]}"
