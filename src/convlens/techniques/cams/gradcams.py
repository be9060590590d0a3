"""The gradient CAMs after Grad-CAM: Grad-CAM++, XGrad-CAM, HiResCAM and Layer-CAM.

Each is one target pass, as Grad-CAM's (`convlens.techniques.gradients.cam`): the activations
``A`` of a conv layer and their gradients ``G = dS/dA`` from the target ``S`` (a class score
before softmax, or a unit), combined by its paper's formula at the layer's resolution
(``cam``, ``(N, h, w)``); ``map`` is that upsampled bilinearly to the input. Same targets,
default layer (`default_cam_layer`), batches and model-left-alone guarantees as Grad-CAM.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ...errors import ConvlensError
from ...lens import as_lens
from ..gradients.cam import default_cam_layer
from ..gradients.gradients import TargetPass, grad_input, maps_result, target_pass
from ..gradients.targets import TargetLike, image_targets, target_param
from .results import CamMaps

_SPACE = (2, 3)


def spatial(act: torch.Tensor, method: str) -> torch.Tensor:
    """`act` checked to be maps ``(N, C, h, w)``."""
    if act.dim() != 4:
        raise ConvlensError(f"{method} needs a layer with spatial maps (N, C, h, w); this one "
                            f"gives {tuple(act.shape)}")
    return act


def upsample(cam: torch.Tensor, size) -> torch.Tensor:
    """``(N, h, w)`` -> ``(N, H, W)``, bilinear (as Grad-CAM's `map`)."""
    if tuple(cam.shape[-2:]) == tuple(size):
        return cam
    return F.interpolate(cam[:, None], size=tuple(size), mode="bilinear",
                         align_corners=False)[:, 0]


def cam_result(kind: str, lens, xb: torch.Tensor, p: TargetPass, cam: torch.Tensor,
               params: dict, notes=()) -> CamMaps:
    """The `CamMaps` of method `kind`: ``cam`` at the layer and ``map`` at the input size."""
    return CamMaps.of(maps_result(kind, lens, xb, p, upsample(cam, xb.shape[-2:]), None,
                                  params, cam=cam, notes=notes))


def _gradient_cam(kind: str, combine: Callable, lens, x, target, layer) -> CamMaps:
    lens = as_lens(lens, x)
    xb = grad_input(lens, x)
    layer = layer or default_cam_layer(lens)
    p = target_pass(lens, xb, image_targets(lens, target, len(xb)), cam_layer=layer)
    act = spatial(p.cam_act, kind)
    cam = combine(act, p.cam_grad.to(act))
    return cam_result(kind, lens, xb, p, cam, {"target": target_param(target), "layer": layer})


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den``, 0 where ``den`` is 0."""
    ok = den != 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def plus_plus_cam(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ at one layer: ``alpha_ij = G_ij^2 / (2 G_ij^2 + sum_ab A_ab G_ij^3)`` (0 where
    that is 0/0), ``w_k = sum_ij alpha_ij ReLU(G_ij)``, ``ReLU(sum_k w_k A^k)``."""
    g2 = grad * grad
    den = 2 * g2 + act.sum(_SPACE, keepdim=True) * g2 * grad
    alpha = _safe_div(g2, den)
    w = (alpha * F.relu(grad)).sum(_SPACE, keepdim=True)
    return F.relu((w * act).sum(1))


def xgrad_weights_cam(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """XGrad-CAM at one layer: ``w_k = sum_ij (A_ij / sum_ab A_ab) G_ij``, ``ReLU(sum w_k A^k)``
    (a channel whose activations sum to 0 gets weight 0)."""
    w = _safe_div((act * grad).sum(_SPACE, keepdim=True), act.sum(_SPACE, keepdim=True))
    return F.relu((w * act).sum(1))


def hires_weights_cam(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """HiResCAM at one layer: ``ReLU(sum_k G^k * A^k)``, element-wise, no averaging."""
    return F.relu((grad * act).sum(1))


def layer_weights_cam(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Layer-CAM at one layer: ``ReLU(sum_k ReLU(G^k) * A^k)``."""
    return F.relu((F.relu(grad) * act).sum(1))


def grad_cam_plus_plus(lens, x: torch.Tensor, target: TargetLike = "auto",
                       layer: str | None = None) -> CamMaps:
    """Grad-CAM++ (Chattopadhay et al. 2018, eq. 19, https://arxiv.org/abs/1710.11063).

    With ``G = dS_c/dA``: ``alpha^k_ij = G_ij^2 / (2 G_ij^2 + sum_ab A^k_ab G_ij^3)``,
    ``w_k = sum_ij alpha^k_ij ReLU(G^k_ij)``, ``L = ReLU(sum_k w_k A^k)``. The paper derives
    alpha from ``Y = exp(S_c)``, whose derivatives are ``exp(S_c)`` times powers of ``G``; the
    factor ``exp(S_c)`` left on the weights scales each image's map by a positive constant
    and is dropped (as both peers do), so large scores do not overflow. ``x: (N, C, H, W)``.

    Example::

        res = grad_cam_plus_plus(lens, x, target="star")
        res.cam.shape        # (N, h, w) at the layer; res.map: (N, H, W)
    """
    return _gradient_cam("grad_cam_plus_plus", plus_plus_cam, lens, x, target, layer)


def xgrad_cam(lens, x: torch.Tensor, target: TargetLike = "auto",
              layer: str | None = None) -> CamMaps:
    """XGrad-CAM (Fu et al. 2020, eq. 16, https://arxiv.org/abs/2008.02312).

    ``w_k = sum_ij (A^k_ij / sum_ab A^k_ab) dS_c/dA^k_ij``, ``L = ReLU(sum_k w_k A^k)``: the
    gradient averaged with the activations as weights. ``x: (N, C, H, W)``.

    Example::

        res = xgrad_cam(lens, x)
    """
    return _gradient_cam("xgrad_cam", xgrad_weights_cam, lens, x, target, layer)


def hires_cam(lens, x: torch.Tensor, target: TargetLike = "auto",
              layer: str | None = None) -> CamMaps:
    """HiResCAM (Draelos & Carin 2020, https://arxiv.org/abs/2011.08891).

    ``L = sum_k dS_c/dA^k * A^k`` element-wise (no averaging of the gradient), shown, as
    Grad-CAM and pytorch-grad-cam show it, through a ReLU. ``x: (N, C, H, W)``.

    Example::

        res = hires_cam(lens, x, layer="layer4")
    """
    return _gradient_cam("hires_cam", hires_weights_cam, lens, x, target, layer)


def layer_cam(lens, x: torch.Tensor, target: TargetLike = "auto",
              layer: str | None = None) -> CamMaps:
    """Layer-CAM (Jiang et al. 2021, eq. 5-6, https://ieeexplore.ieee.org/document/9462463).

    ``L = ReLU(sum_k ReLU(dS_c/dA^k) * A^k)``: each position weighted by its own positive
    gradient. ``x: (N, C, H, W)``.

    Example::

        res = layer_cam(lens, x, layer="features.3")   # an early layer works too
    """
    return _gradient_cam("layer_cam", layer_weights_cam, lens, x, target, layer)
