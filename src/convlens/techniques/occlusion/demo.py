"""The demo step of the occlusion view (`convlens demo`)."""
from __future__ import annotations

from ...views import DemoContext, DemoOutput


def window(ctx: DemoContext) -> dict:
    """The occluder of the demo: the setting's (``window``, ``stride``), else a side of a fifth
    of the input and a stride of a third of that."""
    given = getattr(ctx.setting, "occlusion", None)
    if given:
        return given
    side = ctx.lens.input_size[-1]
    w = max(2, round(side / 5))
    return {"window": w, "stride": max(1, round(w / 3))}


def occlusion_step(ctx: DemoContext) -> DemoOutput:
    """Occlusion maps of the demo's images, for each one's predicted class (announced when
    long: a forward pass per image and position of the occluder, about a third of a pass, less
    what incremental inference saves: about a quarter of a pass on resnet18 at 224 px); the
    budget may explain fewer images on a large input (not fewer than 2)."""
    import math

    from .occlusion import occlusion

    x, occluder = ctx.images(), window(ctx)
    w, s = occluder["window"], occluder["stride"]
    positions = math.prod(math.ceil(max(0, side - w) / s) + 1 for side in x.shape[-2:])
    n = ctx.budget.fit(per=positions / 4, images=(len(x), len(x), min(len(x), 2)))["images"]
    yield "occlusion", occlusion(ctx.lens, x[:n], target="auto", **occluder)
