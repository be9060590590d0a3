"""Which Tux Paint stamps ``builtin:stamps`` uses: the classes' folders, the photo rule and the
train / test split of the stamps (see `convlens.data.stamps`)."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_FOLDERS: dict[str, tuple[str, ...]] = {
    "bird": ("animals/birds",),
    "coin": ("symbols/money",),
    "flower": ("plants/flowers",),
    "fruit-veg": ("food/fruit", "food/vegetables", "food/spices", "plants/mushrooms"),
    "mammal": ("animals/mammals", "animals/marsupials"),
    "vehicle": ("vehicles", "military/vehicles"),
}
CLASSES: tuple[str, ...] = tuple(CLASS_FOLDERS)
DROP_FOLDERS = ("cartoon", "toys")
NOT_PHOTOS = ("animals/mammals/aquatic/whale.png",)  # a painting that passes the top8 rule
PHOTO_TOP8 = 0.33
TEST_SHARE = 0.30
MIN_TEST = 5

SPLITS = {"train": 0, "test": 1, "seen": 2}     # split -> seed
STAMP_SPLIT = {"train": "train", "test": "test", "seen": "train"}  # split -> whose stamps


def top8_share(rgba: np.ndarray) -> float:
    """Share of the opaque pixels (alpha >= 128) taken by their 8 most frequent colours."""
    opaque = rgba[..., 3] >= 128
    rgb = rgba[..., :3][opaque].astype(np.int64)
    if len(rgb) == 0:
        return 1.0
    codes = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    counts = np.bincount(np.unique(codes, return_inverse=True)[1].ravel())
    return float(np.sort(counts)[::-1][:8].sum() / counts.sum())


def _group_key(rel: str, names: set[str]) -> str:
    """``pig_golden2`` -> ``pig_golden`` where that stamp exists in the same class."""
    folder, _, name = rel.rpartition("/")
    stem = name[:-4].lower()
    base = re.sub(r"[-_]?\d+$", "", stem)
    return f"{folder}/{base}" if base != stem and base in names else f"{folder}/{stem}"


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big")


@dataclass
class Catalogue:
    """The stamps of each class and split, and the photo-rule number of every candidate."""

    root: Path
    stamps: dict[str, list[list[str]]]                    # split -> [class] -> relative paths
    top8: dict[str, float] = field(default_factory=dict)  # every candidate PNG -> top8
    dropped: dict[str, str] = field(default_factory=dict)  # relative path -> why

    def pool(self, split: str) -> list[str]:
        """Every stamp of a split (train or test), classes in order."""
        key = "_pool_" + split
        if key not in self.__dict__:
            self.__dict__[key] = [r for cls in self.stamps[split] for r in cls]
        return self.__dict__[key]

    def count(self, split: str) -> dict[str, int]:
        return {c: len(s) for c, s in zip(CLASSES, self.stamps[STAMP_SPLIT[split]])}


@lru_cache(maxsize=4)
def _catalogue(root: str) -> Catalogue:
    base = Path(root)
    per_class: list[list[str]] = []
    top8: dict[str, float] = {}
    dropped: dict[str, str] = {}
    for folders in CLASS_FOLDERS.values():
        kept = []
        for folder in folders:
            for p in sorted((base / folder).rglob("*.png")):
                rel = p.relative_to(base).as_posix()
                parts = rel.split("/")
                if any(d in parts[:-1] for d in DROP_FOLDERS):
                    dropped[rel] = "folder"
                    continue
                if parts[-1][:-4].lower().endswith("_mirror"):
                    dropped[rel] = "mirror"
                    continue
                with Image.open(p) as im:
                    rgba = np.asarray(im.convert("RGBA"))
                top8[rel] = share = top8_share(rgba)
                if share >= PHOTO_TOP8:
                    dropped[rel] = f"drawing (top8 {share:.2f})"
                elif rel in NOT_PHOTOS:
                    dropped[rel] = "painting (by eye)"
                elif (rgba[..., 3] >= 128).sum() < 64:
                    dropped[rel] = "too small"
                else:
                    kept.append(rel)
        per_class.append(sorted(kept))
    train: list[list[str]] = []
    test: list[list[str]] = []
    for kept in per_class:
        names = {r.rpartition("/")[2][:-4].lower() for r in kept}
        groups: dict[str, list[str]] = {}
        for r in kept:
            groups.setdefault(_group_key(r, names), []).append(r)
        want = max(MIN_TEST, round(TEST_SHARE * len(kept)))
        tr, te = [], []
        for key in sorted(groups, key=lambda k: (_hash(k), k)):
            (te if len(te) < want else tr).extend(groups[key])
        train.append(sorted(tr))
        test.append(sorted(te))
    return Catalogue(base, {"train": train, "test": test}, top8, dropped)
