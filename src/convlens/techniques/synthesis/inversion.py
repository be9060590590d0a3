"""Reconstructing images from their CNN codes (Mahendran & Vedaldi, CVPR 2015; METHODS.md §6).

``x* = argmin_x ||Phi(x) - Phi0||^2 / ||Phi0||^2 + lambda_a R_a(x) + lambda_V R_V(x)``

The paper's image priors, on the mean-subtracted image ``r = raw - mean`` (``N = C*H*W``
values), each divided by its value for a typical image so that the weights mean the same
for any image size and pixel scale (the paper's §3.3, "balancing the different terms"):

* ``sigma``: the average Euclidean norm of the images (here: of the images given; the paper
  averages over a training set), so a typical pixel is ``B = sigma / sqrt(N)``;
* ``V``: the root-mean-square difference between neighbouring pixels of the images given;
* ``R_a(x) = sum |r|^alpha / (N B^alpha)`` (alpha = 6) keeps the pixels in a natural range;
* ``R_V(x) = sum ((r[i,j+1]-r[i,j])^2 + (r[i+1,j]-r[i,j])^2)^(beta/2) / (N V^beta)``
  (beta = 2) prefers piecewise-smooth images; ``R_V`` of the originals is 1.

The solver is the paper's released one: the variable is ``u = r / sigma`` (an image of norm
about 1), started from Gaussian noise of norm 1; gradient descent with momentum 0.9; the rate
divided by 10 after the first quarter of the steps and again after three quarters (their
100, 200 and 100 of 400 iterations), the momentum reset where the rate changes. Pixels are
projected onto the valid range after every step.

Weights. ``lambda_tv="paper"`` is exactly the energy of the paper's code on AlexNet,
``lambda_TV / (2 sigma^2) * TV(x)`` with ``lambda_TV`` = 1 for the first two conv blocks, 10
for the third and fourth, 100 for the fifth and the fully connected layers (here by the
fraction of the model's conv layers at or before the layer: up to 2/5, up to 4/5, beyond),
i.e. ``lambda_V = lambda_TV V^2 / (2 B^2)``. On the built-in nets those deep-layer weights
flatten the reconstruction to a grey image whose code is zero (docs/inversion.md measures
it), so the default is one weight for every layer, ``lambda_V = 0.05``, and a base rate of
0.01 instead of the paper's 0.004 (400 steps of the paper's rate leave the built-in nets'
reconstructions unconverged). ``lambda_a`` is the paper's ``8e-10 / (2 sigma^2) * sum x^6``
in 0..255 pixel units, i.e. ``lambda_a = 8e-10 * B_255^4 / 2``.

Several layers are one batch: each image of the batch reconstructs one (layer, image) pair,
all optimised together. Reported per layer: the normalised representation error
``||Phi(x*) - Phi0|| / ||Phi0||`` and the pixel error ``||x* - x0|| / ||x0||`` (model input,
i.e. mean-subtracted, normalised pixels).

Example::

    res = invert(lens, x[:8], ["features.1", "features.7", "classifier.6"])
    res.rep_error.shape, res.reconstructions.shape     # (3, 8), (3, 8, C, H, W)
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...errors import ConvlensError
from ...hooks import capture, model_of, preserved
from ...lens import as_batch, as_lens
from ...optimize import Objective, PixelImage, Schedule, match, render, to_unit
from .results import InversionResult

#: the released solver's rates (x lr) and their share of the iterations (100, 200, 100 of 400)
PAPER_SCHEDULE = Schedule(factors=(1.0, 0.1, 0.01), parts=(1, 2, 1), reset_momentum=True)
#: lambda_TV of the paper's AlexNet experiments by depth group (conv1-2, conv3-4, conv5 + fc)
PAPER_TV = (1.0, 10.0, 100.0)
#: lambda of the alpha-norm in the paper's experiments (0..255 pixels)
PAPER_ALPHA = 8e-10
#: the default TV weight of every layer (R_V of the originals is 1)
DEFAULT_TV = 0.05


def paper_tv(lens, layer: str) -> float:
    """The paper's ``lambda_TV`` for `layer` (1, 10 or 100): by the fraction of the model's
    conv layers that run at or before it (AlexNet's conv1-2 / conv3-4 / conv5 and fc)."""
    model = model_of(lens)
    names = [(n, m) for n, m in model.named_modules() if n]
    convs = [i for i, (_, m) in enumerate(names) if isinstance(m, nn.modules.conv._ConvNd)]
    pos = next((i for i, (n, _) in enumerate(names) if n == layer), None)
    if pos is None:
        model_of(lens).get_submodule(layer)  # raises
    if not convs:
        return PAPER_TV[0]
    # a layer inside a module (a block) counts the convs registered up to its last child
    end = pos
    while end + 1 < len(names) and names[end + 1][0].startswith(layer + "."):
        end += 1
    frac = sum(1 for i in convs if i <= end) / len(convs)
    group = 0 if frac <= 0.4 + 1e-9 else 1 if frac <= 0.8 + 1e-9 else 2
    return PAPER_TV[group]


def inversion_objective(targets: dict[str, torch.Tensor], rows: dict[str, torch.Tensor],
                        std: torch.Tensor, b_pixel: float, v_diff: float, lambda_alpha: float,
                        lambda_tv: Sequence[float], alpha: float = 6.0, beta: float = 2.0
                        ) -> Objective:
    """Minus the paper's energy for every row of the batch: ``-(||Phi(x) - Phi0||^2/||Phi0||^2
    + lambda_a R_a(x) + lambda_V R_V(x))``, rows ``rows[layer]`` reconstructing
    ``targets[layer]`` with TV weight ``lambda_tv[k]`` for the k-th layer (see the module
    docstring for R_a and R_V; ``std`` maps the model input to mean-subtracted raw pixels)."""
    names = list(targets)
    obj: Objective = sum((match(name, targets[name], rows[name]) for name in names), start=0)
    if not (lambda_alpha or any(lambda_tv)):
        return obj
    w_tv = torch.zeros(sum(len(rows[name]) for name in names), dtype=torch.float64)
    for name, lam in zip(names, lambda_tv):
        w_tv[rows[name]] = float(lam)

    def priors(ctx) -> torch.Tensor:
        r = ctx.x * std.to(ctx.x.device, ctx.x.dtype).view(1, -1, 1, 1)
        count = r[0].numel()
        ra = (r / b_pixel).abs().pow(alpha).flatten(1).sum(1) / count
        dh = r[..., :-1, 1:] - r[..., :-1, :-1]
        dv = r[..., 1:, :-1] - r[..., :-1, :-1]
        s2 = dh.pow(2) + dv.pow(2)
        s2 = s2 if beta == 2 else s2.clamp_min(1e-12).pow(beta / 2)
        rv = s2.flatten(1).sum(1) / (count * v_diff ** beta)
        return -(lambda_alpha * ra + w_tv.to(r.device, r.dtype) * rv)
    return obj + Objective(priors, f"-(lambda_a R_{alpha:g} + lambda_V R_V{beta:g})")


def invert(lens, x: torch.Tensor, layers: str | Sequence[str], steps: int = 400,
           alpha: float = 6.0, beta: float = 2.0, lambda_alpha: float | None = None,
           lambda_tv: float | Sequence[float] | None = None, regularize: bool = True,
           sigma: float | None = None, v: float | None = None, lr: float = 0.01,
           momentum: float = 0.9,
           schedule: Schedule | None = None, seed: int = 0, progress: bool = True,
           names: Sequence[str] | None = None) -> InversionResult:
    """Reconstruct images from the codes of one or more layers (Mahendran & Vedaldi 2015).

    ``x* = argmin ||Phi(x) - Phi0||^2/||Phi0||^2 + lambda_a R_a(x) + lambda_V R_V(x)``, the
    priors normalised as the paper's §3.3 (see the module docstring for every constant),
    solved by gradient descent with momentum and a decaying rate. All (layer, image) pairs
    are one batch.

    Args:
        lens: a `Lens` or an ``nn.Module``.
        x: ``(N, C, H, W)`` normalised images (or one ``(C, H, W)``).
        layers: layer names (`lens.layers()`), one reconstruction of every image per layer.
        steps: iterations (the paper: 400).  alpha, beta: exponents of the two priors.
        lambda_alpha: weight of R_a (default: the paper's, see above).
        lambda_tv: weight of R_V: a number, one per layer, or ``"paper"`` (by depth, see
            above); default 0.05 for every layer.
        regularize: False turns both priors off (a pure representation match).
        sigma: the image norm of the normalisation (default: the mean over `x`, raw units).
        v: the neighbour difference of the normalisation (default: measured on `x`).
        lr, momentum, schedule: the solver (default 0.01, 0.9, /10 twice, as the paper's).
        seed: the initial noise.  progress: a progress bar on stderr.

    Returns an `InversionResult`.

    Example::

        res = invert(lens, x, ["features.1", "features.11"])
        res.layer_table()        # layer, rep_error, pixel_error, same_class
    """
    lens = as_lens(lens, x if isinstance(x, torch.Tensor) else None)
    x0 = as_batch(lens, x)
    layer_list = [layers] if isinstance(layers, str) else list(dict.fromkeys(layers))
    if not layer_list:
        raise ConvlensError("give at least one layer to invert")
    for name in layer_list:
        lens.layer(name)  # an unknown name: one line with close matches
    if int(steps) < 1:
        raise ConvlensError(f"steps must be at least 1, got {steps}")
    n, (c, h, w) = x0.shape[0], x0.shape[1:]
    count = c * h * w
    lo, hi = lens.value_range
    mean = torch.tensor(lens.mean, dtype=x0.dtype, device=x0.device)
    std = torch.tensor(lens.std, dtype=x0.dtype, device=x0.device)
    r0 = x0 * std.view(1, -1, 1, 1)  # mean-subtracted raw pixels
    if sigma is None:
        sigma = float(r0.flatten(1).norm(dim=1).mean())
    if not sigma > 0:
        raise ConvlensError("the images are all equal to the mean image: nothing to normalise "
                            "by (give sigma=...)")
    b_pixel = sigma / count ** 0.5
    if v is None:  # the images' own RMS difference between neighbours, as sigma is their norm
        dh = r0[..., :-1, 1:] - r0[..., :-1, :-1]
        dv = r0[..., 1:, :-1] - r0[..., :-1, :-1]
        v = float((dh.pow(2) + dv.pow(2)).mean().sqrt())
    v_diff = float(v)
    if not v_diff > 0:
        raise ConvlensError("the images are flat: no neighbour differences to normalise the "
                            "total variation by (give v=...)")
    b255 = b_pixel * 255.0 / (hi - lo)
    lam_a = PAPER_ALPHA * b255 ** 4 / 2 if lambda_alpha is None else float(lambda_alpha)
    if lambda_tv is None:
        lam_tv = [DEFAULT_TV] * len(layer_list)
    elif isinstance(lambda_tv, str):
        if lambda_tv != "paper":
            raise ConvlensError(f"lambda_tv must be a number, one per layer, or 'paper', got "
                                f"{lambda_tv!r}")
        lam_tv = [paper_tv(lens, name) * v_diff ** 2 / (2 * b_pixel ** 2) for name in layer_list]
    elif isinstance(lambda_tv, (int, float)):
        lam_tv = [float(lambda_tv)] * len(layer_list)
    else:
        lam_tv = [float(v) for v in lambda_tv]
        if len(lam_tv) != len(layer_list):
            raise ConvlensError(f"lambda_tv has {len(lam_tv)} values for {len(layer_list)} layers")

    # The codes to reconstruct: one forward pass of the originals.
    model = model_of(lens)
    with preserved(model), torch.no_grad(), capture(model, layer_list) as cap:
        model.eval()
        out0 = lens(x0)
        targets = {name: cap[name] for name in layer_list}
    original_predicted = (out0.argmax(1).cpu() if out0.dim() == 2
                          else torch.zeros(n, dtype=torch.long))

    # Batch row l * N + i reconstructs image i from layer l.
    rows = {name: torch.arange(i * n, (i + 1) * n) for i, name in enumerate(layer_list)}
    obj = inversion_objective(targets, rows, std.cpu(), b_pixel, v_diff,
                              lam_a if regularize else 0.0,
                              [t if regularize else 0.0 for t in lam_tv], alpha, beta)
    # The same start for image i whatever the layer: layers differ only by their code.
    g = torch.Generator().manual_seed(int(seed))
    init = torch.randn((n, c, h, w), generator=g, dtype=torch.float64)
    init = (init / init.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).to(x0.device, x0.dtype)
    init = init.repeat(len(layer_list), 1, 1, 1)
    span = hi - lo
    param = PixelImage(init, offset=((mean - lo) / span).cpu(), scale=sigma / span,
                       squash="clamp")
    param.project()
    out = render(lens, obj, param, transforms=(), steps=steps, optimizer="momentum", lr=lr,
                 momentum=momentum, schedule=schedule or PAPER_SCHEDULE, seed=seed,
                 progress=progress, desc="invert")

    # Errors of the final images, measured without the priors.
    x_star = _from_unit(lens, out.images.to(x0.device, x0.dtype))
    with preserved(model), torch.no_grad(), capture(model, layer_list) as cap:
        model.eval()
        logits = lens(x_star)
        rep = torch.zeros(len(layer_list), n)
        for i, name in enumerate(layer_list):
            a = cap[name][rows[name].to(x_star.device)]
            t = targets[name]
            rep[i] = ((a - t).flatten(1).norm(dim=1) / t.flatten(1).norm(dim=1)).cpu()
    pix = torch.zeros(len(layer_list), n)
    x0n = x0.flatten(1).norm(dim=1).clamp_min(1e-12)
    for i, name in enumerate(layer_list):
        d = x_star[rows[name].to(x_star.device)] - x0
        pix[i] = (d.flatten(1).norm(dim=1) / x0n).cpu()
    pred = (logits.argmax(1).cpu().view(len(layer_list), n) if logits.dim() == 2
            else torch.zeros(len(layer_list), n, dtype=torch.long))
    params = {"steps": int(steps), "alpha": alpha, "beta": beta, "lambda_alpha": lam_a,
              "lambda_tv": dict(zip(layer_list, lam_tv)), "regularize": regularize,
              "sigma": sigma, "B": b_pixel, "V": v_diff, "lr": lr, "momentum": momentum,
              "schedule": {"factors": list((schedule or PAPER_SCHEDULE).factors),
                           "parts": list((schedule or PAPER_SCHEDULE).parts)},
              "seed": int(seed), "seconds": round(out.seconds, 2)}
    return InversionResult(
        layer_list, to_unit(lens, x0).clamp(0, 1).cpu(),
        out.images.view(len(layer_list), n, c, h, w), rep, pix, pred, original_predicted,
        labels=getattr(lens, "labels", None), names=list(names) if names else None,
        history=out.history, params=params)


def _from_unit(lens, unit: torch.Tensor) -> torch.Tensor:
    lo, hi = lens.value_range
    return lens.normalize(lo + unit * (hi - lo))
