"""The demo steps of the CAM family (`convlens demo`): each method's maps of the demo's images
at the default layer, for each one's predicted class."""
from __future__ import annotations

from ...views import DemoContext, DemoOutput


def _step(name: str, ctx: DemoContext, images: int | None = None) -> DemoOutput:
    from ...views import resolve
    fn = resolve(f"techniques.cams.{'perturb' if name in _FORWARD else 'gradcams'}:{name}")
    yield name, fn(ctx.lens, ctx.images()[:images], target="auto")


_FORWARD = ("score_cam", "ablation_cam", "eigen_cam")


def grad_cam_plus_plus_step(ctx: DemoContext) -> DemoOutput:
    yield from _step("grad_cam_plus_plus", ctx)


def xgrad_cam_step(ctx: DemoContext) -> DemoOutput:
    yield from _step("xgrad_cam", ctx)


def hires_cam_step(ctx: DemoContext) -> DemoOutput:
    yield from _step("hires_cam", ctx)


def layer_cam_step(ctx: DemoContext) -> DemoOutput:
    yield from _step("layer_cam", ctx)


def score_cam_step(ctx: DemoContext) -> DemoOutput:
    """One forward pass per image and channel of the layer (512 on resnet18): about a third
    of a full pass each; announced when long."""
    x = ctx.images()
    got = ctx.budget.fit(per=_channels(ctx) / 3, images=(len(x), 2, 1))
    yield from _step("score_cam", ctx, images=got["images"])


def ablation_cam_step(ctx: DemoContext) -> DemoOutput:
    """One pass of the network after the layer per image and channel: cheap where the layer
    is late (the default), announced when long."""
    x = ctx.images()
    got = ctx.budget.fit(per=_channels(ctx) / 30, images=(len(x), 2, 1))
    yield from _step("ablation_cam", ctx, images=got["images"])


def eigen_cam_step(ctx: DemoContext) -> DemoOutput:
    yield from _step("eigen_cam", ctx)


def _channels(ctx: DemoContext) -> int:
    """Channels of the default CAM layer (the number of masked or ablated copies)."""
    from ...hooks import capture
    from ..gradients.cam import default_cam_layer
    lens = ctx.lens
    layer = default_cam_layer(lens)
    import torch
    with capture(lens, layer) as cap, torch.no_grad():
        lens(lens.example_input())
    return int(cap[layer].shape[1])
