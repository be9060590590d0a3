"""Pages for the views that need more than the generic run page (the t-SNE map, a layer's
units, the scan), and pages across runs (each model's images with every method's map)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..draw import save_png
from ..results import safe_name
from .common import (
    Page,
    Run,
    colorbar,
    copy_file,
    fmt,
    generic_page,
    picture_entry,
    table_html_rows,
)


# -- the t-SNE map ---------------------------------------------------------------------------
def tsne_pages(run: Run, site: Path) -> list[Page]:
    """The t-SNE run page: an interactive map (pan, zoom, hover shows the image, label and
    prediction), then the scatter and grid pictures and the quality measures."""
    page = generic_page(run, site)
    res = run.result
    t = res.table("embedding")
    model_labels = run.model.get("labels") or []
    # the data's names for "label", the model's for "predicted" (older runs: the model's for both)
    labels = res.info.get("classes") or model_labels
    pred_names = res.info.get("labels") or model_labels or labels
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
              "sprite_cols": (sprites or {}).get("cols"),
              "sprite_count": (sprites or {}).get("count", 0)}
    page.template = "tsne.html"
    page.context["points"] = points
    return [page]


# -- a layer's units ---------------------------------------------------------------------------
def units_pages(run: Run, site: Path, runs: list[Run] = ()) -> list[Page]:
    """A layer's units: the run page shows every unit's patch grid, each linking to a page
    with the unit's patches, its top images with the receptive-field box, their scores, and the
    unit's feature visualisation where one was computed (a featvis run of the same model and
    layer)."""
    res = run.result
    info = res.info
    layer, units = info.get("layer", ""), info.get("units", [])
    tag = "dir" if info.get("what") == "random directions" else "unit"
    index, score = res.array("index"), res.array("score")
    names = info.get("image_classes") or []
    true = res.array("true") if "true" in res.manifest.get("arrays", {}) else None
    image_of = res.array("image_of")
    page = generic_page(run, site, figures_only=True)
    featvis = _featvis_of(run, runs, layer, site)
    cells, pages = [], []
    for row, u in enumerate(units):
        name = f"{tag}_{safe_name(layer)}_{u}"
        pic = picture_entry(res, name, site, run.id, "image")
        if pic is None:
            continue
        boxes = picture_entry(res, name + "_boxes", site, run.id, "image")
        href = f"{tag}-{u}.html"
        w = max(120, -(-pic["natural"][0] // 2))  # never below half its natural width
        cells.append({"unit": u, "src": pic["src"], "href": href, "width": w,
                      "height": round(w * pic["natural"][1] / max(pic["natural"][0], 1))})
        top = []
        for j in range(index.shape[1]):
            if index[row, j] < 0:
                continue
            lab = ""
            if true is not None and image_of[row, j] >= 0:
                k = int(true[image_of[row, j]])
                lab = names[k] if 0 <= k < len(names) else str(k)
            top.append({"rank": j + 1, "index": int(index[row, j]), "label": lab,
                        "score": f"{float(score[row, j]):.4g}"})
        vis = featvis.get(u) if tag == "unit" else None
        pages.append(Page(f"runs/{run.id}/{href}", f"{layer} {tag} {u}", "unit.html",
                          {"run": run, "layer": layer, "unit": u, "patches": pic, "boxes": boxes,
                           "top": top, "tag": tag, "featvis": vis}))
    page.template = "units.html"
    page.context.update(cells=cells, layer=layer, tag=tag)
    return [page] + pages


def _featvis_of(run: Run, runs, layer: str, site: Path) -> dict[int, dict]:
    """Channel -> the picture another result of the same model gives that unit of `layer` (the
    image optimised to excite it: `Result.per_unit`), with its value and a link."""
    for r in runs:
        units = r.result.per_unit.get(layer) if r.model_name == run.model_name else None
        if not units:
            continue
        out = {}
        for channel, entry in units.items():
            pic = picture_entry(r.result, entry["picture"], site, r.id, "image",
                                prefix=f"../{r.id}/")
            if pic is not None:
                pic.update(name=r.title, href=f"../{r.id}/index.html", value=entry.get("value"))
                out[int(channel)] = pic
        return out
    return {}


# -- the scan ---------------------------------------------------------------------------------
def scan_pages(run: Run, site: Path, runs: list[Run]) -> list[Page]:
    """The scan's summary: layers with dead channels and sparsity, the predictions (accuracy,
    confusion matrix), and the top-image grids of the units runs made from this scan. The raw
    tables are downloads only."""
    page = generic_page(run, site)
    res = run.result
    info = res.info
    page.context["tables"] = {}
    facts = (f"{info.get('n', '?')} images of {info.get('data') or 'the data'} in "
             f"{fmt(info.get('seconds'))} s" + (f", {info['skipped']} unreadable files skipped"
                                                 if info.get("skipped") else ""))
    layers, dead = None, []
    if "layers" in res.manifest.get("tables", {}):
        lt = res.table("layers")
        layers = table_html_rows(lt, 200)
        ch = res.table("channels")
        for name in lt["layer"]:
            d = ch[(ch["layer"] == name) & ch["dead"]]["channel"].tolist()
            if d:
                dead.append({"layer": name, "channels": ", ".join(map(str, d[:60]))
                             + (f" and {len(d) - 60} more" if len(d) > 60 else "")})
    accuracy = (info.get("accuracy_note") or "")
    folder = res.folder.resolve()
    grids = []
    for r in sorted((r for r in runs if r.view.get("page") == "units"
                     and r.result.info.get("scan")
                     and Path(r.result.info["scan"]).resolve() == folder),
                    key=lambda r: (r.result.info.get("what", ""), r.result.info.get("layer", ""))):
        what = "direction" if r.result.info.get("what") == "random directions" else "unit"
        name = next((n for n in r.result.manifest.get("pictures", {})
                     if n.startswith(("units_", "dirs_"))), None)
        pic = (picture_entry(r.result, name, site, r.id, "image", prefix=f"../{r.id}/")
               if name else None)
        if pic:
            grids.append({"title": f"{r.result.info.get('layer')}: top images of each {what}",
                          "what": what, "layer": r.result.info.get("layer"), "pic": pic,
                          "href": f"../{r.id}/index.html"})
    figs = page.context.pop("figures")
    page.context["figures"] = []
    page.template = "scan.html"
    page.context.update(facts=facts, layers=layers, dead=dead, accuracy=accuracy,
                        threshold=info.get("stats_threshold", 0.99), grids=grids,
                        prediction_figures=[f for f in figs if f["title"] == "predictions"],
                        stats_figures=[f for f in figs if f["title"] != "predictions"])
    return [page]


#: kind -> function(run, site, runs) -> its pages (the run's own page first); others get the
#: generic page
PAGE_BUILDERS = {"tsne": lambda run, site, runs: tsne_pages(run, site), "units": units_pages,
                 "scan": lambda run, site, runs: scan_pages(run, site, runs)}


# -- each model's images, with every method's map ------------------------------------------------
def _input_pixels(run: Run, name: str) -> np.ndarray:
    """The pixels of a run's input picture (how the images page tells images apart)."""
    from PIL import Image

    return np.asarray(Image.open(run.result.picture(name)).convert("RGB"))


def image_pages(runs: list[Run], site: Path) -> list[Page]:
    """Per model: one page, a row per input image (identified by its pixels), with the picture
    of every run that explained it, runs in the seed's order; the class activation maps
    (Grad-CAM and the CAM family) on a line of their own under it, the CAM row. Each result
    says which pictures belong to which input (`Result.per_image`: the input first, then what
    this page shows)."""
    by_model: dict[str, list[Run]] = {}
    for r in runs:
        if any(len(p) >= 2 for p in r.result.per_image):
            by_model.setdefault(r.model_name or "model", []).append(r)
    pages = []
    for model, group in by_model.items():
        group.sort(key=lambda r: (r.order, r.id))
        slug = safe_name(model)
        folder = site / "images" / slug
        folder.mkdir(parents=True, exist_ok=True)
        rows: dict[str, dict] = {}
        per_kind: dict[str, int] = {}
        for r in group:
            per_kind[r.kind] = per_kind.get(r.kind, 0) + 1
        for r in group:
            labels = r.model.get("labels") or []
            for i, names in enumerate(r.result.per_image):
                if len(names) < 2:
                    continue
                image = _input_pixels(r, names[0])
                key = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()[:16]
                if key not in rows:
                    src = folder / f"input_{key}.png"
                    save_png(src, image)
                    h, w = image.shape[:2]
                    s = 1 if w >= 192 else int(np.ceil(192 / w))
                    rows[key] = {"title": f"image {len(rows) + 1}", "cells": [], "cams": [],
                                 "runs": set(),
                                 "input": {"src": src.name, "width": w * s, "height": h * s,
                                           "pixelated": s > 1, "name": "input"},
                                 "caption": _prediction(r, i, labels)}
                if not rows[key]["caption"]:
                    rows[key]["caption"] = _prediction(r, i, labels)
                if r.id in rows[key]["runs"]:  # the same pixels twice in one run: shown once
                    continue
                rows[key]["runs"].add(r.id)
                pic_name = names[1]
                pic = picture_entry(r.result, pic_name, site, r.id, "map",
                                    prefix=f"../../runs/{r.id}/")
                if pic is None:
                    continue
                # the run's own figure panel for this picture gives its colour bar
                scale = next((p.get("scale") for f in r.result.figures for p in f.get("panels", [])
                              if p.get("picture") == pic_name), None)
                # class activation maps (a map at a layer, no signal at the pixels: Grad-CAM
                # and the CAM family) go to the row's CAM line, side by side
                arrays = r.result.manifest.get("arrays", {})
                line = "cams" if "cam" in arrays and "attribution" not in arrays else "cells"
                rows[key][line].append({
                    "kind": r.kind, "title": r.title, "href": f"../../{r.href}", "pic": pic,
                    "colorbar": colorbar(scale, pic["width"]) if scale else None,
                    "settings": _settings(r) if per_kind[r.kind] > 1 else ""})
        pages.append(Page(f"images/{slug}/index.html", f"images: {model}", "images.html",
                          {"rows": list(rows.values()), "model": model}))
    return pages


def _prediction(run: Run, i: int, labels: list) -> list[str]:
    res = run.result
    arrays = res.manifest.get("arrays", {})
    out = []
    for key in ("predicted",):
        if key in arrays:
            predicted = res.array(key)
            if predicted.ndim != 1 or i >= len(predicted):  # e.g. one per layer: no caption
                break
            k = int(predicted[i])
            name = labels[k] if 0 <= k < len(labels) else str(k)
            p = ""
            if "confidence" in arrays:
                p = f" (p = {float(res.array('confidence')[i]):.2f})"
            out.append(f"predicted: {name}{p}")
            break
    return out


def _settings(run: Run) -> str:
    """A run's parameters in a line, to tell several runs of one method apart."""
    info = run.result.info
    params = info.get("params") or {k: info[k] for k in ("window", "stride", "fill", "mode")
                                    if k in info}
    return ", ".join(f"{k} {fmt(v)}" for k, v in params.items() if k != "target")[:160]


# -- the index -----------------------------------------------------------------------------------
def model_sections(runs: list[Run], cross: list[Page]) -> list[dict]:
    """Per model (name and weights): its views in the seed's order, its layer table, its images
    page."""
    from ..views import SECTIONS

    titles = dict(SECTIONS)
    models: dict[tuple[str, str], dict] = {}
    for r in sorted(runs, key=lambda r: (r.order, r.id)):
        key = (r.model_name or "(no model)", r.model_weights)
        m = models.setdefault(key, {"name": key[0], "weights": key[1], "random": r.random_weights,
                                    "sections": {}, "layers": None, "images": None})
        if r.kind == "layers" and m["layers"] is None:
            t = r.result.table("layers")
            m["layers"] = table_html_rows(t, 1000)
        num = r.order[0]
        sec = m["sections"].setdefault(num, {"number": num if num < 99 else "",
                                             "title": titles.get(num, "Other views"), "views": []})
        sec["views"].append({"href": r.href, "title": r.title, "line": r.line,
                             "detail": _detail(r)})
    for page in cross:
        name = page.context.get("model")
        for (mname, _), m in models.items():
            if mname == name:
                m["images"] = page.path
    out = []
    for m in models.values():
        m["sections"] = [m["sections"][k] for k in sorted(m["sections"])]
        out.append(m)
    return out


def _detail(run: Run) -> str:
    """What distinguishes a run: its layer, its data, its images."""
    info = run.result.info
    bits = []
    if isinstance(info.get("layer"), str) and info["layer"]:
        bits.append(info["layer"])
    layers = info.get("layers")
    if (isinstance(layers, list) and all(isinstance(n, str) for n in layers)
            and not info.get("data")):  # the layers a few images were looked at
        bits.append(", ".join(map(str, info["layers"][:4]))
                    + (" ..." if len(info["layers"]) > 4 else ""))
    if isinstance(info.get("data"), str) and info["data"]:
        bits.append(info["data"])
    count = info.get("n", info.get("images"))
    if count and isinstance(count, int) and not isinstance(count, bool):
        bits.append(f"{count} images")
    return "; ".join(bits)
