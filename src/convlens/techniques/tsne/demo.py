"""The demo step of the t-SNE family (`convlens demo`): the t-SNE of the scan's codes."""
from __future__ import annotations

from ...views import DemoContext, Skip


def tsne_grid(ctx: DemoContext):
    from ..units.codes import codes_from_scan
    from .tsne import tsne_grid as embed

    if "scan" not in ctx.state or ctx.state["scan"].codes is None:
        raise Skip("the scan has no codes (the model has no linear classifier layer)")
    folder = ctx.state["scan_folder"]
    codes = codes_from_scan(folder)
    res = embed(codes, k=min(10, max(1, len(codes.codes) // 3)))
    res.params["scan"] = str(folder)
    yield "tsne", res
    yield f"kNN accuracy {res.metrics['knn_accuracy_2d']:.3f}"
