"""Receptive field of every named layer, from the conv/pool arithmetic of one dry run.

For each tensor of the forward pass we track, per spatial axis (y, x):

- ``size``: how many input pixels one output position sees (theoretical field, not clipped
  at the border),
- ``stride`` (the "jump"): how many input pixels apart two neighbouring output positions are,
- ``center``: the input pixel coordinate of the centre of output position 0 (pixel centres
  at 0, 1, ...; it can be negative where padding makes the field hang over the border).

A convolution or pooling with kernel ``k``, stride ``s``, padding ``p`` and dilation ``d``
maps ``(size, jump, center)`` to (Dumoulin & Visin 2016; Araujo et al., Distill 2019)::

    k_eff  = d * (k - 1) + 1
    size'  = size + (k_eff - 1) * jump
    jump'  = jump * s
    center' = center + ((k_eff - 1) / 2 - p) * jump

The tracking runs under a `TorchFunctionMode`, so it sees functional calls (`F.conv2d`,
`F.max_pool2d`, `F.pad`, ...) as well as modules, Sequential chains and residual nets alike.
Where several tensors meet (``a + b``, ``torch.cat`` on channels) the field is the **union**
of their fields: the smallest window that holds every path's field, which for the nested
fields of a ResNet block is the largest field over the paths. Pointwise operations (ReLU,
batch norm, dropout, ...) keep the field. Anything that mixes all positions (``flatten``,
``linear``, a global pooling) gives a *global* field: every output sees the whole image, and
there is no local field; so does any vector of a map, whether that map's field is known or
not. Where such a tensor meets a local one (``x * gate``: the gate of a squeeze-excitation
block, computed from a global pooling, multiplies the map), the result keeps the local field of
the spatial path and is marked ``global_context``: it also depends on the whole image.
Normalisations that take statistics over positions (group, instance and layer norm over the
spatial axes, batch norm with batch statistics) mark it likewise. An operation we cannot reason
about that changes the spatial size (interpolation, transposed convolution, ...) gives an
unknown field (``None``) from there on, never a wrong one; `Lens.layers` then asks
`convlens.receptive.gradient`.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..grids import grid_layout
from ..hooks import forward_hooks
from .field import IDENTITY, Field, _pair, through_window, union

# Positional argument order of the functional ops we read parameters from.
_SIGNATURES = {
    "conv2d": ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
    "max_pool2d": ("input", "kernel_size", "stride", "padding", "dilation"),
    "max_pool2d_with_indices": ("input", "kernel_size", "stride", "padding", "dilation"),
    "avg_pool2d": ("input", "kernel_size", "stride", "padding"),
    "lp_pool2d": ("input", "norm_type", "kernel_size", "stride"),
    "adaptive_avg_pool2d": ("input", "output_size"),
    "adaptive_max_pool2d": ("input", "output_size"),
    "pad": ("input", "pad", "mode", "value"),
}
# Normalisations whose statistics may be taken over the image (a global context).
_STATISTICS = ("group_norm", "instance_norm", "layer_norm", "batch_norm")
_GLOBAL_OPS = {"linear", "flatten", "matmul", "mm", "bmm", "addmm", "view", "reshape",
               "mean", "sum", "amax", "max", "einsum"}


def _bind(name: str, args, kwargs) -> dict[str, Any]:
    out = dict(zip(_SIGNATURES[name], args))
    out.update(kwargs)
    return out


class _FieldMode(TorchFunctionMode):
    """Annotates every tensor of a forward pass with its receptive field."""

    def __init__(self, image: torch.Tensor):
        super().__init__()
        self.image_hw = tuple(image.shape[-2:])
        self.fields: dict[int, Field | None] = {id(image): IDENTITY()}
        self._alive: list[torch.Tensor] = [image]  # keep ids unique during the run

    def global_field(self) -> Field:
        return Field(self.image_hw, None, None, is_global=True)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outs = out if isinstance(out, (tuple, list)) else [out]
        outs = [o for o in outs if isinstance(o, torch.Tensor)]
        if not outs:
            return out
        inputs = [t for t in _tensors(args, kwargs) if id(t) in self.fields]
        if not inputs:
            return out  # constants, parameters: not part of the image's path
        field = self._rule(getattr(func, "__name__", ""), args, kwargs, inputs, outs[0])
        for o in outs:
            self.fields[id(o)] = field
            self._alive.append(o)
        return out

    def _rule(self, name, args, kwargs, inputs, out) -> Field | None:
        if out.dim() < 3:  # no spatial axes left: a vector of the whole map, known or not
            return self.global_field()
        in_fields = [self.fields[id(t)] for t in inputs]
        if any(f is None for f in in_fields):
            return None
        f = in_fields[0] if len(in_fields) == 1 else union(in_fields)
        if f is None:
            return None
        name = name.rstrip("_") if name.endswith("_") and not name.endswith("__") else name
        x = inputs[0]
        try:
            if name == "conv2d":
                a = _bind(name, args, kwargs)
                pad = a.get("padding", 0)
                k = tuple(a["weight"].shape[-2:])
                dil = _pair(a.get("dilation", 1))
                if isinstance(pad, str):  # "same" / "valid"
                    pad = (0, 0) if pad == "valid" else tuple(
                        (dil[i] * (k[i] - 1)) // 2 for i in range(2))
                return through_window(f, k, a.get("stride", 1), pad, dil)
            if name in ("max_pool2d", "max_pool2d_with_indices", "avg_pool2d", "lp_pool2d"):
                a = _bind(name, args, kwargs)
                k = a["kernel_size"]
                s = a.get("stride") or k
                return through_window(f, k, s, a.get("padding", 0), a.get("dilation", 1))
            if name in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
                hin, win = x.shape[-2:]
                hout, wout = out.shape[-2:]
                if (hout, wout) == (1, 1):
                    return self.global_field() if (hin, win) != (1, 1) else f
                if hin % hout or win % wout:
                    return None  # uneven adaptive windows: no single field per position
                s = (hin // hout, win // wout)
                return through_window(f, s, s, 0)
            if name == "pad":
                a = _bind(name, args, kwargs)
                p = list(a["pad"]) + [0] * 4
                if f.is_global:
                    return f
                left, top = p[0], p[2]
                return replace(f, center=(f.center[0] - top * f.stride[0],
                                          f.center[1] - left * f.stride[1]))
            if name in _STATISTICS and not f.is_global and _mixes_space(name, args, kwargs, x):
                return replace(f, global_context=True)
        except (KeyError, TypeError, IndexError):
            return None
        grid = tuple(out.shape[-2:])
        same = any(t.dim() >= 3 and tuple(t.shape[-2:]) == grid for t in inputs)
        if name in _GLOBAL_OPS and not same:
            return self.global_field()
        if same:
            return f  # pointwise, a channel-wise op, or a gate broadcast: same grid, same field
        if f.is_global:
            return f
        return None  # changes the grid in a way we do not know


def _mixes_space(name: str, args, kwargs, x: torch.Tensor) -> bool:
    """Whether a normalisation of `x` (whose last two axes are the spatial ones: it has a field)
    takes its statistics over more than one position: group and instance norm always, layer
    norm always (its normalised axes are the last ones), batch norm with batch statistics (in
    training, or without running statistics)."""
    if x.dim() < 3 or x.shape[-1] * x.shape[-2] == 1:
        return False
    if name != "batch_norm":
        return True
    a = dict(zip(("input", "running_mean", "running_var", "weight", "bias", "training"), args))
    a.update(kwargs)
    return bool(a.get("training")) or a.get("running_mean") is None


def _tensors(args, kwargs):
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, torch.Tensor):
            yield a
        elif isinstance(a, (tuple, list)):
            yield from (t for t in a if isinstance(t, torch.Tensor))


def dry_run(model: nn.Module, x: torch.Tensor, names: list[str]
            ) -> dict[str, tuple[tuple[int, ...], Field | None, bool, tuple[int, ...] | None]]:
    """Run `model` on `x` once; per named module that ran: (output shape without batch, field,
    whether the output is per image: its first dimension is the batch's, and its shape as a
    map on the image grid ``(C, h, w)``: `grid_layout`, None where it is none). Give `x` two or
    more images so that a table computed once for all images (a relative-position bias, say)
    is not taken for a map of one image.

    A module called several times keeps its last call (as `capture` does). Token-shaped
    outputs (a transformer's) get no field from the arithmetic, which reads the last two axes
    as the spatial ones.
    """
    result: dict[str, tuple] = {}
    mode = _FieldMode(x)
    image_hw = tuple(x.shape[-2:])

    def record(name, module, out):
        f = mode.fields.get(id(out))
        per_image = out.dim() > 0 and out.shape[0] == x.shape[0]
        shape = tuple(out.shape[1:]) if per_image else tuple(out.shape)
        layout = grid_layout(shape, image_hw) if per_image else None
        grid = None
        if layout is not None:
            grid = (shape[-1] if layout[0] != "map" else shape[0], *layout[2])
            if layout[0] != "map":
                f = None
        result[name] = (shape, f, per_image, grid)

    with forward_hooks(model, names, record), mode, torch.no_grad():
        model(x)
    return result
