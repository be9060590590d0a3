"""Grad-CAM and guided Grad-CAM (Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391).

Class activation maps from the gradient at a conv layer: ``alpha_k = 1/Z sum_ij dS_c/dA^k_ij``,
``L = ReLU(sum_k alpha_k A^k)``; guided Grad-CAM multiplies guided backpropagation by ``L``
upsampled to the input. Both use the shared target pass of `convlens.techniques.gradients`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConvlensError
from ...grids import grid_layout, layout_of, to_grid
from ...hooks import forward_hooks, model_of, preserved
from ...lens import as_lens
from .gradients import (
    channel_max_abs,
    concrete_targets,
    grad_input,
    maps_result,
    target_pass,
)
from .results import GradientMaps
from .targets import TargetLike, image_targets, target_param

_POINTWISE = (nn.ReLU, nn.BatchNorm2d, nn.GroupNorm, nn.Dropout, nn.Dropout2d, nn.Identity,
              nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.ReLU6, nn.Hardswish, nn.Mish, nn.PReLU,
              nn.Tanh, nn.Sigmoid, nn.SELU, nn.CELU)


def default_cam_layer(lens) -> str:
    """Grad-CAM's default layer (`find_cam_layer`), found once per lens and input size and
    kept, as the lens keeps its layer table (on a transformer finding it takes a forward and
    backward pass; faithfulness asks for it on every batch, noisy copy and the weight-randomised
    copy of the lens, which keeps its original's layer)."""
    memo = getattr(lens, "_cam_layers", None)
    key = tuple(getattr(lens, "input_size", ()) or ())
    if memo is not None and key in memo:
        return memo[key]
    layer = find_cam_layer(lens)
    if memo is not None:
        memo[key] = layer
    return layer


def find_cam_layer(lens) -> str:
    """Grad-CAM's default layer: the last convolution in execution order, taken after the
    point-wise layers that follow it (batch norm, ReLU, ...), so it is the rectified output
    of the last conv block (VGG: ``features.29``; ResNet-18: ``layer4.1.relu``, the block's
    output; shapes-net: ``features.11``). Where token mixers (linear layers, layer norms,
    attention on the image grid) follow the last conv, as in a vision transformer whose only
    conv is the patch embedding, the last layer whose grid cells reach the class score
    (`_last_reaching_layer`; ViT-B/16: ``encoder.layers.encoder_layer_11.ln_1``)."""
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
    image_hw = tuple(x.shape[-2:])
    if any(isinstance(m, _TOKEN_MIXERS) and _grid_cells(s[1:], image_hw) > 1
           for _, m, s in order[i + 1:]):
        return _last_reaching_layer(lens, model, x)
    return order[i][0]


_TOKEN_MIXERS = (nn.Linear, nn.LayerNorm, nn.MultiheadAttention)


def _grid_cells(shape, image_hw) -> int:
    layout = grid_layout(shape, image_hw)
    return 0 if layout is None else layout[2][0] * layout[2][1]


def _last_reaching_layer(lens, model: nn.Module, x: torch.Tensor) -> str:
    """A transformer's (ViT, Swin, MaxViT, ConvNeXt's blocks): the last module, in execution
    order, whose output is a map on the image grid (tokens without class tokens) with more than
    one cell and whose cells reach the class score; of modules that return the same tensor (a
    stage, its last block, the block's last layer) a stage or block: the shortest name below
    the top level (ConvNeXt: ``features.7``, MaxViT: ``blocks.3``). In a ViT that is the last
    block's first layer norm (``encoder_layer_11.ln_1``): after its attention only the class
    token reaches the head; pytorch-grad-cam's documentation picks the same layer."""
    names = [n for n, _ in model.named_modules() if n]
    fired: list[tuple[str, tuple]] = []
    reached: set[str] = set()
    image_hw = tuple(x.shape[-2:])

    def record(name, module, out):
        layout = layout_of(out, (len(x), *image_hw))
        if layout is None or layout[2][0] * layout[2][1] < 2 or not out.requires_grad:
            return
        fired.append((name, (out.data_ptr(), out.numel(), out._version)))
        out.register_hook(lambda g, _n=name, _l=layout: reached.add(_n)
                          if to_grid(g, _l).abs().sum() > 0 else None)

    xg = x.detach().clone().requires_grad_(True)
    with preserved(model), forward_hooks(model, names, record):
        model.eval()
        score = lens(xg) if hasattr(lens, "model") else model(xg)
        torch.autograd.grad(score.max(dim=1).values.sum(), xg)
    last = next((k for k in range(len(fired) - 1, -1, -1) if fired[k][0] in reached), None)
    if last is None:
        raise ConvlensError("no layer on the image grid reaches the class scores: give "
                            "layer=NAME for Grad-CAM (`convlens layers --model SPEC`)")
    first = last
    while first > 0 and fired[first - 1][1] == fired[last][1] and fired[first - 1][0] in reached:
        first -= 1
    tied = [fired[k][0] for k in range(first, last + 1)]
    return min(tied, key=lambda n: (n.count(".") < 1, n.count("."), tied.index(n)))


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
    lens = as_lens(lens, x)
    xb = grad_input(lens, x)
    layer = layer or default_cam_layer(lens)
    p = target_pass(lens, xb, image_targets(lens, target, len(xb)), cam_layer=layer)
    cam = _cam(p.cam_act, p.cam_grad)
    return maps_result("grad_cam", lens, xb, p, _upsample(cam, xb.shape[-2:]), None,
                   {"target": target_param(target), "layer": layer}, cam=cam)


def guided_grad_cam(lens, x: torch.Tensor, target: TargetLike = "auto",
                    layer: str | None = None) -> GradientMaps:
    """Guided Grad-CAM (Selvaraju et al. 2017, §3.1): guided backprop times Grad-CAM
    upsampled bilinearly to the input, ``G * up(L)``; ``map`` is ``max_c |.|``.

    Example::

        res = guided_grad_cam(lens, x)
    """
    lens = as_lens(lens, x)
    xb = grad_input(lens, x)
    layer = layer or default_cam_layer(lens)
    specs = concrete_targets(lens, xb, target)  # both passes explain the same targets
    cam_pass = target_pass(lens, xb, specs, cam_layer=layer)
    cam = _cam(cam_pass.cam_act, cam_pass.cam_grad)
    p = target_pass(lens, xb, specs, rule="guided")
    att = p.grad * _upsample(cam, xb.shape[-2:])[:, None].to(p.grad)
    return maps_result("guided_grad_cam", lens, xb, p, channel_max_abs(att), att,
                   {"target": target_param(target), "layer": layer}, cam=cam)
