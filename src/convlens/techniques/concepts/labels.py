"""The concepts a dataset labels per pixel, for network dissection.

Three categories, as Broden's (Bau et al. 2017, §2.1) where this data can give them:

* ``object``: the item's object mask, named by its class (``object:circle``);
* ``texture``: the background around the object, named by the background the generator drew
  (``texture:grass``; the builtin data sets record it per item);
* ``colour``: every pixel named by the nearest of Broden's 11 colour terms (black, blue, brown,
  grey, green, orange, pink, purple, red, white, yellow). Broden labels colours with van de
  Weijer et al.'s learned colour names; here each pixel takes the nearest of 11 prototype
  colours in CIELAB (`PROTOTYPES`), a stated simplification.

`Vocabulary` fixes the concept list before the counting pass (a streaming pass needs it up
front); `concept_masks` gives one batch's ``(N, C, H, W)`` masks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from ...errors import ConvlensError

#: Broden's colour terms and the sRGB prototype each pixel is compared with (in CIELAB)
PROTOTYPES: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0), "blue": (30, 60, 220), "brown": (120, 70, 30),
    "grey": (128, 128, 128), "green": (40, 160, 40), "orange": (250, 140, 20),
    "pink": (250, 160, 200), "purple": (130, 40, 160), "red": (210, 20, 20),
    "white": (255, 255, 255), "yellow": (245, 230, 40)}


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """``(..., 3)`` sRGB in [0, 1] -> CIELAB (D65), float64."""
    c = rgb.double().clamp(0, 1)
    lin = torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                      [0.2126729, 0.7151522, 0.0721750],
                      [0.0193339, 0.1191920, 0.9503041]], dtype=torch.float64)
    xyz = lin @ m.T / torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)
    f = torch.where(xyz > (6 / 29) ** 3, xyz.clamp_min(1e-12) ** (1 / 3),
                    xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return torch.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                        200 * (f[..., 1] - f[..., 2])], -1)


_PROTO_LAB = rgb_to_lab(torch.tensor(list(PROTOTYPES.values()), dtype=torch.float64) / 255)


def colour_names(pixels: torch.Tensor) -> torch.Tensor:
    """``pixels (N, 3, H, W)`` sRGB in [0, 1] -> ``(N, H, W)`` index into `PROTOTYPES`."""
    if pixels.dim() != 4 or pixels.shape[1] != 3:
        raise ConvlensError(f"colour concepts need RGB pixels (N, 3, H, W), got "
                            f"{tuple(pixels.shape)}")
    lab = rgb_to_lab(pixels.permute(0, 2, 3, 1).cpu())
    d = torch.cdist(lab.reshape(-1, 3), _PROTO_LAB)
    return d.argmin(1).reshape(pixels.shape[0], *pixels.shape[2:])


@dataclass
class Vocabulary:
    """The concepts and their categories, fixed before counting."""

    names: list[str] = field(default_factory=list)
    categories: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, classes: Sequence[str], backgrounds: Sequence[str] = (),
              colours: bool = True) -> "Vocabulary":
        names = [f"object:{c}" for c in classes] + [f"texture:{b}" for b in backgrounds]
        if colours:
            names += [f"colour:{c}" for c in PROTOTYPES]
        return cls(names, {n: n.split(":", 1)[0] for n in names})

    def index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}


def concept_masks(vocab: Vocabulary, labels: torch.Tensor, masks: torch.Tensor | None,
                  backgrounds: Sequence[str | None] | None, pixels: torch.Tensor | None,
                  classes: Sequence[str]) -> torch.Tensor:
    """``(N, C, H, W)`` bool for one batch: ``object:<class of item>`` on its mask,
    ``texture:<its background>`` off it, ``colour:<name>`` where each pixel takes that name.
    Concepts the batch cannot give (no masks, no backgrounds, grey pixels) stay all False.

    labels ``(N,)`` class indices (-1: none); masks ``(N, H, W)`` bool or None; backgrounds:
    one name (or None) per item; pixels ``(N, 3, H, W)`` in [0, 1] for the colours, or None.
    """
    idx = vocab.index()
    size = (masks.shape[1:] if masks is not None else
            pixels.shape[2:] if pixels is not None else None)
    if size is None:
        raise ConvlensError("no per-pixel labels: the items carry no masks and no pixels")
    n = len(labels)
    out = torch.zeros(n, len(vocab.names), *size, dtype=torch.bool)
    for i in range(n):
        m = masks[i].bool() if masks is not None else None
        lab = int(labels[i])
        if m is not None and 0 <= lab < len(classes):
            k = idx.get(f"object:{classes[lab]}")
            if k is not None:
                out[i, k] = m
        bg = backgrounds[i] if backgrounds is not None else None
        if m is not None and bg is not None:
            k = idx.get(f"texture:{bg}")
            if k is not None:
                out[i, k] = ~m
    if pixels is not None and pixels.shape[1] == 3 and any(
            n.startswith("colour:") for n in vocab.names):
        names = colour_names(pixels)
        for j, c in enumerate(PROTOTYPES):
            k = idx.get(f"colour:{c}")
            if k is not None:
                out[:, k] = names == j
    return out
