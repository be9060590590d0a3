"""Drawing of the concepts family (matplotlib `Figure`, never pyplot)."""
from __future__ import annotations

import numpy as np
import pandas as pd

COLOURS = {"object": "#1f77b4", "texture": "#2ca02c", "colour": "#d62728", "concept": "#7f7f7f"}


def _figure(**kw):
    from matplotlib.figure import Figure
    return Figure(**kw)


def detectors_figure(detectors: pd.DataFrame, units: pd.DataFrame, path: str, title: str) -> None:
    """Bau et al.'s Fig. 5: the number of unique detectors per category at each layer."""
    layers = list(dict.fromkeys(units.layer))
    cats = sorted(set(detectors.category)) or ["object"]
    fig = _figure(figsize=(max(4.5, 1.1 * len(layers) + 2), 3.4), dpi=100)
    ax = fig.add_subplot()
    width = 0.8 / len(cats)
    x = np.arange(len(layers))
    for j, c in enumerate(cats):
        d = detectors[detectors.category == c].set_index("layer")["unique"]
        ax.bar(x + (j - (len(cats) - 1) / 2) * width, [int(d.get(lay, 0)) for lay in layers],
               width, label=c, color=COLOURS.get(c, None))
    ax.set_xticks(x)
    ax.set_xticklabels(layers, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("unique detectors")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def best_units_figure(units: pd.DataFrame, path: str, title: str, k: int = 15) -> None:
    """The `k` units of highest IoU: layer/unit, concept, IoU (the rule's line dashed)."""
    top = units.sort_values("iou", ascending=False).head(k).iloc[::-1]
    fig = _figure(figsize=(6.4, 0.28 * len(top) + 1.2), dpi=100)
    ax = fig.add_subplot()
    y = np.arange(len(top))
    ax.barh(y, top.iou, color=[COLOURS.get(c, "#7f7f7f") for c in top.category])
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r.layer} #{r.unit}: {r.concept}" for r in top.itertuples()],
                       fontsize=7)
    ax.axvline(0.04, color="0.4", ls="--", lw=1)
    ax.set_xlabel("IoU")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def tcav_figure(table: pd.DataFrame, path: str, title: str) -> None:
    """Kim et al.'s bars: per class, each concept's TCAV score at each layer (mean and std
    over runs); insignificant bars grey and hatched; the random baseline as a dot."""
    classes = list(dict.fromkeys(zip(table["class"], table["class_name"])))
    layers = list(dict.fromkeys(table.layer))
    concepts = list(dict.fromkeys(table.concept))
    # at most 12 inches (1,200 px: the report's width); many concepts get narrower bars
    fig = _figure(figsize=(min(12.0, max(5.5, 0.6 * len(concepts) * len(layers) + 2)),
                           2.6 * max(1, len(classes)) + 0.6), dpi=100)
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"]
    width = 0.8 / max(1, len(layers))
    for i, (k, name) in enumerate(classes):
        ax = fig.add_subplot(len(classes), 1, i + 1)
        x = np.arange(len(concepts))
        for j, lay in enumerate(layers):
            d = table[(table["class"] == k) & (table.layer == lay)].set_index("concept")
            for xi, c in zip(x, concepts):
                if c not in d.index:
                    continue
                r = d.loc[c]
                pos = xi + (j - (len(layers) - 1) / 2) * width
                ax.bar(pos, r.score, width, yerr=r["std"], capsize=2,
                       color=palette[j % len(palette)] if r.significant else "0.8",
                       hatch=None if r.significant else "//", edgecolor="0.4", lw=0.5)
                ax.plot(pos, r.random_score, "k.", ms=3)
                if r.significant:  # which way: a bar of height ~0 must still read
                    up = r.score > r.random_score
                    ax.text(pos, min(r.score + r["std"], 1.0) + 0.02, "▲" if up else "▼",
                            ha="center", va="bottom", fontsize=6,
                            color=palette[j % len(palette)])
        ax.set_xticks(x)
        ax.set_xticklabels(concepts, fontsize=8)
        ax.set_ylim(0, 1.12)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.set_ylabel(f"class {name}", fontsize=8)
        ax.grid(alpha=0.3, axis="y")
        if i == 0:
            from matplotlib.patches import Patch

            handles = [Patch(color=palette[j % len(palette)], label=lay)
                       for j, lay in enumerate(layers)]
            handles.append(Patch(facecolor="0.8", hatch="//", edgecolor="0.4",
                                 label="not significant"))
            fig.legend(handles=handles, fontsize=7, ncol=min(4, len(handles)),
                       loc="lower center")
            import textwrap

            wide = fig.get_figwidth()
            ax.set_title("\n".join(textwrap.wrap(title, int(wide * 11))) +
                         "\nTCAV score (dots: random CAVs; ▲ ▼: significantly above, below)",
                         fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path)


#: the outline of a concept's mask on a unit's top images
OUTLINE = (0, 229, 255)


def _outline(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """The inner band of `width` pixels of a bool mask (the image's edge counts as outside)."""
    inner = mask.copy()
    for _ in range(width):
        p = np.pad(inner, 1, constant_values=False)
        inner = inner & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask & ~inner


def unit_tiles(images: np.ndarray, regions: np.ndarray, masks: np.ndarray,
               tile: int = 72) -> np.ndarray:
    """Bau et al.'s figure of one unit: each of its top images ``(k, H, W, 3)`` uint8 at
    `tile` pixels, dimmed outside the unit's region ``(k, H, W)`` bool, with the concept's mask
    ``(k, H, W)`` outlined; returns ``(k, tile', tile'', 3)``."""
    from PIL import Image

    h, w = images.shape[1:3]
    s = tile / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    out = []
    for img, reg, m in zip(images, regions, masks):
        img = np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR), np.float32)
        reg = np.asarray(Image.fromarray(reg).resize(size, Image.NEAREST), bool)
        m = np.asarray(Image.fromarray(m).resize(size, Image.NEAREST), bool)
        img = np.where(reg[..., None], img, 0.3 * img)
        img[_outline(m)] = OUTLINE
        out.append(np.clip(img + 0.5, 0, 255).astype(np.uint8))
    return np.stack(out)


def unit_strip(images: np.ndarray, regions: np.ndarray, masks: np.ndarray, path: str,
               tile: int = 72) -> None:
    """`unit_tiles` in one row, best first, written to `path`."""
    from ...draw import save_png, tile_grid

    tiles = unit_tiles(images, regions, masks, tile)
    save_png(path, tile_grid(tiles, cols=len(tiles), pad=2, pad_value=255))
