"""The pictures of the occlusion family: per image, the input, p(target) as a map and over the
input, the most probable class per position and a feature map's activation. Arrays to uint8
images through `convlens.draw`; no matplotlib state is touched."""
from __future__ import annotations

import numpy as np

from ...results import as_numpy

#: the colour map of p(target)
PROB_CMAP = "viridis"


def class_colours(res) -> np.ndarray:
    """One colour per class of an `OcclusionResult` (its labels, else the classes seen)."""
    from ... import draw
    n = len(res.labels) if res.labels else int(as_numpy(res.top_class).max()) + 1
    return draw.palette(max(n, 1))


def occlusion_pictures(res) -> dict[str, np.ndarray]:
    """``image_K``, ``prob_K``, ``overlay_K``, ``top_class_K`` (and ``activation_K``) for every
    image K of an `OcclusionResult`."""
    from ... import draw

    pics: dict[str, np.ndarray] = {}
    images = as_numpy(res.images)
    prob_image, top = as_numpy(res.prob_image), as_numpy(res.top_class_image)
    colours = class_colours(res)
    for k in range(images.shape[0]):
        img = draw.image_hwc(images[k])
        pics[f"image_{k}"] = img
        pics[f"prob_{k}"] = draw.colormap(prob_image[k], PROB_CMAP, 0.0, 1.0)
        pics[f"overlay_{k}"] = draw.overlay(img, prob_image[k], alpha=0.55, cmap=PROB_CMAP,
                                            lo=0.0, hi=1.0)
        pics[f"top_class_{k}"] = colours[top[k].astype(np.int64) % len(colours)]
        if res.activation_image is not None:
            a = as_numpy(res.activation_image)[k]
            pics[f"activation_{k}"] = draw.colormap(a, "inferno", float(a.min()), float(a.max()))
    return pics
