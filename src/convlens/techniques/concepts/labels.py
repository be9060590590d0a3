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
front); `concept_masks` gives one batch's ``(N, C, H, W)`` masks, `concept_codes` the same as
one code per pixel (what the counting pass uses).
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


#: the name of every 8-bit colour (index ``(r * 256 + g) * 256 + b``), built on first need
#: (`_colour_table`): the nearest prototype, or `NEAR` where the second nearest lies within
#: `GAP` of it (CIELAB units)
_TABLE: torch.Tensor | None = None
NEAR = 255
GAP = 0.01
#: pixels named one by one before the table is built (building it takes about as long)
TABLE_AFTER = 4_000_000
_named = 0


def _nearest(rgb: torch.Tensor, mm: bool = True) -> torch.Tensor:
    """The definition: ``(P, 3)`` sRGB -> the nearest prototype in CIELAB (float64), as one
    `torch.cdist` of a whole batch computes it (`mm`: its matrix-product form, which
    ``cdist`` takes for more than 25 pixels)."""
    d = torch.cdist(rgb_to_lab(rgb), _PROTO_LAB,
                    compute_mode="use_mm_for_euclid_dist" if mm else "donot_use_mm_for_euclid_dist")
    return d.argmin(1)


def _colour_table() -> torch.Tensor:
    """The names of all 2^24 8-bit colours ``c / 255`` (16 MB, about 1.5 s once), in float64;
    `NEAR` where the nearest two prototypes lie within `GAP` (0.2 % of the colours)."""
    global _TABLE
    if _TABLE is None:
        v = torch.arange(256, dtype=torch.float64) / 255
        lin = torch.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
        m = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                          [0.2126729, 0.7151522, 0.0721750],
                          [0.0193339, 0.1191920, 0.9503041]], dtype=torch.float64)
        m = m / torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)[:, None]
        part = [m[:, k, None] * lin[None] for k in range(3)]  # (xyz, 256) of each channel
        gb = (part[1][:, :, None] + part[2][:, None, :]).reshape(3, -1)
        p2 = (_PROTO_LAB * _PROTO_LAB).sum(1)[:, None]
        table = torch.empty(256, 256 * 256, dtype=torch.uint8)
        for r in range(256):
            xyz = gb + part[0][:, r:r + 1]
            f = torch.where(xyz > (6 / 29) ** 3, xyz.clamp_min(1e-12) ** (1 / 3),
                            xyz / (3 * (6 / 29) ** 2) + 4 / 29)
            lab = torch.stack([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])
            s = torch.addmm(p2, _PROTO_LAB, lab, alpha=-2)  # squared distance - |lab|^2
            s1, k = s.min(0)
            s2 = s.scatter(0, k[None], float("inf")).min(0).values
            l2 = (lab * lab).sum(0)
            gap = (l2 + s2).clamp_min(0).sqrt() - (l2 + s1).clamp_min(0).sqrt()
            table[r] = torch.where(gap > GAP, k, NEAR).to(torch.uint8)
        _TABLE = table.reshape(-1)
    return _TABLE


def colour_names(pixels: torch.Tensor, table: bool | None = None) -> torch.Tensor:
    """``pixels (N, 3, H, W)`` sRGB in [0, 1] -> ``(N, H, W)`` index into `PROTOTYPES`: the
    nearest in CIELAB (`rgb_to_lab`, float64).

    A pixel within 1e-3 / 255 of an 8-bit colour (the images' pixels, normalised and back)
    takes that colour's name from a table of all 2^24 (`table`: use it; default: once
    `TABLE_AFTER` pixels were named), unless two prototypes lie within `GAP` of that colour;
    the others are computed. The same names: moving a pixel by 1e-3 / 255 per channel moves
    its CIELAB point by at most 2.3e-3 (the largest stretch of `rgb_to_lab` is 333 per unit of
    sRGB), so it keeps the nearest prototype of the 8-bit colour whose two nearest differ by
    more than twice that."""
    global _named
    if pixels.dim() != 4 or pixels.shape[1] != 3:
        raise ConvlensError(f"colour concepts need RGB pixels (N, 3, H, W), got "
                            f"{tuple(pixels.shape)}")
    n, _, h, w = pixels.shape
    mm = n * h * w > 25
    if not (table if table is not None else _TABLE is not None or _named >= TABLE_AFTER):
        _named += n * h * w
        return _nearest(pixels.permute(0, 2, 3, 1).reshape(-1, 3).cpu(), mm).reshape(n, h, w)
    x = pixels.detach().cpu()
    c = x.float().clamp(0, 1).mul_(255)
    q = c.round()
    far = ~(c.sub_(q).abs_().amax(1) <= 1e-3)  # not an 8-bit colour (or NaN)
    key = q[:, 0].mul(65536).add_(q[:, 1], alpha=256).add_(q[:, 2]).long()
    key.masked_fill_(far, 0)
    names = _colour_table().index_select(0, key.view(-1)).view(n, h, w)
    near = names == NEAR
    near |= far
    names = names.long()
    at = near.view(-1).nonzero().squeeze(1)
    if len(at):
        rgb = x.view(n, 3, h * w)[at // (h * w), :, at % (h * w)]
        names.view(-1)[at] = _nearest(rgb, mm)
    return names


@dataclass
class Vocabulary:
    """The concepts and their categories, fixed before counting."""

    names: list[str] = field(default_factory=list)
    categories: dict[str, str] = field(default_factory=dict)
    #: the data's own concepts (``"<category>:<name>"``, masks given per item)
    own: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, classes: Sequence[str], backgrounds: Sequence[str] = (),
              colours: bool = True, concepts: Sequence[str] = ()) -> "Vocabulary":
        """`concepts`: the data's own, ``"<category>:<name>"`` (a manifest's
        ``mask:<category>:<name>`` columns); one that is already in the list (``texture:grass``
        both a background and a column) is counted once, on the union of its masks."""
        for c in concepts:
            cat, _, name = str(c).partition(":")
            if not cat.strip() or not name.strip():
                raise ConvlensError(f"concept {c!r}: name a concept <category>:<name>, "
                                    "e.g. part:wheel")
        names = [f"object:{c}" for c in classes] + [f"texture:{b}" for b in backgrounds]
        if colours:
            names += [f"colour:{c}" for c in PROTOTYPES]
        names = list(dict.fromkeys([*names, *(str(c) for c in concepts)]))
        return cls(names, {n: n.split(":", 1)[0] for n in names},
                   list(dict.fromkeys(str(c) for c in concepts)))

    def index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}


def concept_masks(vocab: Vocabulary, labels: torch.Tensor, masks: torch.Tensor | None,
                  backgrounds: Sequence[str | None] | None, pixels: torch.Tensor | None,
                  classes: Sequence[str], own: Sequence[dict | None] | None = None,
                  size: Sequence[int] | None = None) -> torch.Tensor:
    """``(N, C, H, W)`` bool for one batch: ``object:<class of item>`` on its mask,
    ``texture:<its background>`` off it, ``colour:<name>`` where each pixel takes that name,
    and the data's own concepts on their masks. Concepts the batch cannot give (no masks, no
    backgrounds, grey pixels, an empty cell) stay all False.

    labels ``(N,)`` class indices (-1: none); masks ``(N, H, W)`` bool or None; backgrounds:
    one name (or None) per item; pixels ``(N, 3, H, W)`` in [0, 1] for the colours, or None;
    own: per item, ``{"<category>:<name>": (H, W) bool}`` (its concepts' masks, already at
    the batch's size), or None; size ``(H, W)`` where neither masks nor pixels say it.
    """
    codes, table = concept_codes(vocab, labels, masks, backgrounds, pixels, classes, own, size)
    return table[codes].permute(0, 3, 1, 2).contiguous()


def concept_codes(vocab: Vocabulary, labels: torch.Tensor, masks: torch.Tensor | None,
                  backgrounds: Sequence[str | None] | None, pixels: torch.Tensor | None,
                  classes: Sequence[str], own: Sequence[dict | None] | None = None,
                  size: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`concept_masks` as one code per pixel, without the ``(N, C, H, W)`` masks: ``codes
    (N, H, W)`` int64 into ``table (K, C)`` bool, pixel ``(n, y, x)`` lying in the masks
    ``table[codes[n, y, x]]``; the same arguments. A pixel's concepts follow from its item,
    whether it lies on the item's mask, its colour name and which of the item's own masks it
    lies on; the table has one row per distinct set."""
    idx = vocab.index()
    size = (masks.shape[1:] if masks is not None else
            pixels.shape[2:] if pixels is not None else size)
    if size is None:
        raise ConvlensError("no per-pixel labels: the items carry no masks and no pixels")
    size = tuple(int(v) for v in size)
    n, c = len(labels), len(vocab.names)
    named = pixels is not None and pixels.shape[1] == 3 and any(
        v.startswith("colour:") for v in vocab.names)
    nc = len(PROTOTYPES) if named else 1
    per = 2 * nc  # codes of an item: (on its mask, colour)
    local = colour_names(pixels) if named else torch.zeros(n, *size, dtype=torch.long)
    base = torch.zeros(n, 2, nc, c, dtype=torch.bool)  # item, on its mask, colour -> concepts
    if masks is not None:
        local.add_(masks.bool(), alpha=nc)
        found = [(i, 1, idx.get(f"object:{classes[lab]}"))
                 for i, lab in enumerate(int(v) for v in labels) if 0 <= lab < len(classes)]
        found += [(i, 0, idx.get(f"texture:{bg}"))
                  for i, bg in enumerate(backgrounds or ()) if bg is not None]
        found = [f for f in found if f[2] is not None]
        if found:
            i, on, k = (torch.tensor(v) for v in zip(*found))
            base[i, on, :, k] = True
    if named:
        for j, name in enumerate(PROTOTYPES):
            k = idx.get(f"colour:{name}")
            if k is not None:
                base[:, :, j, k] = True
    # the data's own concepts: an item's distinct combinations of its masks
    extra: dict[int, tuple[list[int], torch.Tensor, torch.Tensor]] = {}
    for i, given in enumerate(own or ()):
        ks, ms = [], []
        for name, m in (given or {}).items():
            k = idx.get(name)
            if k is None:
                continue
            m = torch.as_tensor(m).bool()
            if tuple(m.shape) != size:
                raise ConvlensError(f"the mask of concept {name!r} is {tuple(m.shape)}, the "
                                    f"batch's masks {size}: map it with "
                                    "convlens.data.images.preprocess_mask first")
            ks.append(k)
            ms.append(m.reshape(-1))
        if ks:
            combos, which = torch.unique(torch.stack(ms, 1), dim=0, return_inverse=True)
            extra[i] = (ks, combos, which)
    counts = torch.tensor([per * (len(extra[i][1]) if i in extra else 1) for i in range(n)],
                          dtype=torch.long)
    codes = local.add_((torch.cumsum(counts, 0) - counts)[:, None, None])
    if not extra:
        table = base.reshape(n * per, c)
    else:
        rows = []
        for i in range(n):
            if i not in extra:
                rows.append(base[i].reshape(per, c))
                continue
            ks, combos, which = extra[i]
            t = base[i][None].repeat(len(combos), 1, 1, 1)
            t[:, :, :, ks] |= combos[:, None, None, :]
            rows.append(t.reshape(-1, c))
            codes[i] += which.reshape(size) * per
        table = torch.cat(rows)
    table, first = _distinct(table)
    return first.index_select(0, codes.view(-1)).view(codes.shape), table


def _distinct(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct rows of a ``(K, C)`` bool table (sorted) and each row's index among them."""
    k, c = table.shape
    if c > 62:
        return torch.unique(table, dim=0, return_inverse=True)
    bits = torch.arange(c)
    keys, first = torch.unique((table.long() << bits).sum(1), return_inverse=True)
    return (keys[:, None] >> bits) & 1 == 1, first
