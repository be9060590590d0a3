"""The demo steps of the gradient family (`convlens demo`): each method's maps of the demo's
images, for each one's predicted class."""
from __future__ import annotations

from ...views import DemoContext, DemoOutput


def saliency_step(ctx: DemoContext) -> DemoOutput:
    from .gradients import saliency
    yield "saliency", saliency(ctx.lens, ctx.images(), target="auto")


def deconvnet_step(ctx: DemoContext) -> DemoOutput:
    from .gradients import deconvnet
    yield "deconvnet", deconvnet(ctx.lens, ctx.images(), target="auto")


def guided_backprop_step(ctx: DemoContext) -> DemoOutput:
    from .gradients import guided_backprop
    yield "guided_backprop", guided_backprop(ctx.lens, ctx.images(), target="auto")


def grad_cam_step(ctx: DemoContext) -> DemoOutput:
    from .cam import grad_cam
    yield "grad_cam", grad_cam(ctx.lens, ctx.images(), target="auto")


def guided_grad_cam_step(ctx: DemoContext) -> DemoOutput:
    from .cam import guided_grad_cam
    yield "guided_grad_cam", guided_grad_cam(ctx.lens, ctx.images(), target="auto")


def smoothgrad_step(ctx: DemoContext) -> DemoOutput:
    """SmoothGrad of the saliency map: 8 noisy copies with --quick, else 32."""
    from .smoothing import smoothgrad
    yield "smoothgrad", smoothgrad(ctx.lens, ctx.images(), target="auto",
                                   samples=8 if ctx.quick else 32)


def integrated_gradients_step(ctx: DemoContext) -> DemoOutput:
    """Integrated gradients from the mean image: 32 points with --quick, else 64."""
    from .smoothing import integrated_gradients
    yield "integrated_gradients", integrated_gradients(ctx.lens, ctx.images(), target="auto",
                                                       steps=32 if ctx.quick else 64)
