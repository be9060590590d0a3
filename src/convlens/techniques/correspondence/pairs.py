"""Image pairs with known correspondence, for `correspondence` (METHODS.md §7).

A `Pair` is two model-ready images ``(C, H, W)`` and, for each named keypoint, where it is in
image A and where it truly is in image B. Three sources, from any image data:

- `warp_pairs`: an item and a random affine or thin-plate-spline warp of it; the mapping is
  known exactly, so the true point in B is the warped point of A.
- `intraclass_pairs`: two different items of the same class that carry keypoints of the same
  names (``builtin:shapes``; a manifest with ``kp_<name>_x, kp_<name>_y`` columns).
- `file_pairs`: a CSV/Parquet table listing item pairs (columns ``a`` and ``b``).

Coordinates are continuous pixels, as in ``builtin:shapes``: pixel ``(row y, col x)`` covers
``[x, x+1) x [y, y+1)``, its centre is ``(x + 0.5, y + 0.5)``; points are ``(x, y)``. A
manifest's keypoints refer to the file as stored; they are moved with the resize and centre
crop that turns the file into the model's input.

`Pairs` is lazy: ``pairs[i]`` builds pair `i` (reads, warps) when it is asked for, or returns
the reason it cannot be used (a counted skip, never an exception mid-run).
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ...errors import ConvlensError
from .warps import invert, random_affine, random_tps, textured_points, warp_image

WARPS = ("affine", "tps", "mixed")


@dataclass
class Pair:
    """Two images and the keypoints that correspond between them.

    ``points_a``/``points_b``: ``(K, 2)`` float64 ``(x, y)`` continuous pixel coordinates.
    ``ref``: the PCK reference length ``max(h, w)`` of image B. ``key_a``/``key_b``: an id of
    each image when it is a dataset item as stored (a pass over the images runs each id once),
    None for a generated image.
    """

    image_a: torch.Tensor
    image_b: torch.Tensor
    points_a: np.ndarray
    points_b: np.ndarray
    names: list[str]
    ref: float
    title: str = ""
    key_a: Any = None
    key_b: Any = None
    dropped: Counter = field(default_factory=Counter)


class Pairs(Sequence):
    """A lazy list of pairs: ``pairs[i]`` is a `Pair`, or a string saying why pair `i` is
    skipped. ``skipped`` counts what was left out while the list was made."""

    def __init__(self, kind: str, n: int, build: Callable[[int], "Pair | str"],
                 skipped: Counter | None = None, params: dict | None = None):
        self.kind, self._n, self._build = kind, n, build
        self.skipped = Counter(skipped or {})
        self.params = dict(params or {})

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        if not -self._n <= i < self._n:
            raise IndexError(i)
        return self._build(i % self._n)

    @classmethod
    def of(cls, pairs: Sequence[Pair], kind: str = "given") -> "Pairs":
        """Pairs made by hand (a list of `Pair`)."""
        pairs = list(pairs)
        return cls(kind, len(pairs), pairs.__getitem__)


# ------------------------------------------------------------------------------------------
# keypoints of an item, in model-input coordinates
# ------------------------------------------------------------------------------------------
def _raw_size(ds, index: int) -> tuple[int, int] | None:
    """``(width, height)`` of item `index` as stored, before preprocessing."""
    try:
        img = ds.load(index)[0]
    except Exception:  # an unreadable file is skipped when the item itself is read
        return None
    if hasattr(img, "size") and not isinstance(img, np.ndarray):
        return tuple(img.size)
    a = np.asarray(img)
    return (a.shape[1], a.shape[0])


def to_input(points: np.ndarray, raw_wh: tuple[int, int], input_hw: tuple[int, int]) -> np.ndarray:
    """Points of the stored image moved by `Lens.preprocess`'s resize (shorter side to the
    input size, bilinear) and centre crop."""
    w0, h0 = raw_wh
    h, w = input_hw
    if (w0, h0) == (w, h):
        return points
    scale = max(w / w0, h / h0)
    w1, h1 = max(w, round(w0 * scale)), max(h, round(h0 * scale))
    left, top = (w1 - w) // 2, (h1 - h) // 2
    return np.stack([points[:, 0] * (w1 / w0) - left, points[:, 1] * (h1 / h0) - top], 1)


def item_keypoints(ds, item) -> dict[str, tuple[float, float]]:
    """The item's named keypoints in the coordinates of ``item.image``."""
    kps = (item.meta or {}).get("keypoints") or {}
    if not kps:
        return {}
    names = list(kps)
    pts = np.array([kps[k] for k in names], dtype=np.float64).reshape(-1, 2)
    raw = _raw_size(ds, item.index)
    if raw is not None:
        pts = to_input(pts, raw, tuple(item.image.shape[-2:]))
    return {k: (float(x), float(y)) for k, (x, y) in zip(names, pts)}


def inside(points: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Which points lie in the image: ``0 <= x < w`` and ``0 <= y < h`` (and are finite)."""
    h, w = hw
    x, y = points[:, 0], points[:, 1]
    return np.isfinite(x) & np.isfinite(y) & (x >= 0) & (x < w) & (y >= 0) & (y < h)


def make_pair(image_a, image_b, points_a, points_b, names, title="", key_a=None, key_b=None,
              ref: float | None = None) -> Pair | str:
    """A `Pair`, keeping only keypoints inside both images (the others counted in
    ``pair.dropped``); the reason as a string when none is left."""
    points_a = np.asarray(points_a, dtype=np.float64).reshape(-1, 2)
    points_b = np.asarray(points_b, dtype=np.float64).reshape(-1, 2)
    in_a = inside(points_a, tuple(image_a.shape[-2:]))
    in_b = inside(points_b, tuple(image_b.shape[-2:]))
    dropped = Counter({"keypoint outside image A": int((~in_a).sum()),
                       "keypoint outside image B": int((in_a & ~in_b).sum())})
    keep = in_a & in_b
    if not keep.any():
        return "no keypoint inside both images"
    h, w = image_b.shape[-2:]
    return Pair(image_a, image_b, points_a[keep], points_b[keep],
                [n for n, k in zip(names, keep) if k], float(ref or max(h, w)), title,
                key_a, key_b, +dropped)


# ------------------------------------------------------------------------------------------
# synthetic warps
# ------------------------------------------------------------------------------------------
def warp_pairs(data, n: int = 100, warp: str = "affine", points: int = 8, strength: float = 1.0,
               seed: int = 0) -> Pairs:
    """Pairs of items ``0..n-1`` of `data` and a random warp of each (seeded per pair).

    Keypoints in A are the item's own (``meta["keypoints"]``) where it has them, else `points`
    textured points; the true point in B is the warped point. `warp`: ``affine``, ``tps``
    (thin-plate spline) or ``mixed`` (alternating).

    Example::

        pairs = warp_pairs(load_data("builtin:fashion-mnist:test", lens=lens), 50, "tps")
    """
    if warp not in WARPS:
        from ...errors import unknown
        raise unknown("warp", warp, WARPS)
    if len(data) == 0:
        raise ConvlensError("the data has no items to warp")
    n = min(int(n), len(data))

    def build(i: int) -> Pair | str:
        from ...data import Item

        item = data[i]
        if not isinstance(item, Item):
            return "unreadable image"
        rng = np.random.default_rng([seed, i])
        hw = tuple(item.image.shape[-2:])
        kps = item_keypoints(data, item)
        if kps:
            names = list(kps)
            pa = np.array([kps[k] for k in names], dtype=np.float64)
        else:
            pa = textured_points(item.image, points, rng)
            names = [f"p{j}" for j in range(len(pa))]
            if not len(pa):
                return "no textured point to follow (a flat image)"
        kind = warp if warp != "mixed" else ("affine", "tps")[i % 2]
        if kind == "affine":
            m = random_affine(rng, hw, strength)
            inv = np.linalg.inv(m)
            b = warp_image(item.image, lambda q: q @ inv[:2, :2].T + inv[:2, 2])
            pb = pa @ m[:2, :2].T + m[:2, 2]
        else:
            tps = random_tps(rng, hw, strength)
            b = warp_image(item.image, tps)
            pb, ok = invert(tps, pa)
            pb[~ok] = np.nan  # not invertible there: dropped as "outside image B"
        src = getattr(data, "source", lambda j: f"item {j}")(i)
        return make_pair(item.image, b, pa, pb, names, f"{src} → {kind} warp", key_a=i)

    return Pairs("warp", n, build, params={"warp": warp, "strength": strength, "seed": seed,
                                            "points": points})


# ------------------------------------------------------------------------------------------
# intra-class pairs and pairs files
# ------------------------------------------------------------------------------------------
def _labels_and_names(data, limit: int) -> list[tuple[int, int, frozenset, dict]]:
    """``(index, label, keypoint names, meta)`` of the first `limit` items (file datasets
    answer from their table, without reading images)."""
    out = []
    metas, labels = getattr(data, "meta", None), getattr(data, "labels", None)
    for i in range(min(limit, len(data))):
        if isinstance(metas, list) and isinstance(labels, list):
            meta, label = metas[i], labels[i]
        else:
            item = data[i]
            if not hasattr(item, "meta"):
                continue
            meta, label = item.meta, item.label
        kps = (meta or {}).get("keypoints") or {}
        out.append((i, int(label), frozenset(kps), meta or {}))
    return out


def _close(ma: dict, mb: dict, close: dict[str, Any]) -> bool:
    """Whether two items' metadata agree within the tolerances of `close`: ``{key: tol}`` or
    ``{key: (tol, period)}`` for a circular quantity (an angle in degrees: period 360)."""
    for key, spec in close.items():
        tol, period = (spec if isinstance(spec, (tuple, list)) else (spec, None))
        try:
            d = abs(float(ma[key]) - float(mb[key]))
        except (KeyError, TypeError, ValueError):
            return False
        if period:
            d = d % period
            d = min(d, period - d)
        if d > tol:
            return False
    return True


def _item_pair(data, ia: int, ib: int, names: Sequence[str] | None) -> Pair | str:
    from ...data import Item

    a, b = data[ia], data[ib]
    if not isinstance(a, Item) or not isinstance(b, Item):
        return "unreadable image"
    ka, kb = item_keypoints(data, a), item_keypoints(data, b)
    common = ([k for k in ka if k in kb] if names is None
              else [k for k in names if k in ka and k in kb])
    if not common:
        return "no common keypoint names"
    src = getattr(data, "source", lambda j: f"item {j}")
    return make_pair(a.image, b.image, [ka[k] for k in common], [kb[k] for k in common], common,
                     f"{src(ia)} → {src(ib)}", key_a=ia, key_b=ib)


def intraclass_pairs(data, n: int = 100, seed: int = 0, close: dict[str, Any] | None = None,
                     scan: int | None = None) -> Pairs:
    """Pairs of two different items of the same class that share keypoint names.

    Items are drawn from the first `scan` items (default ``20 n``), shuffled per class with
    `seed`; each item is in at most one pair (so pairs are independent and each image runs
    through the model once), classes take turns. `close`: metadata that must agree, e.g.
    ``{"rotation": (30, 360)}`` (circular, degrees) for ``builtin:shapes``, whose keypoint names
    turn with the shape: ``v0`` of a square at 0° looks like ``v1`` at 90°.

    Example::

        pairs = intraclass_pairs(load_data("builtin:shapes", lens=lens), 100)
    """
    rows = _labels_and_names(data, scan or max(20 * int(n), 200))
    rows = [r for r in rows if r[2]]
    if not rows:
        raise ConvlensError("no item of the data carries keypoints (builtin:shapes does; a "
                            "manifest needs kp_<name>_x, kp_<name>_y columns): use warp pairs")
    rng = np.random.default_rng(seed)
    by_class: dict[int, list] = {}
    for r in rows:
        by_class.setdefault(r[1], []).append(r)
    skipped: Counter = Counter()
    per_class: list[list[tuple[int, int]]] = []
    for label in sorted(by_class):
        group = [by_class[label][j] for j in rng.permutation(len(by_class[label]))]
        used, found = set(), []
        for a_pos, a in enumerate(group):
            if a[0] in used:
                continue
            for b in group[a_pos + 1:]:
                if b[0] in used or not (a[2] & b[2]):
                    continue
                if close and not _close(a[3], b[3], close):
                    continue
                used.update((a[0], b[0]))
                found.append((a[0], b[0]))
                break
        per_class.append(found)
    chosen = [p for turn in _interleave(per_class) for p in turn][:int(n)]
    if not chosen:
        raise ConvlensError("no two items of one class share a keypoint name"
                            + (f" and agree on {close}" if close else ""))
    return Pairs("intraclass", len(chosen), lambda i: _item_pair(data, *chosen[i], None), skipped,
                 params={"seed": seed, "close": close})


def _interleave(groups: list[list]) -> list[list]:
    """Rounds of one element from each group in turn (classes take turns)."""
    rounds = []
    for k in range(max((len(g) for g in groups), default=0)):
        rounds.append([g[k] for g in groups if k < len(g)])
    return rounds


def file_pairs(data, path: str | os.PathLike, n: int | None = None) -> Pairs:
    """Pairs listed in a CSV/Parquet table with columns ``a`` and ``b``: item indices, or item
    paths as the data lists them (``meta["path"]``, or the source name). An optional ``names``
    column (``;``-separated) keeps only those keypoints. Rows naming an unknown item are counted
    as skipped."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise ConvlensError(f"pairs file not found: {p}")
    try:
        df = pd.read_parquet(p) if p.suffix.lower() == ".parquet" else pd.read_csv(p)
    except Exception as e:  # pandas raises many kinds for malformed tables
        raise ConvlensError(f"cannot read pairs file {p}: {e}") from None
    if not {"a", "b"} <= set(df.columns):
        raise ConvlensError(f"pairs file {p} needs columns 'a' and 'b' (item indices or paths); "
                            f"it has {list(df.columns)}")
    lookup: dict[str, int] = {}
    metas = getattr(data, "meta", None)
    for i in range(len(data)) if isinstance(metas, list) else ():
        lookup.setdefault(str(metas[i].get("path")), i)
        lookup.setdefault(str(data.source(i)), i)

    def index(v) -> int | None:
        if isinstance(v, (int, np.integer)) or (isinstance(v, str) and v.strip().isdigit()):
            i = int(v)
            return i if 0 <= i < len(data) else None
        return lookup.get(str(v))

    skipped: Counter = Counter()
    rows = []
    for rec in df.to_dict("records"):
        ia, ib = index(rec["a"]), index(rec["b"])
        if ia is None or ib is None:
            skipped["unknown item in the pairs file"] += 1
            continue
        names = rec.get("names")
        names = [s for s in str(names).split(";") if s] if isinstance(names, str) else None
        rows.append((ia, ib, names))
    rows = rows[:n] if n else rows
    if not rows:
        raise ConvlensError(f"no usable row in pairs file {p} ({dict(skipped)})")
    return Pairs("file", len(rows), lambda i: _item_pair(data, *rows[i]), skipped,
                 params={"file": str(p)})


def has_keypoints(data, scan: int = 50) -> bool:
    """Whether any of the first `scan` items carries named keypoints (then intra-class pairs
    can be made; otherwise use warp pairs)."""
    return any(r[2] for r in _labels_and_names(data, scan))


def make_pairs(spec, data, n: int = 100, seed: int = 0, warp: str = "affine",
               close: dict | None = None, points: int = 8) -> Pairs:
    """Pairs from a spec: ``"warp"``, ``"intraclass"``, or a pairs file path."""
    if spec == "warp":
        return warp_pairs(data, n, warp=warp, points=points, seed=seed)
    if spec == "intraclass":
        return intraclass_pairs(data, n, seed=seed, close=close)
    if isinstance(spec, (str, os.PathLike)):
        if not Path(spec).exists():
            raise ConvlensError(f"pairs must be 'warp', 'intraclass' or a pairs file; "
                                f"{os.fspath(spec)!r} is none of these")
        return file_pairs(data, spec, n)
    raise ConvlensError(f"pairs must be 'warp', 'intraclass', a pairs file or a list of "
                        f"Pair, got {type(spec).__name__}")
