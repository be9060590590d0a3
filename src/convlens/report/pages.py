"""Pages for the views that need more than the generic run page, and pages across runs."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..draw import image_hwc, save_png
from ..results import safe_name
from .common import Page, copy_file, generic_page

# result kinds that explain single images with one map each (seed §4 and §5)
IMAGE_MAP_KINDS = ("occlusion", "saliency", "deconvnet", "guided_backprop", "grad_cam",
                   "guided_grad_cam", "integrated_gradients")


def is_image_map(kind: str) -> bool:
    return kind in IMAGE_MAP_KINDS or kind.startswith("smoothgrad")


def image_pages(runs, site: Path) -> list:
    """Per model: one page with every image and its maps from every method, side by side."""

    by_model: dict[str, list] = {}
    for r in runs:
        if is_image_map(r.kind) and "images" in r.result.manifest.get("arrays", {}):
            by_model.setdefault(r.model_name or "model", []).append(r)
    pages = []
    for model, group in by_model.items():
        # runs on the same inputs line up; the first run's images define them
        images = group[0].result.array("images")
        labels = (group[0].result.manifest.get("model") or {}).get("labels") or []
        slug = safe_name(model)
        folder = site / "images" / slug
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(len(images)):
            save_png(folder / f"input_{i}.png", image_hwc(images[i]))
            cells = []
            for r in group:
                if r.result.array("images").shape != images.shape or \
                        not np.allclose(r.result.array("images")[i], images[i], atol=1e-4):
                    continue
                name = f"overlay_{i}"
                if name in r.result.manifest.get("pictures", {}):
                    cells.append({"title": r.kind, "href": "../../" + r.href,
                                  "src": "../../runs/" + r.id + "/" + copy_file(
                                      r.result.picture(name), site, r.id)})
            pred = _prediction(group[0].result, i, labels)
            rows.append({"input": f"input_{i}.png", "prediction": pred, "cells": cells})
        pages.append(Page(f"images/{slug}/index.html", f"images: {model}", "images.html",
                          {"rows": rows, "model": model}))
    return pages


def _prediction(result, i: int, labels: list) -> str:
    arrays = result.manifest.get("arrays", {})
    for key in ("predicted", "predictions"):
        if key in arrays:
            k = int(result.array(key)[i])
            return labels[k] if 0 <= k < len(labels) else str(k)
    return ""


def tsne_pages(run, site: Path) -> list:
    """The t-SNE run page: an interactive map (pan, zoom, hover shows the image, label and
    prediction), then the static scatter and grid pictures and the quality measures."""

    page = generic_page(run, site)
    res = run.result
    t = res.table("embedding")
    model_labels = (res.manifest.get("model") or {}).get("labels") or []
    # the data's names for "label", the model's for "predicted" (older runs: the model's for both)
    labels = res.info.get("classes") or model_labels
    pred_names = res.info.get("pred_classes") or model_labels or labels
    sprites = res.info.get("sprites")
    sprite_src = None
    if sprites and "sprites" in res.manifest.get("pictures", {}):
        sprite_src = copy_file(res.picture("sprites"), site, run.id)
    lab = t["label"].astype(int).tolist() if "label" in t else [-1] * len(t)
    pred = t["pred"].astype(int).tolist() if "pred" in t else [-1] * len(t)
    points = {"x": [round(float(v), 3) for v in t["x"]], "y": [round(float(v), 3) for v in t["y"]],
              "label": lab, "pred": pred,
              "index": t["index"].astype(int).tolist() if "index" in t else list(range(len(t))),
              "names": [str(n) for n in labels], "pred_names": [str(n) for n in pred_names],
              "sprite": sprite_src, "sprite_size": (sprites or {}).get("size"),
              "sprite_cols": (sprites or {}).get("cols"), "sprite_count": (sprites or {}).get("count", 0)}
    page.template = "tsne.html"
    page.context["points"] = points
    return [page]


def units_pages(run, site: Path) -> list:
    """A layer's units: the run page shows every unit's patch grid, each linking to a page
    with the unit's patches, its top images with the receptive-field box, and their scores."""

    res = run.result
    info = res.info
    layer, units = info.get("layer", ""), info.get("units", [])
    tag = "dir" if info.get("what") == "random directions" else "unit"
    pics = res.manifest.get("pictures", {})
    index, score = res.array("index"), res.array("score")
    labels = (res.manifest.get("model") or {}).get("labels") or []
    page = generic_page(run, site)
    overview_names = [n for n in pics if n.startswith(f"{tag}s_")]
    page.context["pictures"] = [p for p in page.context["pictures"] if p["name"] in overview_names]
    cells, pages = [], []
    for row, u in enumerate(units):
        name = f"{tag}_{safe_name(layer)}_{u}"
        if name not in pics:
            continue
        src = copy_file(res.picture(name), site, run.id)
        boxes = copy_file(res.picture(name + "_boxes"), site, run.id) if name + "_boxes" in pics else None
        href = f"{tag}-{u}.html"
        cells.append({"unit": u, "src": src, "href": href})
        top = [{"rank": j + 1, "index": int(index[row, j]), "score": f"{float(score[row, j]):.4g}"}
               for j in range(index.shape[1]) if index[row, j] >= 0]
        pages.append(Page(f"runs/{run.id}/{href}", f"{layer} {tag} {u}", "unit.html",
                          {"run": run, "layer": layer, "unit": u, "patches": src, "boxes": boxes,
                           "top": top, "tag": tag, "labels": labels}))
    page.template = "units.html"
    page.context.update(cells=cells, layer=layer, tag=tag)
    return [page] + pages


#: kind -> function(run, site) -> its pages (the run's own page first); others get the generic page
PAGE_BUILDERS = {"tsne": tsne_pages, "units": units_pages}
