"""The pictures of the gradient family: a map, its overlay and its signed signal per image
(`GradientMaps`), and the grid of maps as layers are randomised (`SanityCheck`). Arrays to
uint8 images through `convlens.draw`; no matplotlib state is touched."""
from __future__ import annotations

import numpy as np

from ...results import as_numpy

#: colour maps of the report: a non-negative map, and a signed one (white is zero)
MAP_CMAP, SIGNED_CMAP = "inferno", "RdBu_r"


def signed_sum(res, i: int) -> np.ndarray | None:
    """The signed signal of image `i` of a `GradientMaps` summed over colour channels,
    ``(H, W)``; None where the method has none (Grad-CAM)."""
    if res.attribution is None:
        return None
    return as_numpy(res.attribution[i]).astype(np.float64).sum(0)


def signed_rgb(a: np.ndarray) -> np.ndarray:
    """A signed ``(C, H, W)`` signal as an image in [0, 1]: 0.5 is zero, scaled by the largest
    magnitude (how Springenberg et al. and Zeiler & Fergus show their reconstructions)."""
    a = np.asarray(a, dtype=np.float64)
    m = np.abs(a).max()
    return np.full_like(a, 0.5) if m == 0 else 0.5 + 0.5 * a / m


def gradient_pictures(res) -> dict[str, np.ndarray]:
    """Per image (the first ``res.max_pictures``): the input, the map, the map over the input
    (each map scaled from 0 to its maximum) and the signed signal (white is zero)."""
    from ...draw import colormap, image_hwc, overlay

    pics = {}
    maps, imgs = as_numpy(res.map), as_numpy(res.images)
    for i in range(min(len(maps), res.max_pictures)):
        hi = float(maps[i].max())
        pics[f"input_{i}"] = image_hwc(imgs[i])
        pics[f"map_{i}"] = colormap(maps[i], MAP_CMAP, lo=0.0, hi=hi)
        pics[f"overlay_{i}"] = overlay(image_hwc(imgs[i]), maps[i], alpha=0.5,
                                       cmap=MAP_CMAP, lo=0.0, hi=hi)
        s = signed_sum(res, i)
        if s is not None:
            m = float(np.abs(s).max())
            pics[f"signed_{i}"] = colormap(s, SIGNED_CMAP, lo=-m, hi=m)
    return pics


def sanity_pictures(res) -> dict[str, np.ndarray]:
    """The first image's maps of a `SanityCheck`: a row per method, a column per stage."""
    from ...draw import colormap, tile_grid

    s, m, k = res.maps.shape[:3]
    tiles = [colormap(res.maps[j, i, 0], "inferno", lo=0.0)
             for i in range(m) for j in range(s)]
    return {"maps_image0": tile_grid(np.stack(tiles), cols=s, scale=2)}
