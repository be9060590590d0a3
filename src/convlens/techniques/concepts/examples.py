"""Each unit's top images for network dissection's figure (Bau et al. 2017, Fig. 2 and 6):
the items where the unit's max activation is highest, shown with the unit's thresholded
region and its best concept's mask.

`TopItems` keeps them during the overlaps pass (a running, mergeable top-k per unit: no extra
pass over the data); `unit_examples` then re-loads only those few items of the units it shows
(`choose_units`) and cuts their regions and masks (`Examples`, a reducer of one small local
pass).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...engine import Reducer, run_local

#: images kept per unit, units shown per layer, and units shown in all
TOP, SHOW, MOST = 5, 3, 36


class TopItems:
    """Per unit, the `k` items of highest score (an image's max activation over the map),
    ties broken by the smaller item index, NaN counted as ``-inf``. `merge` is exactly the
    top-k of the union, so shards, batch sizes and orders give the same items.

    ``update(score (N, U), items (N,))``; ``score``, ``item``: ``(U, <= k)``, best first.
    """

    def __init__(self, k: int = TOP):
        if k < 1:
            raise ValueError("k must be at least 1")
        self.k = int(k)
        self.score: torch.Tensor | None = None   # (U, <= k) float32
        self.item: torch.Tensor | None = None    # (U, <= k) int64

    def update(self, score: torch.Tensor, items: torch.Tensor) -> None:
        inf = float("inf")
        s = torch.nan_to_num(score.detach().float().cpu().t(), nan=-inf, posinf=inf,
                             neginf=-inf)
        self._keep(s, items.long().cpu()[None].expand_as(s))

    def _keep(self, s: torch.Tensor, i: torch.Tensor) -> None:
        if self.score is not None:
            s, i = torch.cat([self.score, s], 1), torch.cat([self.item, i], 1)
        o = i.argsort(dim=1, stable=True)                     # by item, then (stable) by score
        s, i = s.gather(1, o), i.gather(1, o)
        o = s.argsort(dim=1, descending=True, stable=True)[:, :self.k]
        self.score, self.item = s.gather(1, o), i.gather(1, o)

    def merge(self, other: "TopItems") -> "TopItems":
        if other.score is not None:
            self._keep(other.score, other.item)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"k": self.k, "score": self.score, "item": self.item}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.k, self.score, self.item = int(state["k"]), state["score"], state["item"]


def choose_units(iou: dict[str, torch.Tensor], show: int = SHOW,
                 most: int = MOST) -> list[tuple[str, int, int, float]]:
    """The units to draw: per layer the `show` of highest IoU with their best concept (IoU
    above 0; ties to the smaller unit), at most `most` in all (the highest IoUs kept), in
    layer order: ``(layer, unit, concept index, iou)``."""
    picked = []
    for layer, m in iou.items():
        best_iou, best = m.max(1)
        order = (-best_iou).argsort(stable=True, dim=0)[:show]
        picked += [(layer, int(u), int(best[u]), float(best_iou[u])) for u in order
                   if best_iou[u] > 0]
    if len(picked) > most:
        keep = sorted(range(len(picked)), key=lambda j: -picked[j][3])[:most]
        picked = [picked[j] for j in sorted(keep)]
    return picked


class Examples(Reducer):
    """The re-load of a few items: per wanted ``(row, layer, unit, concept)`` of an item, the
    unit's region (its map upsampled bilinearly to the image and cut at ``T_k``, exactly as
    `IoUCounts` counts it) and the concept's mask; and each item's pixels."""

    needs_logits = False

    def __init__(self, overlaps, wanted: dict[int, list[tuple[int, str, int, int]]]):
        self.ov, self.wanted = overlaps, wanted
        self.layers = sorted({w[1] for ws in wanted.values() for w in ws})
        self.pixels: dict[int, np.ndarray] = {}
        self.region: dict[int, np.ndarray] = {}
        self.mask: dict[int, np.ndarray] = {}

    def summarize(self, layer: str, act: torch.Tensor) -> torch.Tensor:
        return act.detach().float()

    def update(self, batch, acts, logits) -> None:
        from ...draw import image_hwc

        labels = self.ov.concepts(batch)
        pixels = self.ov._pixels(batch.images)
        size = batch.images.shape[2:]
        for i, item in enumerate(batch.indices.tolist()):
            self.pixels[item] = image_hwc(pixels[i].numpy())
            for row, layer, unit, concept in self.wanted.get(item, ()):
                up = F.interpolate(acts[layer][i:i + 1, unit:unit + 1], size=size,
                                   mode="bilinear", align_corners=False)[0, 0]
                t = self.ov.thresholds[layer][unit].to(up)
                self.region[row] = (up >= t).cpu().numpy()
                self.mask[row] = labels[i, concept].cpu().numpy()


def unit_examples(lens, data, overlaps, top: dict[str, TopItems],
                  chosen: Sequence[tuple[str, int, int, float]], names: Sequence[str],
                  batch_size: int = 64) -> dict[str, Any]:
    """Re-load the top items of the `chosen` units (one local pass over those items only):
    ``{"rows": [{layer, unit, concept, iou, rank, item, activation, image}], "images" (M, H, W,
    3) uint8, "regions" (R, H, W) bool, "masks" (R, H, W) bool}`` (row r of the arrays is
    rows[r]; ``image`` is the row of `images`)."""
    rows, wanted = [], {}
    for layer, unit, concept, iou in chosen:
        t = top[layer]
        for rank in range(t.item.shape[1]):
            item = int(t.item[unit, rank])
            wanted.setdefault(item, []).append((len(rows), layer, unit, concept))
            rows.append({"layer": layer, "unit": unit, "concept": names[concept], "iou": iou,
                         "rank": rank + 1, "item": item,
                         "activation": float(t.score[unit, rank])})
    if not rows:
        return {"rows": [], "images": None, "regions": None, "masks": None}
    items = np.array(sorted(wanted), dtype=np.int64)
    ex = Examples(overlaps, wanted)
    run_local(lens, data, [ex], items, batch_size=batch_size, progress=False)
    if not ex.pixels:  # none could be read again
        return {"rows": [], "images": None, "regions": None, "masks": None}
    at = {int(item): j for j, item in enumerate(items)}
    for r in rows:
        r["image"] = at[r["item"]]
    blank = np.zeros_like(next(iter(ex.pixels.values())))  # a file unreadable this time
    images = np.stack([ex.pixels.get(int(i), blank) for i in items])
    for r in range(len(rows)):
        if r not in ex.region:
            ex.region[r] = ex.mask[r] = np.zeros(images.shape[1:3], bool)
    return {"rows": rows, "images": images,
            "regions": np.stack([ex.region[r] for r in range(len(rows))]),
            "masks": np.stack([ex.mask[r] for r in range(len(rows))])}


def top_table(top: dict[str, TopItems]):
    """One row per layer, unit and rank: ``layer, unit, rank, item, activation`` (the
    image's max activation)."""
    import pandas as pd

    parts = []
    for layer, t in top.items():
        if t.item is None:
            continue
        u, k = t.item.shape
        parts.append(pd.DataFrame({
            "layer": layer, "unit": np.repeat(np.arange(u), k),
            "rank": np.tile(np.arange(1, k + 1), u), "item": t.item.reshape(-1).numpy(),
            "activation": t.score.reshape(-1).numpy()}))
    cols = ["layer", "unit", "rank", "item", "activation"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def examples_table(rows: list[dict]):
    """`unit_examples`'s rows as a table (row r: the r-th region and mask)."""
    import pandas as pd

    return pd.DataFrame(rows, columns=["layer", "unit", "concept", "iou", "rank", "item",
                                       "activation", "image"])
