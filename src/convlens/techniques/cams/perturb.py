"""The CAMs without gradients: Score-CAM and Ablation-CAM (one forward pass per channel, run
in batches) and Eigen-CAM (one forward pass, no target).

Each takes the layer's activations ``A`` ``(N, C, h, w)`` from one forward pass of the images,
weighs each channel ``w_k`` by its paper's rule, and returns ``cam = ReLU(sum_k w_k A^k)`` at
the layer with ``map`` its bilinear upsampling to the input, in the `CamMaps` every CAM
returns. Targets are fixed on the images first (the predicted class for ``auto``; a unit's
position), as every method that evaluates the model on other inputs does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import ConvlensError
from ...grids import from_grid, grid_layout, to_grid
from ...hooks import capture, model_of, preserved, substituted
from ...lens import ChannelsLast, as_batch, as_lens
from ..gradients.cam import default_cam_layer
from ..gradients.gradients import target_pass
from ..gradients.targets import TargetLike, Unit, image_targets, target_param
from .gradcams import cam_result, spatial, upsample
from .results import CamMaps
from .suffix import Suffix, check


def _forward(lens, xb: torch.Tensor, target, layer: str, method: str):
    """One forward pass: the resolved targets (fixed positions), the pass and ``A``."""
    specs = image_targets(lens, target, len(xb))
    with torch.no_grad(), capture(lens, layer) as cap:
        p = target_pass(lens, xb, specs, backward=False)
        calls = len(cap.all(layer))
        act = cap[layer]  # a module called several times: its last call
    fixed = [Unit(s.layer, s.channel, *pos) if isinstance(s, Unit) and pos else s
             for s, pos in zip(p.specs, p.positions)]
    return fixed, p, spatial(act, method), calls


def _batch_size(batch_size: int) -> int:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConvlensError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


def _combine(weights: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    return F.relu((weights[:, :, None, None].to(act) * act).sum(1))


def _scores(lens, inputs: torch.Tensor, specs: list) -> torch.Tensor:
    """Each row's target value on `inputs` (no gradient)."""
    return target_pass(lens, inputs, specs, backward=False).scores


def score_cam(lens, x: torch.Tensor, target: TargetLike = "auto", layer: str | None = None,
              batch_size: int = 32, max_channels: int | None = None) -> CamMaps:
    """Score-CAM (Wang et al. 2020, Algorithm 1, https://arxiv.org/abs/1910.01279).

    Each channel's map, upsampled bilinearly to the input and scaled to [0, 1],
    ``H^k = s(up(A^k))``, masks the image; ``S_k = f_c(x * H^k) - f_c(x_b)`` (the target before
    softmax, from a baseline ``x_b``) and ``w = softmax_k(S_k)``; ``L = ReLU(sum_k w_k A^k)``.
    The baseline's score is the same for every ``k``, so it cancels in the softmax and is not
    computed. A constant channel (nothing to scale: a dead unit) masks the image to 0; the
    score of that black image is computed once per image. The other masked images run
    `batch_size` at a time, channels-last on the CPU (faster there; a model that refuses that
    layout gets the default one, and ``notes`` says so). ``x: (N, C, H, W)``.

    ``max_channels=N`` is Faster-Score-CAM (Tabayashi's Score-CAM implementation,
    https://github.com/tabayashi0117/Score-CAM): only each image's ``N`` channels whose maps
    vary most (standard deviation at the layer) mask the image, the softmax runs over them and
    the other channels weigh 0; about ``C / N`` times fewer forward passes, an approximation
    of the paper's map (None, the default: every channel, the paper's).

    Example::

        res = score_cam(lens, x, batch_size=64)
        fast = score_cam(lens, x, max_channels=64)   # Faster-Score-CAM
    """
    lens = as_lens(lens, x)
    xb = as_batch(lens, x)
    layer = layer or default_cam_layer(lens)
    bs = _batch_size(batch_size)
    specs, p, act, _ = _forward(lens, xb, target, layer, "Score-CAM")
    n, c = act.shape[:2]
    flat = act.flatten(2)
    kept = _top_varying(flat, max_channels).flatten()  # (n * c,)
    constant = (flat.amax(2) == flat.amin(2)).flatten() & kept  # masks the image to 0
    live = ~constant & kept
    rows = torch.arange(n).repeat_interleave(c)[live]
    chans = torch.arange(c).repeat(n)[live]
    scores = torch.full((n * c,), -torch.inf, dtype=torch.float64)  # weight 0 if not kept
    layout = ChannelsLast(xb)
    with torch.inference_mode():
        if constant.any():  # every constant channel of image i scores f_c(0): one pass
            zero = _scores(lens, torch.zeros_like(xb), specs).double().cpu()
            scores[constant] = zero.repeat_interleave(c)[constant]
        live = live.nonzero()[:, 0]
        for s in range(0, len(rows), bs):
            r, k = rows[s:s + bs], chans[s:s + bs]
            m = upsample(act[r, k], xb.shape[-2:])
            lo = m.amin((1, 2), keepdim=True)
            span = m.amax((1, 2), keepdim=True) - lo
            m = torch.where(span > 0, (m - lo) / torch.where(span > 0, span, 1), 0)
            scores[live[s:s + bs]] = layout.run(
                lambda inp: _scores(lens, inp, [specs[i] for i in r.tolist()]).double().cpu(),
                xb[r] * m[:, None].to(xb))
    weights = scores.view(n, c).softmax(1)
    cam = _combine(weights.to(act.device), act)
    params = {"target": target_param(target), "layer": layer, "batch_size": bs}
    notes = layout.notes()
    if max_channels is not None:
        params["max_channels"] = max_channels
        notes.append(f"Faster-Score-CAM: the {min(max_channels, c)} most varying of {c} "
                     "channels per image")
    return cam_result("score_cam", lens, xb, p, cam, params, notes=notes)


def _top_varying(flat: torch.Tensor, max_channels: int | None) -> torch.Tensor:
    """``(N, C)``: True for each image's `max_channels` channels of largest standard
    deviation over the positions of `flat` ``(N, C, hw)`` (all of them for None)."""
    n, c = flat.shape[:2]
    if max_channels is None:
        return torch.ones(n, c, dtype=torch.bool)
    if isinstance(max_channels, bool) or not isinstance(max_channels, int) or max_channels < 1:
        raise ConvlensError(f"max_channels must be a positive integer or None, got "
                            f"{max_channels!r}")
    top = flat.double().std(2, correction=0).topk(min(max_channels, c), 1).indices.cpu()
    return torch.zeros(n, c, dtype=torch.bool).scatter_(1, top, True)


def ablation_cam(lens, x: torch.Tensor, target: TargetLike = "auto", layer: str | None = None,
                 batch_size: int = 32) -> CamMaps:
    """Ablation-CAM (Desai & Ramaswamy 2020, eq. 2-3, https://openaccess.thecvf.com/
    content_WACV_2020/html/Desai_Ablation-CAM_Visual_Explanations_for_Deep_Convolutional_Network_via_Gradient-free_Localization_WACV_2020_paper.html).

    ``w_k = (y_c - y_c^k) / y_c`` with ``y_c`` the target (before softmax) and ``y_c^k`` the
    target with channel ``A^k`` set to zero; ``L = ReLU(sum_k w_k A^k)`` (``w = 0`` where
    ``y_c = 0``). The ablated copies run `batch_size` at a time through only the network after
    the layer (cut from a torch.fx trace at the layer's last call, fed the activations);
    where the network cannot be cut there (no trace; a cut graph that does not give the
    layer's activations or the model's scores; a unit target, read inside the network), a
    forward hook substitutes the layer's output (its last call) in full passes instead, and
    ``notes`` says so. A layer whose maps are laid out otherwise (a Swin block's ``(N, h, w,
    C)``, a vision transformer's patch tokens after its class token: `convlens.grids`) has
    channel ``k`` set to zero on the image's grid, in its own layout; class tokens are kept.
    ``x: (N, C, H, W)``.

    Example::

        res = ablation_cam(lens, x, layer="layer4", batch_size=64)
        res.notes            # how the ablated copies were run
    """
    lens = as_lens(lens, x)
    xb = as_batch(lens, x)
    layer = layer or default_cam_layer(lens)
    bs = _batch_size(batch_size)
    specs, p, act, calls = _forward(lens, xb, target, layer, "Ablation-CAM")
    n, c = act.shape[:2]
    model = model_of(lens)
    ablated = torch.empty(n, c, dtype=torch.float64)
    with preserved(model), torch.no_grad():
        model.eval()
        suffix, why = (Suffix.build(lens, layer) if all(isinstance(s, int) for s in specs)
                       else (None, "a unit target is read inside the network"))
        if suffix is not None:
            why = check(suffix, lens, xb[:1], act[:1])
            suffix = suffix if not why else None
        for i in range(n):
            if suffix is not None:  # the layer's output in its own layout, and on the grid
                native, extras = suffix.prefix(xb[i:i + 1])
                layout = grid_layout(native.shape[1:], tuple(xb.shape[-2:]))
                a_i = to_grid(native, layout)
            else:
                a_i = act[i:i + 1]
            for s in range(0, c, bs):
                k = torch.arange(s, min(s + bs, c))
                a = a_i.repeat(len(k), *[1] * (a_i.dim() - 1))
                a[torch.arange(len(k)), k] = 0
                if suffix is not None:
                    got = suffix(from_grid(a, native, layout), extras)[:, specs[i]]
                else:
                    got = _substituted_scores(lens, model, layer, a, xb[i:i + 1], specs[i],
                                              calls - 1)
                ablated[i, s:s + len(k)] = got.double().cpu()
    y = p.scores.double().cpu()[:, None]
    weights = torch.where(y != 0, (y - ablated) / torch.where(y != 0, y, 1), 0)
    cam = _combine(weights.to(act.device), act)
    how = (f"the ablated copies ran through the network after {layer} only (torch.fx cut)"
           if suffix is not None else
           f"the ablated copies ran through the whole network, {layer}'s output substituted "
           f"by a hook (fallback: {why})")
    return cam_result("ablation_cam", lens, xb, p, cam,
                      {"target": target_param(target), "layer": layer, "batch_size": bs},
                      notes=[how])


def _substituted_scores(lens, model, layer: str, acts: torch.Tensor, x1: torch.Tensor,
                        spec, call: int) -> torch.Tensor:
    """The target on the image `x1` with `layer`'s output (its `call`-th call) replaced by
    each row of `acts` (maps ``(B, C, h, w)``, written back in the layer's own layout: a Swin
    block's channels-last maps, a transformer's patch tokens after its class tokens, which
    are kept)."""
    def swap(out):
        layout = (grid_layout(out.shape[1:], tuple(x1.shape[-2:]))
                  if isinstance(out, torch.Tensor) else None)
        if layout is None or to_grid(out, layout).shape[1:] != acts.shape[1:]:
            raise ConvlensError(f"Ablation-CAM cannot substitute layer {layer!r}'s output "
                                f"(it is not a map of the image)")
        return from_grid(acts.to(out.dtype), out, layout)
    with substituted(model, layer, swap, call=call):
        return _scores(lens, x1.expand(len(acts), *x1.shape[1:]), [spec] * len(acts))


def eigen_cam(lens, x: torch.Tensor, target: TargetLike = "auto",
              layer: str | None = None) -> CamMaps:
    """Eigen-CAM (Muhammad & Yeasin 2020, eq. 3-4, https://arxiv.org/abs/2008.00299).

    The layer's activations as a matrix ``O`` (positions x channels), ``O = U S V^T``; the map
    is the projection on the first right singular vector, ``L = O V_1``, at each position,
    with the sign of ``V_1`` (which the SVD leaves open) chosen so that the map sums to a
    non-negative value, through a ReLU. No gradient and no class: `target` only names what
    the captions report (the map is the same for every target). pytorch-grad-cam centres
    ``O`` first; the paper does not. ``x: (N, C, H, W)``.

    Example::

        res = eigen_cam(lens, x)
    """
    lens = as_lens(lens, x)
    xb = as_batch(lens, x)
    layer = layer or default_cam_layer(lens)
    _, p, act, _ = _forward(lens, xb, target, layer, "Eigen-CAM")
    cam = _eigen(act)
    return cam_result("eigen_cam", lens, xb, p, cam,
                      {"target": target_param(target), "layer": layer},
                      notes=["Eigen-CAM does not depend on the target"])


def _eigen(act: torch.Tensor) -> torch.Tensor:
    n, c, h, w = act.shape
    o = act.detach().double().flatten(2).transpose(1, 2)          # (N, hw, C)
    v1 = torch.linalg.svd(o, full_matrices=False).Vh[:, 0, :]     # (N, C)
    proj = (o @ v1[..., None])[..., 0]                             # O V_1, (N, hw)
    proj = proj * torch.where(proj.sum(1, keepdim=True) < 0, -1.0, 1.0)
    return F.relu(proj).view(n, h, w).to(act.dtype)

