"""The demo step of accuracy by image attribute: binned from the scan's predictions."""
from __future__ import annotations

from ...views import DemoContext, Skip


def step_attribute_performance(ctx: DemoContext):
    """Accuracy per bin of the setting's attributes (default: every one there is), from the
    predictions of the scan an earlier step left (``ctx.state["scan"]``)."""
    scan = ctx.state.get("scan")
    if scan is None or scan.predictions is None:
        raise Skip("needs the scan's predictions")
    if not len(scan.predictions["correct"].dropna()):  # nothing to bin
        why = (scan.params.get("label_map") or {}).get("note") or "the data has no labels"
        raise Skip(f"it measures accuracy, but {why}")
    from ...engine.settings import RunSettings
    from .attributes import attribute_performance

    res = attribute_performance(ctx.state["scan_folder"],
                                attributes=getattr(ctx.setting, "attributes", None),
                                run=RunSettings(progress=ctx.progress),
                                n_resamples=300 if ctx.quick else 1000)
    yield "attributes", res
    yield ", ".join(res.attributes)
