"""The demo step of the faithfulness view."""
from __future__ import annotations

from ...views import DemoContext

#: the demo's methods, the first kept where the budget cuts: the gradient, Grad-CAM and the
#: noise floor, then guided backprop, DeconvNet and gradient times input
DEMO_METHODS = ["saliency", "grad_cam", "random", "guided_backprop", "deconvnet",
                "input_x_gradient"]


def step_faithfulness(ctx: DemoContext):
    """Every metric for six methods over the first 100 items (quick: 8 items; on a large
    input 2 items and 3 methods, deletion and insertion in 8 steps, ROAD at 3 fractions).
    Its work per item and method: about 60 forward passes (curves, noise draws) and a few
    backward passes, some 25 image passes (deletion and insertion in 14 steps)."""
    from ...engine.settings import RunSettings
    from .faithfulness import faithfulness

    n = min(ctx.n_scan, 100)
    large = ctx.budget.large
    got = ctx.budget.fit(per=16 if large else 25, items=(n, min(n, 8), 2),
                         methods=(len(DEMO_METHODS), len(DEMO_METHODS), 3))
    yield "faithfulness", faithfulness(
        ctx.lens, ctx.data, methods=DEMO_METHODS[:max(3, got["methods"])],
        steps=8 if large else 14, fractions=(0.2, 0.5, 0.8) if large else
        (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), samples=4 if large else 8,
        sensitivity_samples=2, n_boot=500, indices=range(max(2, got["items"])),
        run=RunSettings(progress=ctx.progress))
