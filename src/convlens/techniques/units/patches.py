"""Receptive-field patches of a scan's top images: what each unit looks at.

For the top image of a unit at arg-max position (y, x) of a layer, the patch is the part of the
input under that position's receptive field (`Field.box`, from ``lens.layers()``), clipped at
the image border. Where the field hangs over the border the network saw its zero padding, i.e.
the mean colour after normalisation, so the patch is padded with that colour to the field's size
(or the image's, whichever is smaller): patches of one layer line up in a grid. The whole image
with the field's box drawn on it shows where the patch came from. The field is the layer's
local one: after a squeeze-excitation gate or global attention, the field of the spatial path
(the unit also depends on the whole image through the gate: `Field.global_context`); a layer
with no local field at all (a map pooled to 1x1) gives the whole image.

`unit_patches` does the cutting (numpy; it needs the dataset, so torch to read it); the
`UnitsResult` (`results`) draws grids (`figures`, `convlens.draw`, no torch).
"""
from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np

from ...errors import ConvlensError, unknown
from ...receptive import Field, field_at
from ...results import SavedResult
from .results import UnitsResult


def field_from_info(d: dict[str, Any] | None) -> Field | None:
    """A `Field` from its manifest form (``size, stride, center, is_global``, and in scans
    since issue 24 ``global_context, clipped, envelope, source``)."""
    if d is None:
        return None
    return Field(tuple(d["size"]), None if d["stride"] is None else tuple(d["stride"]),
                 None if d["center"] is None else tuple(d["center"]), bool(d["is_global"]),
                 global_context=bool(d.get("global_context", False)),
                 clipped=bool(d.get("clipped", False)), envelope=bool(d.get("envelope", False)),
                 source=d.get("source", "structure"))


def cut_patch(image: np.ndarray, fld: Field | None, pos: tuple[int, int],
              map_hw: tuple[int, int],
              fill: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The patch of ``image (H, W, C)`` under output position `pos` of a layer, and its box.

    Returns ``(patch (h, w, C), (x0, y0, x1, y1))``: the box clipped to the image (end
    exclusive); the patch is the field's window (at most the image's size), the part outside
    the image filled with `fill` (the mean colour the padding stands for).
    """
    hgt, wid = image.shape[:2]
    if fld is None or fld.is_global or fld.stride is None:
        return image.copy(), (0, 0, wid, hgt)
    y, x = int(pos[0]), int(pos[1])
    x0, y0, x1, y1 = field_at(fld, map_hw, y, x, (hgt, wid))
    bx0, by0, _, _ = fld.box(y, x)
    ux0, uy0 = math.floor(bx0 + 1e-6), math.floor(by0 + 1e-6)  # unclipped corner
    ph, pw = min(fld.size[0], hgt), min(fld.size[1], wid)
    patch = np.empty((ph, pw, image.shape[2]), dtype=image.dtype)
    patch[:] = fill
    rh, rw = min(y1 - y0, ph), min(x1 - x0, pw)
    oy, ox = min(max(0, y0 - uy0), ph - rh), min(max(0, x0 - ux0), pw - rw)
    patch[oy:oy + rh, ox:ox + rw] = image[y0:y0 + rh, x0:x0 + rw]
    return patch, (x0, y0, x1, y1)


def preprocessing_lens(model_info: dict[str, Any]):
    """A `Lens` with the saved preprocessing and no network (enough to re-read the data)."""
    from torch import nn

    from ...lens import Lens

    if not model_info.get("input_size"):
        raise ConvlensError("the scan's manifest has no model input size: give lens=")
    return Lens(nn.Identity(), model_info["mean"], model_info["std"], model_info["input_size"],
                model_info.get("labels"), tuple(model_info.get("value_range", (0.0, 1.0))),
                name=model_info.get("name"))


def unit_patches(scan: str | os.PathLike | SavedResult, layer: str,
                 units: Sequence[int] | None = None, data=None, lens=None,
                 directions: bool = False, max_units: int = 64) -> UnitsResult:
    """Cut the receptive-field patches of the top images of `units` of `layer` from a scan.

    Args:
        scan: a scan folder (or `SavedResult`).
        layer: a scanned layer. units: channels (or direction numbers); default the first
            `max_units`.
        data: the dataset (or spec); default the data spec saved in the scan's manifest.
        lens: for preprocessing; default one rebuilt from the manifest (no weights needed).
        directions: the random directions' top images instead of the units'.

    Example::

        res = unit_patches("scan/", "features.4", units=[0, 5])
        res.save("scan/units_features.4")       # a grid per unit: patches, boxed images
    """
    saved = scan if isinstance(scan, SavedResult) else SavedResult(scan)
    if saved.kind != "scan":
        raise ConvlensError(f"{saved.folder} holds a {saved.kind!r} result, not a scan")
    info = saved.info
    if layer not in info.get("layers", []):
        raise unknown("scanned layer", layer, info.get("layers", []),
                      hint=f"the scan in {saved.folder} has these layers")
    prefix = "dirs" if directions else "topk"
    if f"{prefix}_{layer}_index" not in saved.manifest["arrays"]:
        raise ConvlensError(f"the scan in {saved.folder} has no "
                            f"{'directions' if directions else 'top-k images'} for {layer!r}")
    index = saved.array(f"{prefix}_{layer}_index")
    score = saved.array(f"{prefix}_{layer}_score")
    pos = saved.array(f"{prefix}_{layer}_pos")
    n_units = index.shape[0]
    if units is None:
        units = list(range(min(n_units, max_units)))
    units = [int(u) for u in units]
    bad = [u for u in units if not 0 <= u < n_units]
    if bad:
        raise ConvlensError(f"{layer} has {n_units} {'directions' if directions else 'units'} "
                            f"(0..{n_units - 1}); no {bad[0]}")

    if lens is None:
        lens = preprocessing_lens(saved.manifest.get("model", {}))
    if data is None:
        data = info.get("data")
        if data is None:
            raise ConvlensError("the scan was run on a dataset object, not a spec: give data=")
    if isinstance(data, (str, os.PathLike)):
        from ...data import load_data
        data = load_data(data, lens=lens)
    elif data.lens is None:
        data.with_lens(lens)

    import torch

    from ...data.base import Item
    from ...draw import image_hwc

    fld = field_from_info((info.get("fields") or {}).get(layer))
    shape = (info.get("shapes") or {}).get(layer) or []
    map_hw = tuple(shape[1:3]) if len(shape) == 3 else (1, 1)
    fill = image_hwc(lens.to_unit(torch.zeros(lens.input_size)).numpy())[0, 0]

    rows: dict[int, int] = {}
    images: list[np.ndarray] = []
    true: list[int] = []
    k = index.shape[1]
    patches, boxes = [], np.zeros((len(units), k, 4), np.int64)
    image_of = np.full((len(units), k), -1, np.int64)
    for r, u in enumerate(units):
        row_patches = []
        for j in range(k):
            i = int(index[u, j])
            if i < 0:
                continue
            if i not in rows:
                item = data[i]
                if not isinstance(item, Item):
                    raise ConvlensError(f"item {i} of the data cannot be read now ({item.reason}); "
                                        "was the data changed since the scan?")
                rows[i] = len(images)
                images.append(image_hwc(lens.to_unit(item.image).numpy()))
                true.append(item.label)
            img = images[rows[i]]
            patch, box = cut_patch(img, fld, tuple(pos[u, j]), map_hw, fill)
            row_patches.append(patch)
            boxes[r, j] = box
            image_of[r, j] = rows[i]
        patches.append(row_patches)
    ph = max((p.shape[0] for row in patches for p in row), default=1)
    pw = max((p.shape[1] for row in patches for p in row), default=1)
    out = np.full((len(units), k, ph, pw, 3), 255, np.uint8)
    for r, row in enumerate(patches):
        for j, p in enumerate(row):
            out[r, j, :p.shape[0], :p.shape[1]] = p
    imgs = np.stack(images) if images else np.zeros((0, *lens.input_size[1:], 3), np.uint8)
    return UnitsResult(layer, np.asarray(units, np.int64), index[units], score[units], out, boxes,
                       imgs, image_of, directions, list(info.get("labels") or []),
                       np.asarray(true, np.int64), scan=str(saved.folder.resolve()),
                       image_classes=list(info.get("classes") or info.get("labels") or []))
