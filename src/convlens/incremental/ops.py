"""The table of operations the incremental engine knows, and what a layer costs.

Pointwise layers (ReLU and friends, batch norm and dropout in eval mode, arithmetic with
constants) keep the changed region; conv and pool layers (`_spatial`) are computed on crops of
their input; binary arithmetic of two changed tensors takes the union of their regions. Any
other operation runs in full (`engine`).
"""
from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F
from torch import nn

_POINTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus,
    nn.Softsign, nn.Tanhshrink, nn.Identity, nn.LocalResponseNorm,
)
_DROPOUT = (nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_POINTWISE_FUNCTIONS = {
    F.relu, torch.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, F.elu, F.selu, F.mish,
    F.hardtanh, F.hardswish, F.hardsigmoid, F.softplus, torch.sigmoid, torch.tanh, F.sigmoid,
    F.tanh, torch.abs, torch.exp, torch.neg, operator.neg, torch.clamp, torch.clip,
}
_POINTWISE_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp",
                      "clamp_", "clip", "contiguous", "abs", "neg", "exp"}
_BINARY_FUNCTIONS = {operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd,
                     operator.isub, operator.imul, operator.itruediv, torch.add, torch.sub,
                     torch.mul, torch.div, torch.maximum, torch.minimum}
_BINARY_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
_INPLACE_FUNCTIONS = {operator.iadd, operator.isub, operator.imul, operator.itruediv}


def _axis(v, i: int) -> int:
    return int(v[i]) if isinstance(v, (tuple, list)) else int(v)


def _inplace(nd, modules) -> bool:
    if nd.op == "call_module":
        return bool(getattr(modules[nd.target], "inplace", False))
    if nd.op == "call_method":
        return nd.target.endswith("_") and not nd.target.endswith("__")
    if nd.op == "call_function":
        return nd.target in _INPLACE_FUNCTIONS or nd.kwargs.get("inplace") is True
    return False


def _pointwise_module(mod: nn.Module, clean_in) -> bool:
    """Layers that act on each position alone (in eval mode): the changed region stays."""
    if isinstance(mod, _POINTWISE_MODULES):
        return True
    if isinstance(mod, _DROPOUT):
        return not mod.training
    if isinstance(mod, nn.modules.batchnorm._BatchNorm):  # eval mode: a per-channel affine map
        return (not mod.training and mod.running_mean is not None
                and isinstance(clean_in, torch.Tensor) and clean_in.dim() == 4)
    return False


def _spatially_constant(v) -> bool:
    """A constant operand that broadcasts the same value to every position (a scalar or a
    per-channel vector), so that an elementwise op with it keeps the changed region."""
    if not isinstance(v, torch.Tensor):
        return isinstance(v, (int, float, bool)) or v is None
    return v.numel() == 1 or (v.dim() >= 2 and v.shape[-1] == 1 and v.shape[-2] == 1
                              and (v.dim() < 4 or v.shape[0] == 1))


def _spatial(mod: nn.Module):
    """((k, s, p, d) for y, the same for x, padding value, f(crop)) for conv/pool layers that
    the incremental engine computes on crops; None for anything else."""
    if type(mod) is nn.Conv2d:
        if mod.padding_mode != "zeros" or isinstance(mod.padding, str):
            return None
        k, s, p, d = mod.kernel_size, mod.stride, mod.padding, mod.dilation
        fn = lambda crop: F.conv2d(crop, mod.weight, mod.bias, s, 0, d, mod.groups)  # noqa: E731
        pad_value = 0.0
    elif type(mod) is nn.MaxPool2d:
        if mod.ceil_mode or mod.return_indices:
            return None
        k, p, d = mod.kernel_size, mod.padding, mod.dilation
        s = mod.stride if mod.stride is not None else k
        fn = lambda crop: F.max_pool2d(crop, k, s, 0, d)  # noqa: E731
        pad_value = -math.inf
    elif type(mod) is nn.AvgPool2d:
        padded = _axis(mod.padding, 0) + _axis(mod.padding, 1) > 0
        if mod.ceil_mode or (padded and not mod.count_include_pad):
            return None  # the divisor would depend on the position
        k, p = mod.kernel_size, mod.padding
        s = mod.stride if mod.stride is not None else k
        d = 1
        fn = lambda crop: F.avg_pool2d(  # noqa: E731
            crop, k, s, 0, ceil_mode=False, count_include_pad=True,
            divisor_override=mod.divisor_override)
        pad_value = 0.0
    else:
        return None
    return ((_axis(k, 0), _axis(s, 0), _axis(p, 0), _axis(d, 0)),
            (_axis(k, 1), _axis(s, 1), _axis(p, 1), _axis(d, 1)), pad_value, fn)


def _macs_per_output(mod: nn.Module) -> float:
    if isinstance(mod, nn.Conv2d):
        kh, kw = mod.kernel_size
        return float(mod.out_channels * (mod.in_channels // mod.groups) * kh * kw)
    if isinstance(mod, nn.Linear):
        return float(mod.in_features * mod.out_features)
    return 0.0


def _spatial_numel(t) -> int:
    return int(t.shape[-1] * t.shape[-2]) if isinstance(t, torch.Tensor) and t.dim() == 4 else 1
