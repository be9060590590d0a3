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
    """Occlusion maps of the demo's images, for each one's predicted class."""
    from .occlusion import occlusion

    yield "occlusion", occlusion(ctx.lens, ctx.images(), target="auto", **window(ctx))
