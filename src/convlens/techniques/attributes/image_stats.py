"""Attributes computed from the pixels, for data that carries none (METHODS.md §8).

Russakovsky et al. (IJCV 2015, §6.3) bin accuracy by properties of the images and objects.
Where a dataset has no such columns, convlens measures a few from each image:

- ``object_area``: share of the image the object covers: the visible mask's mean (``mask`` in
  the item's metadata, as `builtin:shapes` has), else the box ``(x0, y0, x1, y1)`` area over
  the image area (the image size read from the file's header when the item has a ``path``);
  NaN when the item has neither.
- ``brightness``: mean luma ``L = 0.299 R + 0.587 G + 0.114 B`` (Rec. 601; the channel itself
  for a grey image), in [0, 1].
- ``rms_contrast``: RMS contrast, the standard deviation of ``L`` over the image, in [0, 0.5].
- ``colourfulness``: Hasler & Süsstrunk (2003), "Measuring colourfulness in natural images",
  on 0..255 RGB: ``rg = R - G``, ``yb = (R + G) / 2 - B``,
  ``M = sqrt(σ_rg² + σ_yb²) + 0.3 sqrt(μ_rg² + μ_yb²)`` (0 for a grey image; their scale reads
  15 "slightly", 33 "moderately", 59 "quite", 109 "extremely colourful").
- ``edge_density``: share of the interior pixels where the Sobel gradient of ``L`` (scaled by
  1/8, so a ramp of slope s per pixel reads s) is larger than 0.1 per pixel; a sharp step of
  height h reads h/2 on the two pixels beside it.
- ``entropy``: Shannon entropy in bits of the 256-bin histogram of ``L`` quantised to 8 bits
  (0 for a flat image, 1 for half black, half white, at most 8).

`image_stats` measures a batch; `ImageStats` is the reducer of the dataset pass (fed by
`convlens.engine.run_local` beside `Predictions`, or by hand); `image_attributes` runs it over
a dataset without a model.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...engine import Reducer, progress_bar

COMPUTED = ("object_area", "brightness", "rms_contrast", "colourfulness", "edge_density",
            "entropy")
UNITS = {
    "object_area": "object area / image area",
    "brightness": "mean luma, 0-1",
    "rms_contrast": "std of luma, 0-1",
    "colourfulness": "Hasler-Süsstrunk M, 0-255 RGB",
    "edge_density": "share of pixels with |∇L| > 0.1 per px",
    "entropy": "bits, 8-bit luma histogram",
}
EDGE_THRESHOLD = 0.1
_LUMA = (0.299, 0.587, 0.114)


def luma(x: torch.Tensor) -> torch.Tensor:
    """Rec. 601 luma ``(N, H, W)`` of images ``(N, C, H, W)`` in [0, 1] (grey: the channel;
    other channel counts: the channel mean)."""
    if x.shape[1] == 3:
        w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device)
        return torch.einsum("nchw,c->nhw", x, w)
    if x.shape[1] == 1:
        return x[:, 0]
    return x.mean(1)


@torch.no_grad()
def image_stats(x: torch.Tensor) -> dict[str, np.ndarray]:
    """Brightness, contrast, colourfulness, edge density and entropy of each image.

    Args:
        x: ``(N, C, H, W)`` pixels in [0, 1] (C = 1 grey or 3 RGB).

    Returns ``name -> (N,)`` float64 arrays (see the module doc for the definitions).

    Example::

        s = image_stats(torch.full((1, 3, 8, 8), 0.5))
        s["colourfulness"]        # array([0.])
    """
    x = torch.as_tensor(x).detach().to(torch.float64).cpu()
    if x.dim() != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
    n = x.shape[0]
    L = luma(x)
    flat = L.flatten(1)
    out = {"brightness": flat.mean(1), "rms_contrast": flat.std(1, unbiased=False)}
    if x.shape[1] == 3:
        rgb = x * 255.0
        rg = (rgb[:, 0] - rgb[:, 1]).flatten(1)
        yb = (0.5 * (rgb[:, 0] + rgb[:, 1]) - rgb[:, 2]).flatten(1)
        sd = torch.sqrt(rg.var(1, unbiased=False) + yb.var(1, unbiased=False))
        mu = torch.sqrt(rg.mean(1) ** 2 + yb.mean(1) ** 2)
        out["colourfulness"] = sd + 0.3 * mu
    elif x.shape[1] == 1:
        out["colourfulness"] = torch.zeros(n, dtype=torch.float64)
    else:
        out["colourfulness"] = torch.full((n,), float("nan"), dtype=torch.float64)
    if L.shape[1] >= 3 and L.shape[2] >= 3:
        kx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]],
                          dtype=torch.float64) / 8.0
        k = torch.stack([kx, kx.t()])[:, None]                  # (2, 1, 3, 3)
        g = F.conv2d(L[:, None], k)                              # (N, 2, H-2, W-2), no padding
        mag = torch.sqrt((g ** 2).sum(1))
        out["edge_density"] = (mag > EDGE_THRESHOLD).to(torch.float64).flatten(1).mean(1)
    else:
        out["edge_density"] = torch.full((n,), float("nan"), dtype=torch.float64)
    q = (L.clamp(0, 1) * 255.0).round().to(torch.int64).flatten(1)
    counts = torch.zeros(n, 256, dtype=torch.float64).scatter_add_(
        1, q, torch.ones_like(q, dtype=torch.float64))
    p = counts / counts.sum(1, keepdim=True)
    out["entropy"] = -(torch.where(p > 0, p * torch.log2(p), torch.zeros_like(p))).sum(1) + 0.0
    return {k: v.numpy() for k, v in out.items()}


def object_area(meta: dict[str, Any], size: tuple[int, int] | None = None) -> float:
    """Share of the image the object covers, from the item's ``mask`` or ``box``; NaN if none.

    `size` ``(H, W)``: the image the box refers to, when the item has no readable ``path``.
    """
    mask = meta.get("mask")
    if mask is not None:
        m = np.asarray(mask)
        if m.size:
            return float((m > 0).mean())
    box = meta.get("box")
    if box is None or len(box) != 4:
        return float("nan")
    x0, y0, x1, y1 = (float(v) for v in box)
    hw = None
    path = meta.get("_abspath") or meta.get("path")
    if path and os.path.isfile(str(path)):
        try:
            from PIL import Image
            with Image.open(path) as im:          # the header only, no pixels decoded
                hw = (im.height, im.width)
        except (OSError, ValueError):             # an unreadable file: fall back to `size`
            hw = None
    hw = hw or size
    if not hw or hw[0] <= 0 or hw[1] <= 0:
        return float("nan")
    w = max(0.0, min(x1, hw[1]) - max(x0, 0.0))
    h = max(0.0, min(y1, hw[0]) - max(y0, 0.0))
    return w * h / (hw[0] * hw[1])


class ImageStats(Reducer):
    """The computed attributes of every image of a dataset pass, one row per item.

    Pixels are measured as the model sees them (after the lens's resize and crop) when built
    with the lens's ``mean``/``std``/``value_range``; without them the batch is taken to be in
    [0, 1] already. Rows are kept in memory (6 numbers per item); `merge` concatenates and
    `finalize` sorts by index, so the table does not depend on the batch size or order.
    """

    layers: list[str] = []

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 value_range: Sequence[float] = (0.0, 1.0)):
        self.mean = None if mean is None else tuple(float(v) for v in mean)
        self.std = None if std is None else tuple(float(v) for v in std)
        self.value_range = tuple(float(v) for v in value_range)
        self._parts: list[dict[str, np.ndarray]] = []

    @classmethod
    def for_lens(cls, lens) -> ImageStats:
        return cls(lens.mean, lens.std, lens.value_range)

    def _unit(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().float().cpu()
        if self.mean is not None:
            c = x.shape[1]
            m = torch.tensor(self.mean if len(self.mean) == c
                             else self.mean * c)[:c].view(1, c, 1, 1)
            s = torch.tensor(self.std if len(self.std) == c else self.std * c)[:c].view(1, c, 1, 1)
            x = x * s + m
        lo, hi = self.value_range
        return ((x - lo) / (hi - lo)).clamp(0, 1)

    def update(self, batch, acts=None, logits=None) -> None:
        if len(batch) == 0:
            return
        x = self._unit(batch.images)
        row = image_stats(x)
        size = tuple(x.shape[-2:])
        row["object_area"] = np.array([object_area(m, size) for m in batch.meta], dtype=np.float64)
        row["index"] = batch.indices.cpu().numpy().astype(np.int64)
        row["label"] = batch.labels.cpu().numpy().astype(np.int64)
        self._parts.append(row)

    def merge(self, other: ImageStats) -> ImageStats:
        self._parts.extend(other._parts)
        return self

    def spawn(self) -> ImageStats:
        return ImageStats(self.mean, self.std, self.value_range)

    def _joined(self) -> dict[str, np.ndarray]:
        cols = ("index", "label") + COMPUTED
        if not self._parts:
            return {c: np.zeros(0, np.int64 if c in ("index", "label") else np.float64)
                    for c in cols}
        return {c: np.concatenate([p[c] for p in self._parts]) for c in cols}

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self._joined()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._parts = [dict(state["rows"])] if len(state["rows"]["index"]) else []

    def finalize(self):
        """The table ``index, label, object_area, brightness, ...`` (a DataFrame), sorted by
        index (``label`` -1 where the data has none)."""
        import pandas as pd

        t = pd.DataFrame(self._joined())
        return t.drop_duplicates("index", keep="last").sort_values("index").reset_index(drop=True)


# ------------------------------------------------------------------------------------------
# a pass without a model
# ------------------------------------------------------------------------------------------
def _raw_batches(data, indices: Sequence[int], batch_size: int) -> Iterator:
    """Batches of the items' own pixels (in [0, 1], grey or RGB as stored), consecutive items
    of the same size together; unreadable items are skipped with a warning."""
    import warnings

    from PIL import Image

    from ...data import Batch, SkippedImageWarning
    from ...data.images import to_channels
    from ...errors import BadImage

    buf: list[tuple[int, torch.Tensor, dict]] = []

    def flush():
        if buf:
            yield Batch(torch.stack([b[1] for b in buf]), torch.tensor([b[3] for b in buf]),
                        torch.tensor([b[0] for b in buf]), [b[2] for b in buf], [])
            buf.clear()

    for i in indices:
        try:
            img, label, meta = data.load(int(i))
        except BadImage as e:
            warnings.warn(f"skipped {data.source(int(i))}: {e}", SkippedImageWarning, stacklevel=2)
            continue
        meta = dict(meta)
        if "path" in meta and hasattr(data, "paths"):
            meta["_abspath"] = data.paths[int(i)]   # box areas read the file's real size
        if isinstance(img, Image.Image):
            grey = img.mode in ("L", "1", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
            img = np.asarray(to_channels(img, 1 if grey else 3))
        a = np.asarray(img, dtype=np.float32) / 255.0
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        t = torch.from_numpy(np.ascontiguousarray(a))
        if buf and (buf[0][1].shape != t.shape or len(buf) >= batch_size):
            yield from flush()
        buf.append((int(i), t, meta, int(label)))
    yield from flush()


def image_attributes(data, lens=None, indices: Sequence[int] | None = None,
                     batch_size: int = 64, progress: bool = True):
    """The computed attributes (module doc) of every item of `data`, as a DataFrame.

    Without `lens`, each image is measured as stored (its own size, grey or RGB); with one, as
    the model sees it (resized, cropped, converted). One pass, no model run.

    Args:
        data: a dataset or a data spec. indices: only these items (default all).

    Returns a DataFrame ``index, label, object_area, brightness, rms_contrast, colourfulness,
    edge_density, entropy``, sorted by index.

    Example::

        t = image_attributes("builtin:fashion-mnist:test", indices=range(100))
        t.brightness.mean()
    """
    from ...data import Loader, as_dataset

    ds = as_dataset(data, lens)
    idx = list(range(len(ds))) if indices is None else [int(i) for i in indices]
    red = ImageStats.for_lens(ds.lens) if ds.lens is not None else ImageStats()
    bar = progress_bar(len(idx), 0, "image attributes", progress)
    try:
        if ds.lens is not None:
            batches = Loader(ds, batch_size=batch_size, indices=idx)
        else:
            batches = _raw_batches(ds, idx, batch_size)
        for batch in batches:
            red.update(batch)
            bar.update(len(batch))
    finally:
        bar.close()
    return red.finalize()
