"""The demo's step of correspondence (`convlens demo`): keypoint transfer on intra-class pairs
where the data has keypoints (or the setting asks for them), else on warped copies."""
from __future__ import annotations

from ...engine.settings import RunSettings
from ...views import DemoContext
from .correspondence import correspondence
from .pairs import has_keypoints


def step_correspondence(ctx: DemoContext):
    """PCK per layer on 100 pairs of the demo's data (quick: 12, 6 on a large input; warped
    copies: at most one pair per item; the budget may cut them). Its work: the warp, two
    forward passes and the dense matching of each layer's features, about 50 passes a pair
    (measured on resnet18 at 224 px)."""
    setting = ctx.setting
    pairs, close = getattr(setting, "pairs", None), getattr(setting, "close", None)
    kind = pairs or ("intraclass" if has_keypoints(ctx.dataset) else "warp")
    extra = {"close": close} if kind == "intraclass" and close else (
        {"warp": "mixed"} if kind == "warp" else {})
    most = len(ctx.dataset) if kind == "warp" else 100  # warp_pairs: items 0..n-1
    n = ctx.budget.fit(per=50, pairs=tuple(min(v, most) for v in (100, 12, 6)))["pairs"]
    yield "correspondence", correspondence(ctx.lens, kind, data=ctx.data, n=n,
                                           run=RunSettings(progress=ctx.progress), **extra)
    yield kind
