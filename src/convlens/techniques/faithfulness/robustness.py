"""Infidelity and max-sensitivity (Yeh, Hsieh, Suggala, Inouye & Ravikumar 2019, "On the
(In)fidelity and Sensitivity of Explanations", NeurIPS, https://arxiv.org/abs/1901.09392).

Both perturb the normalised input with noise whose scale is given in [0, 1] pixel units (as
every function of `metrics`): one pixel unit is ``(hi - lo) / std_c`` in normalised channel
c. The noise of image i is drawn from a generator seeded with `seed`, image after image, so
it does not depend on `batch_size`.
"""
from __future__ import annotations

from typing import Callable

import torch

from ...errors import ConvlensError
from ...hooks import model_of, preserved
from .metrics import (
    _check_batch,
    _evaluating,
    _images,
    _normal,
    _pixel_scale,
    _probabilities,
    _targets,
)

Explain = Callable[..., torch.Tensor]


def _check_count(n, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConvlensError(f"{what} must be a positive integer, got {n!r}")
    return n


def _attributions(attributions, x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)``: as given, or a map ``(N, H, W)`` / ``(N, 1, H, W)`` repeated over the
    channels (Quantus's convention)."""
    a = torch.as_tensor(attributions).detach().to(x)
    if a.dim() == 3:
        a = a[:, None]
    n, c, h, w = x.shape
    if a.dim() != 4 or a.shape[0] != n or a.shape[2:] != x.shape[2:] or a.shape[1] not in (1, c):
        raise ConvlensError(f"attributions must be (N, C, H, W) or (N, H, W) for images "
                            f"{tuple(x.shape)}, got {tuple(attributions.shape)}")
    return a.expand(n, c, h, w)


class _PerImage:
    """Noise of shape ``(samples, C, H, W)`` per image, drawn in image order when first asked."""

    def __init__(self, draw: Callable[[], torch.Tensor]):
        self.draw, self.image, self.noise = draw, -1, None

    def __call__(self, i: int) -> torch.Tensor:
        if i != self.image:
            if i != self.image + 1:
                raise RuntimeError("noise asked out of image order")
            self.image, self.noise = i, self.draw()
        return self.noise


def infidelity(lens, x: torch.Tensor, attributions: torch.Tensor, targets=None,
               sigma: float = 0.1, n_samples: int = 64, normalise: bool = False,
               output: str = "logit", seed: int = 0, batch_size: int = 64) -> torch.Tensor:
    """Infidelity (Yeh et al. 2019, Definition 2.1): how badly the attribution predicts the
    change of the output under random perturbations ``I``,
    ``INFD = E_I[(I . Phi(x) - (f(x) - f(x - I)))^2]``, ``(N,)``; lower is better.

    ``I ~ N(0, sigma^2)`` independently for every input value (all channels), `sigma` in
    [0, 1] pixel units (0.1: a tenth of the pixel range), estimated with `n_samples`
    perturbations per image (Monte Carlo). ``f`` is the target's class score before softmax
    (``output="logit"``; ``"probability"``: after it). ``Phi``: ``attributions (N, C, H, W)``,
    or a map ``(N, H, W)`` used for every channel. ``normalise=True`` first scales the
    attribution by the optimal ``beta = E[(I . Phi) d] / E[(I . Phi)^2]``,
    ``d = f(x) - f(x - I)`` (the authors' code, and Captum's ``infidelity(normalize=True)``),
    which makes the score blind to the map's scale; False is the definition as written.
    Captum and Quantus, given the same perturbations, give the same numbers (tested).

    Example::

        g = convlens.saliency(lens, x).attribution   # (N, C, H, W), the logit's gradient
        infidelity(lens, x, g)                        # ~0 where the model is nearly linear
    """
    if output not in ("logit", "probability"):
        raise ConvlensError(f"output must be 'logit' or 'probability', got {output!r}")
    if not sigma > 0:
        raise ConvlensError(f"sigma must be positive, got {sigma!r}")
    n_samples = _check_count(n_samples, "n_samples")
    batch_size = _check_batch(batch_size)
    lens, x = _images(lens, x)
    phi = _attributions(attributions, x)
    n, c, h, w = x.shape
    scale = (_pixel_scale(lens, x) * sigma).to(x).view(1, c, 1, 1)
    gen = torch.Generator().manual_seed(seed)
    noise = _PerImage(lambda: (torch.randn((n_samples, c, h, w), generator=gen) * scale.cpu())
                      .to(x))
    dots = torch.empty(n * n_samples, dtype=torch.float64)

    def rows(a: int, b: int) -> torch.Tensor:
        out = []
        for r in range(a, b):
            i, s = divmod(r, n_samples)
            pert = noise(i)[s]
            dots[r] = (pert.double() * phi[i].double()).sum().cpu()
            out.append(x[i] - pert)
        return torch.stack(out)

    logit = output == "logit"
    with _evaluating(lens):
        t = _targets(lens, x, targets)
        f0, _ = _probabilities(lens, lambda a, b: x[a:b], n, t, batch_size, logit=logit)
        fp, _ = _probabilities(lens, rows, n * n_samples, t.repeat_interleave(n_samples),
                               batch_size, logit=logit)
    f0, fp = _normal(f0, fp)
    diff = f0.double().repeat_interleave(n_samples) - fp.double()
    a, d = dots.view(n, n_samples), diff.view(n, n_samples)
    if normalise:
        num, den = (a * d).sum(1), (a * a).sum(1)
        beta = num / torch.where(den != 0, den, torch.ones_like(den))  # Captum: 0 / 1 = 0
        a = beta[:, None] * a
    return ((a - d) ** 2).mean(1)


def max_sensitivity(lens, x: torch.Tensor, explain: Explain, targets=None,
                    radius: float = 0.02, n_samples: int = 10, normalise: bool = True,
                    seed: int = 0, batch_size: int = 64) -> torch.Tensor:
    """Max-sensitivity (Yeh et al. 2019, Definition 3.1, estimated by Monte Carlo as they
    do): ``SENS_MAX = max_{||d||_inf <= r} ||Phi(x + d) - Phi(x)|| / ||Phi(x)||``, ``(N,)``;
    lower is better.

    ``explain(lens, x, targets) -> maps`` recomputes the attribution (``(M, H, W)`` or any
    shape with M rows, for ``M`` images and their ``targets (M,)``); the maximum is over
    `n_samples` perturbations ``d`` uniform in the L-infinity ball of radius `radius` pixel
    units (Captum's defaults: 0.02 and 10; Quantus's: 0.2 and 200); ``||.||`` is the
    Frobenius norm of the whole map. ``normalise`` divides by ``||Phi(x)||`` (a zero map:
    by 1, as Captum): the authors' code (``get_exp_sens``), Quantus's ``MaxSensitivity`` and
    Captum 0.9's ``sensitivity_max`` all divide; the paper's definition does not
    (``normalise=False``), nor did Captum before it. ``explain`` runs with autograd on and
    the model in eval mode; hooks are its own business, but training flags,
    ``requires_grad`` and ``.grad`` are restored afterwards.

    Example::

        def explain(lens, x, t):
            return convlens.saliency(lens, x, target=t.tolist()).map
        max_sensitivity(lens, x, explain)
    """
    if not radius > 0:
        raise ConvlensError(f"radius must be positive, got {radius!r}")
    if not callable(explain):
        raise ConvlensError("explain must be a function explain(lens, x, targets) -> maps")
    n_samples = _check_count(n_samples, "n_samples")
    batch_size = _check_batch(batch_size)
    lens, x = _images(lens, x)
    n, c, h, w = x.shape
    scale = (_pixel_scale(lens, x) * radius).to(x).view(1, c, 1, 1).cpu()
    gen = torch.Generator().manual_seed(seed)
    noise = _PerImage(lambda: ((torch.rand((n_samples, c, h, w), generator=gen) * 2 - 1)
                               * scale).to(x))
    model = model_of(lens)
    grads = [(p, None if p.grad is None else p.grad.clone()) for p in model.parameters()]

    def run(xb: torch.Tensor, tb: torch.Tensor) -> torch.Tensor:
        m = torch.as_tensor(explain(lens, xb, tb)).detach().cpu().double()
        if m.dim() < 1 or m.shape[0] != xb.shape[0]:
            raise ConvlensError(f"explain returned shape {tuple(m.shape)} for {xb.shape[0]} "
                                "images: give one map per image")
        return m.flatten(1)

    try:
        with preserved(model):
            model.eval()
            with _evaluating(lens):
                t = _targets(lens, x, targets)
            t, = _normal(t)
            phi = run(x, t)
            norm = phi.norm(dim=1)
            norm = torch.where(norm == 0, torch.ones_like(norm), norm)
            worst = torch.full((n,), -torch.inf, dtype=torch.float64)
            for a in range(0, n * n_samples, batch_size):
                r = range(a, min(n * n_samples, a + batch_size))
                idx = torch.tensor([q // n_samples for q in r])
                xb = torch.stack([x[q // n_samples] + noise(q // n_samples)[q % n_samples]
                                  for q in r])
                sens = (run(xb, t[idx]) - phi[idx]).norm(dim=1)
                if normalise:
                    sens = sens / norm[idx]
                worst = worst.scatter_reduce(0, idx, sens, reduce="amax")
    finally:
        for p, g in grads:
            p.grad = g
    return worst
