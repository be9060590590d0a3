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
    """SmoothGrad of the saliency map: 32 noisy copies (quick: 8; the budget may cut them,
    and on a large input the images, to 2).
    Its work: about 1.5 passes per image and copy (measured on resnet18 at 224 px)."""
    from .smoothing import smoothgrad
    x = ctx.images()
    got = ctx.budget.fit(per=1.5, images=(len(x), len(x), min(len(x), 2)), samples=(32, 8))
    yield "smoothgrad", smoothgrad(ctx.lens, x[:got["images"]], target="auto",
                                   samples=got["samples"])


def integrated_gradients_step(ctx: DemoContext) -> DemoOutput:
    """Integrated gradients from the mean image: 64 points (quick: 32; the budget may cut
    them, and on a large input the images, to 2). Its work: about 1.5 passes per image and
    point (measured on resnet18 at 224 px)."""
    from .smoothing import integrated_gradients
    x = ctx.images()
    got = ctx.budget.fit(per=1.5, images=(len(x), len(x), min(len(x), 2)), steps=(64, 32))
    yield "integrated_gradients", integrated_gradients(ctx.lens, x[:got["images"]],
                                                       target="auto", steps=got["steps"])
