"""The data gradient and its friends (METHODS.md §5; the seed's "data gradient").

Every method of this family (this module, `cam`, `smoothing`) is one backward pass from a
*target* to the input pixels; they differ in the rule applied at each ReLU on the way back
(`convlens.hooks.relu_rule`) and in what is done with the result:

==========================  =====================================================  ==========
method                      backward signal at a ReLU ``f_l`` (``R`` from above)   paper
==========================  =====================================================  ==========
`saliency`                  ``[f_l > 0] * R`` (the gradient)                       Simonyan 2014
`deconvnet`                 ``max(R, 0)``                                          Zeiler 2014
`guided_backprop`           ``[f_l > 0] * max(R, 0)``                              Springenberg 2015
`grad_cam`                  gradient, stopped at a conv layer and pooled           Selvaraju 2017
`guided_grad_cam`           guided backprop times the upsampled Grad-CAM           Selvaraju 2017
`smoothgrad`                any of these, averaged over noisy copies of ``x``      Smilkov 2017
`integrated_gradients`      gradient along the path from a baseline to ``x``       Sundararajan 2017
==========================  =====================================================  ==========

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
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ...errors import ConvlensError
from ...hooks import capture, find_module, forward_hooks, model_of, preserved, relu_rule
from ...lens import as_batch, as_lens
from .results import GradientMaps
from .targets import TargetLike, Unit, describe_target, image_targets, target_param


# -- the one backward pass every method shares --------------------------------------------
@dataclass
class TargetPass:
    """What one forward/backward pass gave (all detached)."""

    grad: torch.Tensor | None        # d target / d x, (N, C, H, W)
    logits: torch.Tensor             # (N, K)
    specs: list[int | Unit]          # resolved targets (auto -> predicted class)
    positions: list[tuple | None]    # unit positions used
    scores: torch.Tensor             # (N,) the target's value
    cam_act: torch.Tensor | None = None
    cam_grad: torch.Tensor | None = None


def grad_input(lens, x: torch.Tensor) -> torch.Tensor:
    """``x`` as a fresh ``(N, C, H, W)`` leaf that requires grad, on the model's device/dtype."""
    return as_batch(lens, x).clone().requires_grad_(True)


def _check_classes(lens, specs) -> None:
    k = getattr(lens, "num_classes", None)
    for s in specs:
        if isinstance(s, int) and k is not None and not 0 <= s < k:
            raise ConvlensError(f"class {s} is out of range: the model has {k} classes "
                                f"(0..{k - 1})")


def target_pass(lens, x: torch.Tensor, specs: list, cam_layer: str | None = None,
             rule: str | None = None, backward: bool = True) -> TargetPass:
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
        stack.enter_context(forward_hooks(model, unit_layers, pick, grid=True))
        with torch.enable_grad() if backward else torch.no_grad():
            with relu_rule(model, rule) if rule else contextlib.nullcontext():
                out = lens(x)  # hooks sit on the model; the lens picks its class scores
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
    return TargetPass(grad, out.detach(), resolved, positions, scores.detach(), cam_act, cam_grad)


def concrete_targets(lens, x: torch.Tensor, target: TargetLike = "auto") -> list[int | Unit]:
    """Each image's target made explicit on `x`: the predicted class for ``auto``, and the
    position of the largest activation for a unit given as (layer, channel).

    Methods that evaluate the model on other inputs than `x` (SmoothGrad's noisy copies,
    integrated gradients' path) fix their targets this way first, as the papers do.
    """
    lens = as_lens(lens, x)
    xb = grad_input(lens, x).detach()
    specs = image_targets(lens, target, len(xb))
    with torch.no_grad():
        p = target_pass(lens, xb, specs, backward=False)
    return [Unit(s.layer, s.channel, *pos) if isinstance(s, Unit) and pos else s
            for s, pos in zip(p.specs, p.positions)]


# -- building the result --------------------------------------------------------------
def display_images(lens, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().cpu().float()
    if hasattr(lens, "to_unit"):
        return lens.to_unit(x)
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def channel_max_abs(g: torch.Tensor) -> torch.Tensor:
    """Simonyan et al.'s reduction: ``M_ij = max_c |g_cij|``, ``(N, C, H, W) -> (N, H, W)``."""
    return g.abs().amax(dim=1)


def maps_result(kind: str, lens, x: torch.Tensor, p: TargetPass, map_: torch.Tensor,
                attribution: torch.Tensor | None, params: dict, cam: torch.Tensor | None = None,
                notes: Sequence[str] = ()) -> GradientMaps:
    """The `GradientMaps` of method `kind` from its target pass and maps (on the CPU)."""
    return GradientMaps(
        kind=kind, map=_full(map_),
        attribution=None if attribution is None else _full(attribution),
        images=display_images(lens, x),
        targets=[describe_target(lens, s, pos) for s, pos in zip(p.specs, p.positions)],
        classes=torch.tensor([s if isinstance(s, int) else -1 for s in p.specs]),
        predicted=p.logits.argmax(1).cpu(), scores=p.scores.cpu(),
        cam=None if cam is None else _full(cam), params=params, notes=list(notes),
        labels=list(getattr(lens, "labels", None) or []) or None,
        confidence=p.logits.float().softmax(1).amax(1).cpu())


def _full(t: torch.Tensor) -> torch.Tensor:
    """Detached, on the CPU; half-precision results (a bf16 model) as float32, others as
    they are (a float64 model's maps stay float64)."""
    t = t.detach().cpu()
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


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
    lens = as_lens(lens, x)
    xb = grad_input(lens, x)
    p = target_pass(lens, xb, image_targets(lens, target, len(xb)))
    return maps_result("saliency", lens, xb, p, channel_max_abs(p.grad), p.grad,
                   {"target": target_param(target)})


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
    lens = as_lens(lens, x)
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
    lens = as_lens(lens, x)
    return _ruled("guided_backprop", "guided", lens, x, target)


def _ruled(method: str, rule: str, lens, x, target) -> GradientMaps:
    xb = grad_input(lens, x)
    p = target_pass(lens, xb, image_targets(lens, target, len(xb)), rule=rule)
    return maps_result(method, lens, xb, p, channel_max_abs(p.grad), p.grad,
                   {"target": target_param(target)})
