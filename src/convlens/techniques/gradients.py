"""The data gradient and its friends (METHODS.md §5; the seed's "data gradient").

Every method here is one backward pass from a *target* to the input pixels; they differ in the
rule applied at each ReLU on the way back (`convlens.hooks.relu_rule`) and in what is done with
the result:

============================  =====================================================  ==========
method                        backward signal at a ReLU ``f_l`` (``R`` from above)   paper
============================  =====================================================  ==========
`saliency`                    ``[f_l > 0] * R`` (the gradient)                       Simonyan 2014
`deconvnet`                   ``max(R, 0)``                                          Zeiler 2014
`guided_backprop`             ``[f_l > 0] * max(R, 0)``                              Springenberg 2015
`grad_cam`                    gradient, stopped at a conv layer and pooled           Selvaraju 2017
`guided_grad_cam`             guided backprop times the upsampled Grad-CAM           Selvaraju 2017
`smoothgrad`                  any of these, averaged over noisy copies of ``x``      Smilkov 2017
`integrated_gradients`        gradient along the path from a baseline to ``x``       Sundararajan 2017
============================  =====================================================  ==========

Targets (argument ``target``, one for all images or one per image):

* a class: its score *before* softmax, ``S_c(x)``; ``"auto"`` (or None) is the predicted class;
  an int is a class index, a str a label name;
* a unit: ``Unit(layer, channel)`` / ``(layer, channel)`` / ``"layer:channel"`` — one activation
  of a layer (output of that named module) projected back to pixels with every other activation
  of the layer set to zero, as Zeiler & Fergus did for their top-9 patches. That is the gradient
  of the single value ``A_l[channel, y, x]``; Zeiler feed the activation's value instead of 1,
  which only scales the map by that (positive) value. Without ``y, x`` the position of the
  largest activation of the channel is taken, per image (Zeiler's choice). A module called
  several times in one forward pass (a shared ReLU) is taken at its last call.

The model runs in eval mode (dropout off, batch norm with running statistics, so that images do
not influence each other); its training flags, ``requires_grad`` flags, parameters and their
``.grad`` are as before afterwards, also after an error. Maps are computed in the model's dtype
on its device and returned on the CPU.

Example::

    lens = convlens.load_model("builtin:shapes-net")
    res = guided_backprop(lens, x, target="auto")      # x: (N, 3, 64, 64), normalised
    res.map.shape, res.attribution.shape               # (N, 64, 64), (N, 3, 64, 64)
"""
from __future__ import annotations

import contextlib
import copy
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConvlensError, unknown
from ..hooks import capture, find_module, forward_hooks, model_of, preserved, relu_rule
from ..lens import as_batch
from ..results import Result, as_numpy


# -- targets -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Unit:
    """One unit of a layer: a channel, at position ``(y, x)`` or at its largest activation."""

    layer: str
    channel: int
    y: int | None = None
    x: int | None = None

    def __str__(self) -> str:
        pos = "" if self.y is None else f":{self.y}:{self.x}"
        return f"{self.layer}:{self.channel}{pos}"


TargetLike = Union[None, int, str, Unit, tuple, Sequence, torch.Tensor]
_UNIT_TEXT = re.compile(r"^(?P<layer>[^:]+):(?P<channel>-?\d+)(?::(?P<y>-?\d+):(?P<x>-?\d+))?$")


def parse_target(lens, target: TargetLike) -> int | Unit | None:
    """One target: None for "the predicted class", a class index, or a `Unit`.

    Accepts ``None``/``"auto"``, a class index, a label name, ``"LAYER:CHANNEL[:Y:X]"``,
    ``(layer, channel[, y, x])`` or a `Unit`.
    """
    if target is None or (isinstance(target, str) and target == "auto"):
        return None
    if isinstance(target, Unit):
        return target
    if isinstance(target, torch.Tensor) and target.dim() == 0:
        target = int(target)
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        return int(target)
    if isinstance(target, tuple) and target and isinstance(target[0], str):
        if len(target) not in (2, 4):
            raise ConvlensError(f"a unit target is (layer, channel) or (layer, channel, y, x), "
                                f"got {target!r}")
        return Unit(target[0], *(int(v) for v in target[1:]))
    if isinstance(target, str):
        labels = list(getattr(lens, "labels", None) or [])
        if target in labels:
            return labels.index(target)
        if target.lstrip("-").isdigit():
            return int(target)
        m = _UNIT_TEXT.match(target)
        if m:
            y, x = m.group("y"), m.group("x")
            return Unit(m.group("layer"), int(m.group("channel")),
                        None if y is None else int(y), None if x is None else int(x))
        raise unknown("target", target, labels + ["auto"],
                      hint="give auto, a class index or name, or LAYER:CHANNEL[:Y:X]")
    raise ConvlensError(f"cannot use {target!r} as a target: give auto, a class index or name, "
                        "or a unit (layer, channel[, y, x])")


def _targets(lens, target: TargetLike, n: int) -> list[int | Unit | None]:
    """One parsed target per image."""
    if isinstance(target, torch.Tensor) and target.dim() == 1:
        target = target.tolist()
    if isinstance(target, tuple) and not (target and isinstance(target[0], str)):
        target = list(target)
    if isinstance(target, (list, np.ndarray)):
        target = list(target)
        if len(target) != n:
            raise ConvlensError(f"{len(target)} targets for {n} images: give one target, "
                                "or one per image")
        return [parse_target(lens, t) for t in target]
    return [parse_target(lens, target)] * n


def _describe(lens, spec: int | Unit, pos: tuple[int, ...] | None) -> str:
    if isinstance(spec, Unit):
        where = "" if not pos else " at (" + ", ".join(map(str, pos)) + ")"
        return f"unit {spec.layer}:{spec.channel}{where}"
    name = lens.label(spec) if hasattr(lens, "label") else str(spec)
    return f"class {spec}" + (f" ({name})" if name != str(spec) else "")


# -- the one backward pass every method shares --------------------------------------------
@dataclass
class _Pass:
    """What one forward/backward pass gave (all detached)."""

    grad: torch.Tensor | None        # d target / d x, (N, C, H, W)
    logits: torch.Tensor             # (N, K)
    specs: list[int | Unit]          # resolved targets (auto -> predicted class)
    positions: list[tuple | None]    # unit positions used
    scores: torch.Tensor             # (N,) the target's value
    cam_act: torch.Tensor | None = None
    cam_grad: torch.Tensor | None = None


def _batch(lens, x: torch.Tensor) -> torch.Tensor:
    """``x`` as a fresh ``(N, C, H, W)`` leaf that requires grad, on the model's device/dtype."""
    return as_batch(lens, x).clone().requires_grad_(True)


def _check_classes(lens, specs) -> None:
    k = getattr(lens, "num_classes", None)
    for s in specs:
        if isinstance(s, int) and k is not None and not 0 <= s < k:
            raise ConvlensError(f"class {s} is out of range: the model has {k} classes "
                                f"(0..{k - 1})")


def _forward(lens, x: torch.Tensor, specs: list, cam_layer: str | None = None,
             rule: str | None = None, backward: bool = True) -> _Pass:
    """Run the model on `x`, pick each image's target value and (optionally) backpropagate it.

    The objective is ``sum_i s_i`` with ``s_i`` the class score ``S_{c_i}(x_i)`` or the unit's
    activation; in eval mode images do not interact, so its gradient holds each image's own
    ``d s_i / d x_i``.
    """
    model = model_of(lens)
    _check_classes(lens, specs)
    unit_layers = sorted({s.layer for s in specs if isinstance(s, Unit)})
    for name in unit_layers + ([cam_layer] if cam_layer else []):
        find_module(model, name)  # fail early, naming close matches
    picked: dict[str, tuple[torch.Tensor, list]] = {}

    def pick(name: str, module: nn.Module, out: torch.Tensor) -> None:
        # Index the unit now: a later in-place op (ReLU after a conv) cannot change it then,
        # and a module called twice keeps its last call, as `capture` does.
        rows = [i for i, s in enumerate(specs) if isinstance(s, Unit) and s.layer == name]
        if out.dim() < 2:
            raise ConvlensError(f"layer {name!r} gives a tensor of shape {tuple(out.shape)}: "
                                "no channels to pick a unit from")
        vals, pos = [], []
        for i in rows:
            u = specs[i]
            if not 0 <= u.channel < out.shape[1]:
                raise ConvlensError(f"channel {u.channel} is out of range: layer {name!r} has "
                                    f"{out.shape[1]} channels (0..{out.shape[1] - 1})")
            a = out[i, u.channel]
            if a.dim() == 0:
                if u.y is not None:
                    raise ConvlensError(f"layer {name!r} has no spatial positions: give "
                                        f"{name}:{u.channel} without y, x")
                vals.append(a)
                pos.append(None)
                continue
            if u.y is None:  # Zeiler: the strongest activation of the channel
                flat = int(a.detach().flatten().argmax())
                p = tuple(int(v) for v in np.unravel_index(flat, tuple(a.shape)))
            else:
                p = (u.y, u.x)
                if a.dim() != 2 or not (0 <= u.y < a.shape[0] and 0 <= u.x < a.shape[1]):
                    raise ConvlensError(f"position ({u.y}, {u.x}) is outside layer {name!r}'s "
                                        f"maps of size {tuple(a.shape)}")
            vals.append(a[p])
            pos.append(p)
        picked[name] = (torch.stack(vals), pos) if vals else (out.new_zeros(0), [])

    with preserved(model), contextlib.ExitStack() as stack:
        model.eval()
        cap = stack.enter_context(capture(model, cam_layer, grads=True)) if cam_layer else None
        stack.enter_context(forward_hooks(model, unit_layers, pick))
        with torch.enable_grad() if backward else torch.no_grad():
            with relu_rule(model, rule) if rule else contextlib.nullcontext():
                out = model(x)
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            raise ConvlensError("the model must return class scores (N, K); got "
                                + (f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor)
                                   else type(out).__name__))
        k = out.shape[1]
        resolved, positions, values = [], [None] * len(specs), []
        unit_rows = {name: [i for i, s in enumerate(specs)
                            if isinstance(s, Unit) and s.layer == name] for name in unit_layers}
        where = {}
        for name, rows in unit_rows.items():
            if name not in picked:
                raise ConvlensError(f"layer {name!r} was not called in the forward pass")
            for j, i in enumerate(rows):
                where[i] = (name, j)
                positions[i] = picked[name][1][j]
        for i, s in enumerate(specs):
            if isinstance(s, Unit):
                name, j = where[i]
                values.append(picked[name][0][j])
                resolved.append(s)
                continue
            c = int(out[i].detach().argmax()) if s is None else s
            if not 0 <= c < k:
                raise ConvlensError(f"class {c} is out of range: the model gives {k} scores")
            values.append(out[i, c])
            resolved.append(c)
        scores = torch.stack(values) if values else out.new_zeros(0)
        grad = None
        if backward:
            if not scores.requires_grad:
                raise ConvlensError("the target does not depend on the input: nothing to "
                                    "backpropagate")
            (grad,) = torch.autograd.grad(scores.sum(), x)
        cam_act = cam_grad = None
        if cap is not None:
            cam_act, cam_grad = cap[cam_layer], cap.grad(cam_layer)
    return _Pass(grad, out.detach(), resolved, positions, scores.detach(), cam_act, cam_grad)


def concrete_targets(lens, x: torch.Tensor, target: TargetLike = "auto") -> list[int | Unit]:
    """Each image's target made explicit on `x`: the predicted class for ``auto``, and the
    position of the largest activation for a unit given as (layer, channel).

    Methods that evaluate the model on other inputs than `x` (SmoothGrad's noisy copies,
    integrated gradients' path) fix their targets this way first, as the papers do.
    """
    xb = _batch(lens, x).detach()
    specs = _targets(lens, target, len(xb))
    with torch.no_grad():
        p = _forward(lens, xb, specs, backward=False)
    return [Unit(s.layer, s.channel, *pos) if isinstance(s, Unit) and pos else s
            for s, pos in zip(p.specs, p.positions)]


# -- results -------------------------------------------------------------------------------
@dataclass
class GradientMaps(Result):
    """Maps of one gradient method for N images.

    Attributes:
        method: ``"saliency"``, ``"guided_backprop"``, ...
        map: ``(N, H, W)`` non-negative map at input resolution (what overlays show).
        attribution: ``(N, C, H, W)`` signed signal at the input (the gradient, the guided or
            DeconvNet signal, the attribution), or None (Grad-CAM).
        images: ``(N, C, H, W)`` the inputs in [0, 1] for display.
        targets: what was explained, per image (``"class 3 (star)"``, ``"unit features.10:5 at
            (2, 4)"``).
        classes: ``(N,)`` the class explained (-1 for a unit target).
        predicted: ``(N,)`` the model's predicted class.
        scores: ``(N,)`` the target's value (class score before softmax, or activation).
        cam: ``(N, h, w)`` Grad-CAM at the layer's resolution (Grad-CAM methods only).
        params: the method's parameters.
    """

    method: str
    map: torch.Tensor
    attribution: torch.Tensor | None
    images: torch.Tensor
    targets: list[str]
    classes: torch.Tensor
    predicted: torch.Tensor
    scores: torch.Tensor
    cam: torch.Tensor | None = None
    params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    max_pictures: int = 16

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.method

    def arrays(self) -> dict[str, Any]:
        out = {"map": self.map, "images": self.images, "classes": self.classes,
               "predicted": self.predicted, "scores": self.scores}
        if self.attribution is not None:
            out["attribution"] = self.attribution
        if self.cam is not None:
            out["cam"] = self.cam
        return out

    def info(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params, "targets": self.targets,
                "notes": self.notes}

    def pictures(self) -> dict[str, np.ndarray]:
        from ..draw import colormap, image_hwc, overlay

        pics = {}
        maps, imgs = as_numpy(self.map), as_numpy(self.images)
        att = None if self.attribution is None else as_numpy(self.attribution)
        for i in range(min(len(maps), self.max_pictures)):
            pics[f"map_{i}"] = colormap(maps[i], "inferno", lo=0.0)
            pics[f"overlay_{i}"] = overlay(image_hwc(imgs[i]), maps[i], alpha=0.5, lo=0.0)
            if att is not None:
                pics[f"signed_{i}"] = image_hwc(signed_rgb(att[i]))
        return pics


def signed_rgb(a: np.ndarray) -> np.ndarray:
    """A signed ``(C, H, W)`` signal as an image in [0, 1]: 0.5 is zero, scaled by the largest
    magnitude (how Springenberg et al. and Zeiler & Fergus show their reconstructions)."""
    a = np.asarray(a, dtype=np.float64)
    m = np.abs(a).max()
    return np.full_like(a, 0.5) if m == 0 else 0.5 + 0.5 * a / m


def _display(lens, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().cpu().float()
    if hasattr(lens, "to_unit"):
        return lens.to_unit(x)
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def channel_max_abs(g: torch.Tensor) -> torch.Tensor:
    """Simonyan et al.'s reduction: ``M_ij = max_c |g_cij|``, ``(N, C, H, W) -> (N, H, W)``."""
    return g.abs().amax(dim=1)


def _result(method: str, lens, x: torch.Tensor, p: _Pass, map_: torch.Tensor,
            attribution: torch.Tensor | None, params: dict, cam: torch.Tensor | None = None,
            notes: Sequence[str] = ()) -> GradientMaps:
    return GradientMaps(
        method=method, map=map_.detach().cpu(),
        attribution=None if attribution is None else attribution.detach().cpu(),
        images=_display(lens, x),
        targets=[_describe(lens, s, pos) for s, pos in zip(p.specs, p.positions)],
        classes=torch.tensor([s if isinstance(s, int) else -1 for s in p.specs]),
        predicted=p.logits.argmax(1).cpu(), scores=p.scores.cpu(),
        cam=None if cam is None else cam.detach().cpu(), params=params, notes=list(notes))


# -- the methods ---------------------------------------------------------------------------
def saliency(lens, x: torch.Tensor, target: TargetLike = "auto") -> GradientMaps:
    """Image-specific class saliency (Simonyan, Vedaldi & Zisserman 2014, §3,
    https://arxiv.org/abs/1312.6034).

    ``w = dS_c/dx`` at the image, with ``S_c`` the class score before softmax (or a unit's
    activation); the map is ``M_ij = max_c |w_cij|`` over colour channels. The signed gradient
    ``w`` is kept as ``attribution``.

    Args:
        lens: a `Lens` (or a model returning ``(N, K)`` scores).
        x: ``(N, C, H, W)`` normalised images (or one ``(C, H, W)``).
        target: ``"auto"`` (predicted class), a class index or name, a unit, or one per image.

    Example::

        res = saliency(lens, x, target="star")
        res.map        # (N, H, W)
    """
    xb = _batch(lens, x)
    p = _forward(lens, xb, _targets(lens, target, len(xb)))
    return _result("saliency", lens, xb, p, channel_max_abs(p.grad), p.grad,
                   {"target": _tstr(target)})


def deconvnet(lens, x: torch.Tensor, target: TargetLike = "auto") -> GradientMaps:
    """DeconvNet projection (Zeiler & Fergus 2014, https://arxiv.org/abs/1311.2901).

    The target (a unit: all other activations of its layer set to zero; or a class score) is
    sent back to the pixels through transposed convolutions (the conv's gradient), max-pooling
    switches (max-pool's gradient) and, at every ReLU, ``R_l = max(R_{l+1}, 0)`` whatever the
    sign of the forward input. ``attribution`` is the reconstruction ``(N, C, H, W)``; ``map``
    is ``max_c |.|``.

    Example::

        res = deconvnet(lens, x, target=("features.11", 7))   # Zeiler's top-9 style
    """
    return _ruled("deconvnet", "deconv", lens, x, target)


def guided_backprop(lens, x: torch.Tensor, target: TargetLike = "auto") -> GradientMaps:
    """Guided backpropagation (Springenberg, Dosovitskiy, Brox & Riedmiller 2015, Fig. 1,
    https://arxiv.org/abs/1412.6806).

    The gradient, except at every ReLU ``R_l = [f_l > 0] * max(R_{l+1}, 0)``: only positive
    signal flows back, and only through units that were on. ``attribution`` is the signal at
    the input ``(N, C, H, W)``; ``map`` is ``max_c |.|``.

    Example::

        res = guided_backprop(lens, x)            # the predicted class of each image
    """
    return _ruled("guided_backprop", "guided", lens, x, target)


def _ruled(method: str, rule: str, lens, x, target) -> GradientMaps:
    xb = _batch(lens, x)
    p = _forward(lens, xb, _targets(lens, target, len(xb)), rule=rule)
    return _result(method, lens, xb, p, channel_max_abs(p.grad), p.grad,
                   {"target": _tstr(target)})


def _tstr(target) -> Any:
    if isinstance(target, torch.Tensor):
        return target.tolist()
    if isinstance(target, (list, tuple)):
        return [str(t) if isinstance(t, Unit) else t for t in target]
    return str(target) if isinstance(target, Unit) else target


_POINTWISE = (nn.ReLU, nn.BatchNorm2d, nn.GroupNorm, nn.Dropout, nn.Dropout2d, nn.Identity,
              nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.ReLU6, nn.Hardswish, nn.Mish, nn.PReLU,
              nn.Tanh, nn.Sigmoid, nn.SELU, nn.CELU)


def default_cam_layer(lens) -> str:
    """Grad-CAM's default layer: the last convolution in execution order, taken after the
    point-wise layers that follow it (batch norm, ReLU, ...), so it is the rectified output
    of the last conv block (VGG: ``features.29``; ResNet-18: ``layer4.1.relu``, the block's
    output; shapes-net: ``features.11``)."""
    model = model_of(lens)
    leaves = [n for n, m in model.named_modules() if n and not any(True for _ in m.children())]
    order: list[tuple[str, nn.Module, tuple]] = []
    x = lens.example_input() if hasattr(lens, "example_input") else None
    if x is None:
        raise ConvlensError("give layer=NAME: the model's input size is unknown")
    with preserved(model), torch.no_grad(), forward_hooks(
            model, leaves, lambda n, m, t: order.append((n, m, tuple(t.shape)))):
        model.eval()
        model(x)
    convs = [i for i, (_, m, s) in enumerate(order)
             if isinstance(m, nn.modules.conv._ConvNd) and len(s) == 4]
    if not convs:
        raise ConvlensError("the model has no 2-D convolution: give layer=NAME for Grad-CAM "
                            "(`convlens layers --model SPEC` lists the layers)")
    i = convs[-1]
    while (i + 1 < len(order) and isinstance(order[i + 1][1], _POINTWISE)
           and order[i + 1][2] == order[i][2]):
        i += 1
    return order[i][0]


def _cam(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    if act.dim() != 4:
        raise ConvlensError(f"Grad-CAM needs a layer with spatial maps (N, C, h, w); this one "
                            f"gives {tuple(act.shape)}")
    alpha = grad.mean(dim=(2, 3), keepdim=True)          # alpha_k^c = 1/Z sum_ij dS/dA^k_ij
    return F.relu((alpha * act).sum(dim=1))               # ReLU(sum_k alpha_k A^k)


def _upsample(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(cam.shape[-2:]) == tuple(size):
        return cam
    return F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def grad_cam(lens, x: torch.Tensor, target: TargetLike = "auto",
             layer: str | None = None) -> GradientMaps:
    """Grad-CAM (Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391), at any conv layer.

    ``alpha_k = 1/Z sum_ij dS_c/dA^k_ij`` (the gradient averaged over positions), then
    ``L = ReLU(sum_k alpha_k A^k)`` at the layer's resolution (``cam``, ``(N, h, w)``); ``map``
    is ``L`` upsampled bilinearly to the input size. ``A`` is the output of module `layer`
    (default: `default_cam_layer`, the rectified output of the last conv block).

    Example::

        res = grad_cam(lens, x, layer="features.11")
        res.cam.shape        # (N, 8, 8)
    """
    xb = _batch(lens, x)
    layer = layer or default_cam_layer(lens)
    p = _forward(lens, xb, _targets(lens, target, len(xb)), cam_layer=layer)
    cam = _cam(p.cam_act, p.cam_grad)
    return _result("grad_cam", lens, xb, p, _upsample(cam, xb.shape[-2:]), None,
                   {"target": _tstr(target), "layer": layer}, cam=cam)


def guided_grad_cam(lens, x: torch.Tensor, target: TargetLike = "auto",
                    layer: str | None = None) -> GradientMaps:
    """Guided Grad-CAM (Selvaraju et al. 2017, §3.1): guided backprop times Grad-CAM
    upsampled bilinearly to the input, ``G * up(L)``; ``map`` is ``max_c |.|``.

    Example::

        res = guided_grad_cam(lens, x)
    """
    xb = _batch(lens, x)
    layer = layer or default_cam_layer(lens)
    specs = concrete_targets(lens, xb, target)  # both passes explain the same targets
    cam_pass = _forward(lens, xb, specs, cam_layer=layer)
    cam = _cam(cam_pass.cam_act, cam_pass.cam_grad)
    p = _forward(lens, xb, specs, rule="guided")
    att = p.grad * _upsample(cam, xb.shape[-2:])[:, None].to(p.grad)
    return _result("guided_grad_cam", lens, xb, p, channel_max_abs(att), att,
                   {"target": _tstr(target), "layer": layer}, cam=cam)


METHODS: dict[str, Callable[..., GradientMaps]] = {}


def integrated_gradients(lens, x: torch.Tensor, target: TargetLike = "auto",
                         baseline: str | float | torch.Tensor = "mean", steps: int = 50,
                         method: str = "gausslegendre",
                         internal_batch_size: int = 64) -> GradientMaps:
    """Integrated gradients (Sundararajan, Taly & Yan 2017, https://arxiv.org/abs/1703.01365).

    ``IG_i(x) = (x_i - x'_i) * int_0^1 dS_c(x' + a (x - x'))/dx_i da``, the integral taken with
    `steps` points of `method`: ``"gausslegendre"`` (default, as Captum), ``"riemann_left"``,
    ``"riemann_right"``, ``"riemann_middle"`` or ``"riemann_trapezoid"``. At most
    `internal_batch_size` images go through the model at once, so memory stays bounded.
    Completeness (``sum_i IG_i = S_c(x) - S_c(x')``) is checked: ``params["delta"]`` holds
    ``sum IG - (S(x) - S(x'))`` per image. ``attribution`` is IG ``(N, C, H, W)``; ``map`` is
    ``|sum_c IG_c|``. The target (``auto``: the class predicted at ``x``) is fixed first.

    Args:
        baseline: ``"mean"`` (zeros after normalisation: the mean image, default),
            ``"black"``, ``"white"``, a number (raw pixel value, e.g. 0.5), or a tensor
            ``(C, H, W)`` / ``(N, C, H, W)`` in model-input units.

    Example::

        res = integrated_gradients(lens, x, baseline="black", steps=64)
        res.params["delta"]      # completeness error per image
    """
    if steps < 1:
        raise ConvlensError(f"steps must be at least 1, got {steps}")
    if internal_batch_size < 1:
        raise ConvlensError(f"internal_batch_size must be at least 1, got {internal_batch_size}")
    xb = _batch(lens, x).detach()
    base = _baseline(lens, xb, baseline)
    specs = concrete_targets(lens, xb, target)
    alphas, weights = path_points(steps, method)
    n = len(xb)
    total = torch.zeros_like(xb)
    # (image, step) pairs, image-major, in chunks of at most internal_batch_size
    pairs = [(i, k) for i in range(n) for k in range(steps)]
    for start in range(0, len(pairs), internal_batch_size):
        chunk = pairs[start:start + internal_batch_size]
        idx = torch.tensor([i for i, _ in chunk], device=xb.device)
        a = torch.tensor([alphas[k] for _, k in chunk], dtype=xb.dtype, device=xb.device)
        w = torch.tensor([weights[k] for _, k in chunk], dtype=xb.dtype, device=xb.device)
        a4 = a.view(-1, 1, 1, 1)
        pts = base[idx] + a4 * (xb[idx] - base[idx])
        p = _forward(lens, pts.requires_grad_(True), [specs[i] for i in idx.tolist()])
        total.index_add_(0, idx, p.grad * w.view(-1, 1, 1, 1))
    att = (xb - base) * total
    with torch.no_grad():
        end = _forward(lens, torch.cat([xb, base]), specs + specs, backward=False)
    s_x, s_b = end.scores[:n], end.scores[n:]
    delta = att.flatten(1).sum(1) - (s_x - s_b)
    p_x = _Pass(None, end.logits[:n], end.specs[:n], end.positions[:n], s_x)
    return _result("integrated_gradients", lens, xb, p_x, att.sum(1).abs(), att,
                   {"target": _tstr(target), "baseline": _tstr(baseline) if not isinstance(
                       baseline, torch.Tensor) else "tensor", "steps": steps, "method": method,
                    "internal_batch_size": internal_batch_size,
                    "delta": delta.cpu().tolist()})


def path_points(steps: int, method: str = "gausslegendre") -> tuple[list[float], list[float]]:
    """Points ``a_k`` in [0, 1] and weights ``w_k`` with ``int_0^1 f ~ sum_k w_k f(a_k)``."""
    n = steps
    if method == "gausslegendre":
        nodes, w = np.polynomial.legendre.leggauss(n)
        return list(0.5 * (nodes + 1)), list(0.5 * w)
    if method == "riemann_trapezoid":
        if n < 2:
            raise ConvlensError("riemann_trapezoid needs at least 2 steps")
        return (list(np.linspace(0, 1, n)),
                [1 / (2 * (n - 1))] + [1 / (n - 1)] * (n - 2) + [1 / (2 * (n - 1))])
    grids = {"riemann_left": np.linspace(0, 1 - 1 / n, n),
             "riemann_right": np.linspace(1 / n, 1, n),
             "riemann_middle": np.linspace(1 / (2 * n), 1 - 1 / (2 * n), n)}
    if method not in grids:
        raise unknown("integration method", method, ["gausslegendre", "riemann_trapezoid", *grids])
    return list(grids[method]), [1 / n] * n


def _baseline(lens, xb: torch.Tensor, baseline) -> torch.Tensor:
    if isinstance(baseline, torch.Tensor):
        b = baseline.detach().to(xb)
        if b.dim() == 3:
            b = b.unsqueeze(0)
        try:
            return b.expand_as(xb).clone()
        except RuntimeError:
            raise ConvlensError(f"baseline of shape {tuple(baseline.shape)} does not fit "
                                f"x of shape {tuple(xb.shape)}") from None
    if baseline == "mean":
        return torch.zeros_like(xb)
    if not hasattr(lens, "normalize"):
        raise ConvlensError(f"baseline {baseline!r} needs a Lens (its mean and std)")
    lo, hi = getattr(lens, "value_range", (0.0, 1.0))
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        raw = float(baseline)
    elif baseline in ("black", "white"):
        raw = lo if baseline == "black" else hi
    else:
        raise unknown("baseline", str(baseline), ["mean", "black", "white"],
                      hint="or a number (raw pixel value) or a tensor")
    return lens.normalize(torch.full_like(xb, raw))


def smoothgrad(lens, x: torch.Tensor, target: TargetLike = "auto",
               method: str | Callable = "saliency", samples: int = 50, noise_level: float = 0.15, sigma: float | None = None,
               batch_size: int = 64, seed: int = 0, **method_kwargs) -> GradientMaps:
    """SmoothGrad (Smilkov, Thorat, Kim, Viégas & Wattenberg 2017,
    https://arxiv.org/abs/1706.03825): average a method's maps over noisy copies of ``x``.

    ``M_hat(x) = 1/n sum_k M(x + N(0, sigma^2))`` with ``sigma = noise_level * (max(x) -
    min(x))`` per image (the paper's 10-20 %), or the given absolute `sigma` (model-input
    units). Both ``map`` and ``attribution`` are averages of the per-sample ones (so the
    saliency map is the mean of ``max_c |grad|``, the paper's choice). The target (``auto``:
    the class predicted on the clean image) is fixed first. Noise is drawn image by image,
    sample by sample from a generator seeded with `seed` (the same draw order as Captum's
    ``NoiseTunnel``).

    Args:
        method: ``"saliency"``, ``"guided_backprop"``, ``"deconvnet"``, ``"grad_cam"``,
            ``"guided_grad_cam"``, ``"integrated_gradients"`` or such a function.
        batch_size: noisy images per forward pass.
        method_kwargs: passed on (e.g. ``layer=`` for Grad-CAM, ``steps=`` for IG).

    Example::

        res = smoothgrad(lens, x, method="guided_backprop", samples=25)
    """
    fn = _method(method)
    if fn is smoothgrad:
        raise ConvlensError("smoothgrad cannot wrap itself: give another method")
    if samples < 1 or batch_size < 1:
        raise ConvlensError("samples and batch_size must be at least 1")
    xb = _batch(lens, x).detach()
    n = len(xb)
    specs = concrete_targets(lens, xb, target)
    if fn in (grad_cam, guided_grad_cam) and method_kwargs.get("layer") is None:
        method_kwargs["layer"] = default_cam_layer(lens)
    if sigma is None:
        rng = (xb.flatten(1).amax(1) - xb.flatten(1).amin(1))
        sig = noise_level * rng
    else:
        sig = torch.full((n,), float(sigma), dtype=xb.dtype, device=xb.device)
    gen = torch.Generator(device=xb.device).manual_seed(int(seed))
    pairs = [i for i in range(n) for _ in range(samples)]
    sums: dict[str, torch.Tensor] = {}
    seen: dict[str, warnings.WarningMessage] = {}
    last = None
    for start in range(0, len(pairs), batch_size):
        idx = torch.tensor(pairs[start:start + batch_size], device=xb.device)
        noise = torch.randn((len(idx), *xb.shape[1:]), generator=gen, device=xb.device,
                            dtype=xb.dtype)
        noisy = xb[idx] + noise * sig[idx].view(-1, 1, 1, 1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = fn(lens, noisy, target=[specs[i] for i in idx.tolist()], **method_kwargs)
        for key in ("map", "attribution", "cam"):
            v = getattr(r, key)
            if v is not None:
                acc = sums.setdefault(key, torch.zeros((n, *v.shape[1:]), dtype=v.dtype))
                acc.index_add_(0, idx.cpu(), v)
        last = r
        seen.update((str(c.message), c) for c in caught)
    for w in seen.values():  # the method's warnings, once each
        warnings.warn(w.message, w.category, stacklevel=2)
    mean = {k: v / samples for k, v in sums.items()}
    with torch.no_grad():
        clean = _forward(lens, xb, specs, backward=False)
    params = {"method": fn.__name__, "samples": samples, "noise_level": noise_level,
              "sigma": sig.cpu().tolist(), "seed": seed, "target": _tstr(target),
              **{k: v for k, v in last.params.items() if k != "target"}}
    return _result(f"smoothgrad_{fn.__name__}", lens, xb, clean, mean["map"],
                   mean.get("attribution"), params, cam=mean.get("cam"))


def _method(method: str | Callable) -> Callable[..., GradientMaps]:
    if callable(method):
        return method
    name = method.replace("-", "_")
    if name not in METHODS:
        raise unknown("method", method, list(METHODS))
    return METHODS[name]


METHODS.update(saliency=saliency, deconvnet=deconvnet, guided_backprop=guided_backprop,
               grad_cam=grad_cam, guided_grad_cam=guided_grad_cam,
               integrated_gradients=integrated_gradients, smoothgrad=smoothgrad)


# -- sanity checks (Adebayo et al. 2018) -----------------------------------------------------
def randomizable_layers(lens) -> list[str]:
    """Layers with a weight of 2 or more dims (conv, linear), from the output down, in reverse
    execution order: the order in which `cascading_randomization` re-initialises them."""
    model = model_of(lens)
    named = {n: m for n, m in model.named_modules()
             if n and isinstance(getattr(m, "weight", None), nn.Parameter) and m.weight.dim() >= 2}
    order: list[str] = []
    with preserved(model), torch.no_grad(), forward_hooks(
            model, list(named), lambda n, m, t: order.append(n) if n not in order else None):
        model.eval()
        model(lens.example_input())
    return list(reversed(order))


def _reinit(module: nn.Module, gen: torch.Generator) -> None:
    """He-normal weights (std sqrt(2 / fan_in)), zero biases, drawn from `gen`."""
    with torch.no_grad():
        w = module.weight
        std = math.sqrt(2.0 / max(1, w[0].numel()))
        w.copy_(torch.randn(w.shape, generator=gen, dtype=w.dtype) * std)
        if getattr(module, "bias", None) is not None:
            module.bias.zero_()


@dataclass
class SanityCheck(Result):
    """Similarity of each method's maps to the trained model's as layers are randomised.

    Attributes:
        methods: method names (columns of the curves).
        stages: ``"original"``, then the layer randomised at each step (cumulative, top down).
        spearman, ssim: ``(stages, methods, N)`` per image, vs the original maps.
        maps: ``(stages, methods, k, H, W)`` the maps of the first `k` images (for figures).
        images: ``(k, C, H, W)`` those images in [0, 1].
    """

    methods: list[str]
    stages: list[str]
    spearman: np.ndarray
    ssim: np.ndarray
    maps: np.ndarray
    images: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    kind: str = "sanity_check"

    def table(self):
        """One row per (stage, method): mean and standard deviation over images."""
        import pandas as pd

        rows = []
        for s, stage in enumerate(self.stages):
            for m, method in enumerate(self.methods):
                rows.append({"stage": s, "randomised_down_to": stage, "method": method,
                             "spearman_mean": float(self.spearman[s, m].mean()),
                             "spearman_std": float(self.spearman[s, m].std()),
                             "ssim_mean": float(self.ssim[s, m].mean()),
                             "ssim_std": float(self.ssim[s, m].std())})
        return pd.DataFrame(rows)

    def tables(self):
        return {"similarity": self.table()}

    def arrays(self):
        return {"spearman": self.spearman, "ssim": self.ssim, "maps": self.maps,
                "images": self.images}

    def info(self):
        return {"methods": self.methods, "stages": self.stages, "params": self.params}

    def pictures(self):
        from ..draw import colormap, tile_grid

        s, m, k = self.maps.shape[:3]
        tiles = [colormap(self.maps[j, i, 0], "inferno", lo=0.0)
                 for i in range(m) for j in range(s)]
        return {"maps_image0": tile_grid(np.stack(tiles), cols=s, scale=2)}


def _unit_range(m: np.ndarray) -> np.ndarray:
    hi = m.max()
    return m / hi if hi > 0 else np.zeros_like(m)


def map_similarity(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Spearman rank correlation and SSIM of two ``(H, W)`` maps (each scaled to [0, 1] by its
    maximum for SSIM, ``data_range=1``). A constant map has no rank order: correlation 0."""
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        rho = 0.0
    else:
        rho = float(spearmanr(a.ravel(), b.ravel()).statistic)
    win = min(7, min(a.shape) - (1 - min(a.shape) % 2))
    ssim = float(structural_similarity(_unit_range(a), _unit_range(b), data_range=1.0,
                                       win_size=win))
    return rho, ssim


def cascading_randomization(lens, x: torch.Tensor, target: TargetLike = "auto",
                            methods: Sequence[str] = ("saliency", "guided_backprop", "deconvnet",
                                                      "grad_cam", "guided_grad_cam",
                                                      "integrated_gradients", "smoothgrad"),
                            layers: Sequence[str] | None = None, seed: int = 0, keep: int = 4,
                            method_kwargs: dict[str, dict] | None = None) -> SanityCheck:
    """Model-parameter randomisation test (Adebayo et al. 2018, "Sanity Checks for Saliency
    Maps", https://arxiv.org/abs/1810.03292), cascading from the top layer down.

    On a *copy* of the model (the lens given is never changed), the layers are re-initialised
    one after another from the output down (He-normal weights from a generator seeded with
    `seed`, zero biases); after each, every method's maps are compared with those of the
    trained model by Spearman rank correlation and SSIM, per image. A method that explains
    the model should change as its weights are destroyed; Adebayo et al. found guided
    backprop (and guided Grad-CAM) barely does. The target of each image is fixed on the
    trained model first (``auto``: its predicted class).

    Args:
        methods: names from `METHODS` (``"smoothgrad"`` wraps saliency unless
            ``method_kwargs["smoothgrad"]["method"]`` says otherwise).
        layers: layer names to randomise, top first; default `randomizable_layers`.
        keep: keep the maps of this many images in the result (for figures).
        method_kwargs: per method, extra arguments (e.g. ``{"smoothgrad": {"samples": 16}}``).

    Example::

        sc = cascading_randomization(lens, x[:16])
        sc.table()       # stage, method, Spearman and SSIM (mean, std)
    """
    method_kwargs = {k: dict(v) for k, v in (method_kwargs or {}).items()}
    fns = [_method(m) for m in methods]
    xb = _batch(lens, x).detach()
    specs = concrete_targets(lens, xb, target)
    layers = list(layers) if layers is not None else randomizable_layers(lens)
    cam_layer = None
    for m, fn in zip(methods, fns):
        if fn in (grad_cam, guided_grad_cam) or method_kwargs.get(m, {}).get("method") in (
                "grad_cam", "guided_grad_cam"):
            cam_layer = cam_layer or default_cam_layer(lens)
            method_kwargs.setdefault(m, {}).setdefault("layer", cam_layer)
    work = copy.deepcopy(lens)  # the lens passed in is never modified
    gen = torch.Generator().manual_seed(int(seed))

    def all_maps() -> np.ndarray:
        out = []
        for m, fn in zip(methods, fns):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a random net may have no active ReLU at all
                out.append(as_numpy(fn(work, xb, target=specs, **method_kwargs.get(m, {})).map))
        return np.stack(out)  # (methods, N, H, W)

    stages, maps = ["original"], [all_maps()]
    for name in layers:
        _reinit(find_module(model_of(work), name), gen)
        stages.append(name)
        maps.append(all_maps())
    maps_a = np.stack(maps)  # (S, M, N, H, W)
    s_n, m_n, n = maps_a.shape[:3]
    rho = np.zeros((s_n, m_n, n))
    ssim = np.zeros((s_n, m_n, n))
    for s in range(s_n):
        for m in range(m_n):
            for i in range(n):
                rho[s, m, i], ssim[s, m, i] = map_similarity(maps_a[0, m, i], maps_a[s, m, i])
    return SanityCheck(list(methods), stages, rho, ssim, maps_a[:, :, :keep],
                       as_numpy(_display(lens, xb[:keep])),
                       {"seed": seed, "n_images": n, "targets": [str(s) for s in specs],
                        "method_kwargs": {k: {a: str(b) for a, b in v.items()}
                                          for k, v in method_kwargs.items()}})


# -- localisation ----------------------------------------------------------------------------
def pointing_game(maps: torch.Tensor, masks: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """Pointing game (Zhang et al. 2016, "Top-down neural attention by excitation backprop"):
    a hit when the map's maximum lies on the object mask (grown by `tolerance` pixels).

    ``maps (N, H, W)``, ``masks (N, H, W)`` bool -> ``(N,)`` bool. Ties: the first maximum in
    row-major order; an all-zero map is a miss.
    """
    maps = torch.as_tensor(maps).float()
    masks = torch.as_tensor(masks).bool()
    if tolerance > 0:
        k = 2 * tolerance + 1
        masks = F.max_pool2d(masks[:, None].float(), k, 1, tolerance)[:, 0] > 0
    flat = maps.flatten(1)
    best = flat.argmax(1)
    hit = masks.flatten(1).gather(1, best[:, None])[:, 0]
    return hit & (flat.amax(1) > 0)


def energy_in_mask(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of a non-negative map's total inside the mask (the "energy-based pointing game",
    Wang et al. 2020, Score-CAM): ``sum(M * mask) / sum(M)``; 0 for an all-zero map."""
    maps = torch.as_tensor(maps).float().clamp_min(0)
    masks = torch.as_tensor(masks).bool()
    total = maps.flatten(1).sum(1)
    inside = (maps * masks).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-30), torch.zeros_like(total))
