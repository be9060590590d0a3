"""What the surrogate pass (`surrogate.SurrogateMode`) notes on the tensors it makes, as
attributes: ``_cl_img`` derived from the input; ``_cl_ctx`` depends on the whole image through a
global reduction; ``_cl_dead`` reaches the input only through detached global reductions (its
local support is empty); ``_cl_alias`` holds, cell for cell of the image's grid, the same
supports as another value (a per-position operation of it); ``_cl_attn`` global attention's
weights."""
from __future__ import annotations

import torch


def tensors(obj):
    """Every tensor in `obj` (a tensor, or tuples, lists and dicts of them)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from tensors(o)


def is_image(t) -> bool:
    """Whether `t` is a tensor derived from the surrogate pass's input."""
    return isinstance(t, torch.Tensor) and getattr(t, "_cl_img", False)


def key_of(t: torch.Tensor) -> tuple[int, int]:
    """Which value a tensor holds, for telling layers apart: the tensor it is an unchanged
    copy of (through identity rules), else itself, with its version (in-place ops change it)."""
    same = getattr(t, "_cl_alias", None)
    if same is not None and t._version == same[1]:
        return same[0]
    return (id(t), t._version)


def alias(out: torch.Tensor, of: torch.Tensor) -> torch.Tensor:
    """Mark `out` as holding, cell for cell of the image's grid, the supports `of` holds."""
    out._cl_alias = (key_of(of), out._version)
    return out


def dead(t: torch.Tensor) -> torch.Tensor:
    """Mark `t` as reaching the input only through a detached global reduction."""
    t._cl_dead = True
    return t
