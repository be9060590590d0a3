"""The surrogate network whose input gradients give exact receptive fields (`gradient`).

The field of an output cell is the set of input pixels its value depends on: the support of
its input gradient. On the real network that gradient can vanish by accident (a ReLU that is
off, the one element a max pooling picked, a weight that is zero, a saturated sigmoid), so the
support is taken on a surrogate in which no path can be cut:

- `surrogate_copy`: a deep copy of the model (the user's model is never touched) in eval mode,
  in float64, whose parameters are positive where they multiply (weights ``1 / fan_in``, other
  vectors 1) and zero where they are biases, with batch norm's running mean 0 and variance 1;
- `SurrogateMode`, a `TorchFunctionMode`, runs each operation on the image's path as the same
  architecture with such weights would, in a form whose derivative is positive wherever the
  real operation's can be non-zero:

  ====================================  ===================================================
  the model calls                       the surrogate computes
  ====================================  ===================================================
  ``conv2d``, ``linear`` (fixed weight)  the same op with every weight ``1 / fan_in``: a mean
                                        over each group's input channels, a box filter of
                                        the kernel's size, stride, padding and dilation,
                                        copied to every output channel (the same numbers,
                                        without the channel products)
  max pooling, ``max``/``amax``/...     the average over the same window / axes
  ReLU, GELU, SiLU, sigmoid, tanh,      the identity (an elementwise function depends on its
  hard-* and clamps                     input wherever it is not constant; the identity cannot
                                        saturate)
  layer norm                            the input plus its mean over the normalised axes
  batch, group and instance norm        the input (statistics over the image or the batch
                                        are a global context)
  softmax                               equal weights over the entries not masked out (at
                                        least 50 below the largest), with a positive
                                        derivative to every unmasked logit
  attention (``scaled_dot_product_``,   the same, with the values averaged under those
  ``multi_head_attention_forward``)     weights
  ====================================  ===================================================

  Everything else (padding, interpolation, permutes, reshapes, roll, adds, products, ...) runs
  as it is: with positive inputs and weights no sum can cancel.

**Local and global.** A global reduction (an adaptive pooling to 1x1, a mean or max over the
spatial axes, normalisation statistics over the image, attention over every token of the
image's grid) gives its output *detached*: no gradient flows back through it, so the support
is the *local* field of the spatial path, and every tensor downstream of such an operation is
marked ``_cl_ctx`` (it also depends on the whole image). Which axes are spatial comes from the
grid layout of the tensor (`convlens.grids.grid_layout`) when its first axis is the batch's.

The rules apply only to tensors derived from the input (marked ``_cl_img``, `marks`); index
arithmetic, masks and position tables run as they are; attention's rules are in `attention`.
Each batch element is independent (no rule mixes the batch axis), so one pass can hold one
question per element.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..grids import grid_layout
from .attention import mha, sdpa, softmax
from .marks import alias, dead, is_image, key_of, tensors

DTYPE = torch.float64  # path weights of deep nets (DenseNet) fall below float32's range

_IDENTITY = {"relu", "relu6", "hardtanh", "gelu", "silu", "sigmoid", "tanh", "hardswish",
             "hardsigmoid", "mish", "elu", "selu", "celu", "leaky_relu", "softplus",
             "logsigmoid", "threshold", "clamp", "clip", "clamp_min", "clamp_max", "rrelu",
             "softsign", "tanhshrink", "hardshrink", "softshrink", "prelu", "local_response_norm"}
_REDUCE = {"mean", "sum", "amax", "amin", "max", "min", "std", "var", "norm", "logsumexp",
           "nansum", "nanmean", "prod", "std_mean", "var_mean"}
_BINARY_EXTREMA = {"maximum", "minimum", "fmax", "fmin"}
_MATMUL = {"matmul", "bmm", "einsum", "baddbmm", "mm", "__matmul__"}
# elementwise: with every live image operand the same value and shape, the output's cells have
# the same supports (the other operands are constants, parameters or detached gates)
_SAME_CELLS = {"add", "sub", "mul", "div", "true_divide", "__add__", "__radd__", "__iadd__",
               "__sub__", "__rsub__", "__isub__", "__mul__", "__rmul__", "__imul__",
               "__truediv__", "__rtruediv__", "__itruediv__", "neg", "__neg__", "abs",
               "contiguous", "clone", "to", "float", "double", "type_as", "dropout",
               "feature_alpha_dropout", "alpha_dropout", "dropout2d", "dropout1d"}


def surrogate_copy(model: nn.Module) -> nn.Module:
    """A deep copy of `model` (the model itself is not touched) in eval mode and `DTYPE`, its
    parameters replaced as the module docstring says, none requiring grad."""
    memo: dict[int, Any] = {}
    for name, p in model.named_parameters():
        if not p.is_floating_point():
            continue
        if p.dim() >= 2:
            value = 1.0 / max(1, p[0].numel())
        else:
            value = 0.0 if name.rsplit(".", 1)[-1].startswith("bias") else 1.0
        memo[id(p)] = nn.Parameter(torch.full(p.shape, value, dtype=DTYPE, device=p.device),
                                   requires_grad=False)
    for m in model.modules():
        for buf, value in (("running_mean", 0.0), ("running_var", 1.0)):
            b = getattr(m, buf, None)
            if isinstance(b, torch.Tensor) and b.is_floating_point():
                memo[id(b)] = torch.full(b.shape, value, dtype=DTYPE, device=b.device)
    twin = copy.deepcopy(model, memo)
    twin.eval()
    for t in list(twin.parameters()) + list(twin.buffers()):
        if t.is_floating_point() and t.dtype != DTYPE:
            t.data = t.data.to(DTYPE)
    return twin


class SurrogateMode(TorchFunctionMode):
    """Runs a forward pass of a `surrogate_copy` as the module docstring says, for a batch of
    `batch` images of size `image_hw`; ``largest``: the bytes of the largest tensor it made."""

    def __init__(self, batch: int, image_hw: tuple[int, int], keep: list | None = None):
        super().__init__()
        self.batch = batch
        self.image_hw = tuple(image_hw)
        self.largest = 0
        self.keep = keep  # a list: keep every tensor alive, so that the ids in keys stay unique

    # -- bookkeeping ----------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        ins = [t for t in tensors((args, kwargs)) if is_image(t)]
        if not ins:
            return func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        base = name[:-1] if name.endswith("_") and not name.endswith("__") else name
        live = [t for t in ins if not getattr(t, "_cl_dead", False)]
        keys = {key_of(t) for t in live}
        same = len(keys) == 1 and all(t.shape == live[0].shape for t in live)
        rule = _RULES.get(base)
        whole = False
        out = None
        if rule is not None and live:
            got = rule(self, func, args, kwargs, ins)
            if got is not None:
                out, whole = got
        attn = any(getattr(t, "_cl_attn", False) for t in ins)
        if out is None:
            out = func(*args, **kwargs)
            if attn and base in _MATMUL:  # values mixed by global attention
                out, whole, attn = dead(out.detach()), True, False
            elif base == "detach":
                out = dead(out)
            elif same and base in _SAME_CELLS and isinstance(out, torch.Tensor) \
                    and out.shape == live[0].shape:
                out._cl_alias = (keys.pop(), out._version)  # x + constant, x * gate, ...
        ctx = whole or any(getattr(t, "_cl_ctx", False) for t in ins)
        targets = list(tensors(out))
        written = None
        if name.endswith("_") or name in ("__setitem__", "copy_"):
            written = next((a for a in args[:1] if isinstance(a, torch.Tensor)), None)
            targets += [written] if written is not None else []
        for o in targets:
            if not o.is_floating_point() and not o.is_complex():
                continue
            o._cl_img = True
            o._cl_ctx = ctx or getattr(o, "_cl_ctx", False)
            # dead: no live input reached it (a tensor written in place takes what was written)
            o._cl_dead = not live or (o is not written and getattr(o, "_cl_dead", False))
            if attn:  # global attention weights reshaped, copied, dropped out: still them
                o._cl_attn = True
            self.largest = max(self.largest, o.numel() * o.element_size())
            if self.keep is not None:
                self.keep.append(o)
        return out

    # -- which axes are the image's ----------------------------------------------------------
    def spatial_dims(self, t: torch.Tensor) -> tuple[int, ...]:
        """The axes of `t` that run over the image's grid (with more than one position), by
        its grid layout; none where its first axis is not the batch or it is no map."""
        if t.dim() < 3 or t.shape[0] != self.batch:
            return ()
        lay = grid_layout(tuple(t.shape[1:]), self.image_hw)
        if lay is None:
            return ()
        if lay[0] == "map":
            dims = (t.dim() - 2, t.dim() - 1) if t.dim() == 4 else ()
        elif lay[0] == "channels_last":
            dims = (1, 2)
        else:
            dims = (1,)
        return tuple(d for d in dims if t.shape[d] > 1)

    def tokens(self, n: int) -> bool:
        """Whether `n` tokens are the whole grid of the image (with up to 8 class tokens)."""
        lay = grid_layout((n, 1), self.image_hw)
        return lay is not None and lay[0] == "tokens"


def _per_position(mode, x: torch.Tensor, dims: tuple[int, ...]) -> bool:
    """Whether an operation that mixes `x` along `dims` only keeps each cell of the image's
    grid apart (the dims are channels of a map whose spatial axes are known)."""
    spatial = mode.spatial_dims(x)
    return bool(spatial) and not set(dims) & set(spatial)


def _identity(mode, func, args, kwargs, ins):
    x = args[0] if args else kwargs.get("input")
    if not isinstance(x, torch.Tensor):
        return None
    if getattr(func, "__name__", "").endswith("_") or kwargs.get("inplace", False):
        return x, False
    return alias(x.clone(), x), False


def _dims(arg, ndim: int) -> tuple[int, ...]:
    if arg is None or arg == () or arg == []:
        return tuple(range(ndim))
    if isinstance(arg, int):
        arg = (arg,)
    return tuple(sorted(int(d) % ndim for d in arg))


def _reduce(mode, func, args, kwargs, ins):
    x = args[0] if args else kwargs.get("input")
    if not is_image(x):
        return None
    second = args[1] if len(args) > 1 else kwargs.get("other")
    name = getattr(func, "__name__", "")
    if isinstance(second, torch.Tensor):  # max(a, b): elementwise
        return _binary_extremum(mode, func, (x, second), {}, ins)
    if name in ("std_mean", "var_mean"):
        return None
    out = func(*args, **kwargs)  # shapes and indices as the model expects them
    at = 2 if name == "norm" else 1  # norm(input, p, dim, ...)
    positional = len(args) > at and not isinstance(args[at], (bool, str))
    dim = args[at] if positional else kwargs.get("dim")
    dims = _dims(dim, x.dim())
    first = out[0] if isinstance(out, tuple) else out
    if not first.is_floating_point():
        return None
    mean = x.mean(dims, keepdim=True).reshape(first.shape)
    whole = bool(set(dims) & set(mode.spatial_dims(x)))
    if whole:
        mean = dead(mean.detach())
    if isinstance(out, tuple):
        return type(out)((mean, *out[1:])), whole
    return mean, whole


def _binary_extremum(mode, func, args, kwargs, ins):
    a, b = args[0], args[1]
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return None
    return (a + b) / 2, False


def _max_pool(mode, func, args, kwargs, ins):
    a = dict(zip(("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode"), args))
    a.update(kwargs)
    x, k = a["input"], a["kernel_size"]
    dil = a.get("dilation", 1)
    if dil not in (1, (1, 1), [1, 1]):
        return None
    nd = {"max_pool1d": 1, "max_pool2d": 2, "max_pool3d": 3,
          "max_pool1d_with_indices": 1, "max_pool2d_with_indices": 2,
          "max_pool3d_with_indices": 3}[getattr(func, "__name__", "")]
    pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[nd - 1]
    out = pool(x, k, a.get("stride") or k, a.get("padding", 0), bool(a.get("ceil_mode", False)),
               False)  # count_include_pad=False: the padding is no element of the window
    if a.get("return_indices") or getattr(func, "__name__", "").endswith("with_indices"):
        real = func(*args, **kwargs)
        return (out, real[1]), False
    return out, False


def _adaptive(mode, func, args, kwargs, ins):
    x = args[0] if args else kwargs["input"]
    size = args[1] if len(args) > 1 else kwargs["output_size"]
    out = F.adaptive_avg_pool2d(x, size)
    whole = out.shape[-2:].numel() == 1 and bool(mode.spatial_dims(x))
    if whole:
        out = dead(out.detach())
    if getattr(func, "__name__", "").endswith("with_indices") or kwargs.get("return_indices"):
        out = (out, func(*args, **kwargs)[1])
    return out, whole


def _conv2d(mode, func, args, kwargs, ins):
    a = dict(zip(("input", "weight", "bias", "stride", "padding", "dilation", "groups"), args))
    a.update(kwargs)
    x, w = a["input"], a["weight"]
    if is_image(w) or x.dim() != 4:
        return None  # a weight computed from the image: its path counts too
    g = int(a.get("groups", 1))
    n, c, h, wd = x.shape
    o, kh, kw = w.shape[0], w.shape[-2], w.shape[-1]
    xs = x.reshape(n, g, c // g, h, wd).sum(2)
    box = torch.full((g, 1, kh, kw), 1.0 / (kh * kw * (c // g)), dtype=x.dtype, device=x.device)
    y = F.conv2d(xs, box, None, a.get("stride", 1), a.get("padding", 0), a.get("dilation", 1), g)
    out = y.unsqueeze(2).expand(n, g, o // g, *y.shape[-2:]).reshape(n, o, *y.shape[-2:])
    if out.shape[-2:] == x.shape[-2:] and (kh, kw) == (1, 1) and a.get("stride", 1) in (
            1, (1, 1)) and a.get("padding", 0) in (0, (0, 0), "valid", "same"):
        alias(out, x)  # a 1x1 conv mixes channels only
    return out, False


def _linear(mode, func, args, kwargs, ins):
    x = args[0] if args else kwargs["input"]
    w = args[1] if len(args) > 1 else kwargs["weight"]
    if is_image(w) or not is_image(x):
        return None
    out = x.mean(-1, keepdim=True).expand(*x.shape[:-1], w.shape[0]).contiguous()
    if _per_position(mode, x, (x.dim() - 1,)):
        alias(out, x)  # on the channels of tokens or of a channels-last map
    return out, False


def _layer_norm(mode, func, args, kwargs, ins):
    x = args[0] if args else kwargs["input"]
    shape = args[1] if len(args) > 1 else kwargs["normalized_shape"]
    k = 1 if isinstance(shape, int) else len(shape)
    dims = tuple(range(x.dim() - k, x.dim()))
    if set(dims) & set(mode.spatial_dims(x)):
        return alias(x.clone(), x), True
    out = x + x.mean(dims, keepdim=True)
    if _per_position(mode, x, dims):
        alias(out, x)
    return out, False


def _norm_stats(mode, func, args, kwargs, ins):
    """Group and instance norm: statistics over the image (a global context) when the map has
    more than one position; the value itself is the input's."""
    x = args[0] if args else kwargs["input"]
    return alias(x.clone(), x), bool(mode.spatial_dims(x))


def _batch_norm(mode, func, args, kwargs, ins):
    a = dict(zip(("input", "running_mean", "running_var", "weight", "bias", "training"), args))
    a.update(kwargs)
    x = a["input"]
    batch_stats = bool(a.get("training")) or a.get("running_mean") is None
    return alias(x.clone(), x), batch_stats and bool(mode.spatial_dims(x))


def _permute(mode, func, args, kwargs, ins):
    """A permute that moves a map between layouts (NCHW <-> NHWC) keeps every cell's support."""
    x = args[0]
    out = func(*args, **kwargs)
    if not isinstance(out, torch.Tensor) or x.dim() != out.dim():
        return out, False
    if getattr(func, "__name__", "") in ("transpose", "swapaxes", "swapdims"):
        d0, d1 = (int(d) % x.dim() for d in (args[1:3] if len(args) >= 3 else
                                               (kwargs.get("dim0"), kwargs.get("dim1"))))
        perm = list(range(x.dim()))
        perm[d0], perm[d1] = d1, d0
    else:
        dims = args[1:] if len(args) > 2 or not isinstance(args[1], (tuple, list)) else args[1]
        perm = [int(d) % x.dim() for d in (dims or kwargs.get("dims"))]
    src, dst = mode.spatial_dims(x), mode.spatial_dims(out)
    if perm[0] == 0 and src and len(src) == len(dst) and [perm[d] for d in dst] == list(src):
        alias(out, x)
    return out, False


_RULES: dict[str, Callable] = {
    **{n: _identity for n in _IDENTITY},
    **{n: _reduce for n in _REDUCE},
    **{n: _binary_extremum for n in _BINARY_EXTREMA},
    **{n: _max_pool for n in ("max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices",
                              "max_pool2d_with_indices", "max_pool3d_with_indices")},
    "adaptive_avg_pool2d": _adaptive, "adaptive_max_pool2d": _adaptive,
    "adaptive_max_pool2d_with_indices": _adaptive,
    "conv2d": _conv2d, "linear": _linear, "layer_norm": _layer_norm,
    "group_norm": _norm_stats, "instance_norm": _norm_stats, "batch_norm": _batch_norm,
    "softmax": softmax, "log_softmax": softmax,
    "scaled_dot_product_attention": sdpa, "multi_head_attention_forward": mha,
    "permute": _permute, "transpose": _permute, "swapaxes": _permute, "swapdims": _permute,
}
