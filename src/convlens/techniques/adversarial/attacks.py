"""Fooling ConvNets (METHODS.md §9): the fast gradient sign method, its iterative version (PGD),
and Szegedy's smallest change that turns an image into any chosen class.

Every attack works in *pixel space*: images in [0, 1] (the lens's ``value_range`` mapped to
[0, 1]), fed to the model through the lens's normalisation, so ε is in pixel units whatever the
model's mean and std; every adversarial image is clipped to [0, 1]. Inputs and outputs follow
convlens's convention: ``x`` is a *normalised* batch ``(N, C, H, W)``; the result holds both the
pixels (``images``, ``adversarial``) and the normalised model input ``x_adv``.

The loss is the cross-entropy summed over the batch (not averaged), so each image's gradient is
its own, whatever the batch size; the sign, and so every FGSM/PGD step, is the same as with the
mean that torchattacks uses, except where the mean's gradient underflows to zero in float32:
when the model is so sure of an image that every other class gets a probability of about
1e-40, the averaged gradient at the pixels is 0 (torchattacks does not move those pixels) while
the per-image one, N times larger, still has a sign (convlens moves them). The model runs in
eval mode with its parameters' ``requires_grad`` off (the gradient is taken with respect to the
pixels only); training flags, ``requires_grad`` flags, parameters and their ``.grad`` are as
before afterwards, also after an error.

Example::

    res = fgsm(lens, x, y, eps=0.1)            # x: (N, C, H, W) normalised, y: (N,) labels
    res.adv_predicted, res.adv_confidence      # the model's answer on x + ε sign(∇J)
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import ConvlensError, unknown
from ...hooks import preserved
from ...lens import as_batch, as_lens
from .results import AdversarialExamples

NORMS = ("linf", "l2")
FOOL_METHODS = ("adam", "lbfgs")


# -- pixel space ---------------------------------------------------------------------------
def pixels(lens, x: torch.Tensor) -> torch.Tensor:
    """Normalised model input to pixels in [0, 1] (not clipped):
    ``(x std + mean - lo) / (hi - lo)``."""
    lo, hi = lens.value_range
    return (lens.denormalize(x) - lo) / (hi - lo)


def model_input(lens, u: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] to the normalised model input: ``(lo + u (hi - lo) - mean) / std``."""
    lo, hi = lens.value_range
    return lens.normalize(u * (hi - lo) + lo)


@contextlib.contextmanager
def attacking(lens) -> Iterator[None]:
    """Eval mode, parameters without ``requires_grad``, gradients on; all restored on exit."""
    with preserved(lens), torch.enable_grad():
        lens.eval()
        for p in lens.parameters():
            p.requires_grad_(False)
        yield


# -- input checks --------------------------------------------------------------------------
def check_input(lens, x: torch.Tensor) -> torch.Tensor:
    """`x` as a batch on the model's device, of the model's input size (else a one-line error)."""
    xb = as_batch(lens, x)
    size = tuple(lens.input_size)
    if tuple(xb.shape[1:]) != size:
        raise ConvlensError(f"x has images of size {tuple(xb.shape[1:])}; the model takes "
                            f"{size} (C, H, W): load images with lens.preprocess")
    return xb


def check_eps(eps: float, norm: str = "linf") -> float:
    """ε as a float: in [0, 1] for L∞ (pixel units); at least 0 for L2."""
    try:
        eps = float(eps)
    except (TypeError, ValueError):
        raise ConvlensError(f"eps must be a number, got {eps!r}") from None
    if not math.isfinite(eps) or eps < 0 or (norm == "linf" and eps > 1):
        raise ConvlensError(f"eps must lie in [0, 1] (pixel units, images in [0, 1]), got {eps:g}"
                            if norm == "linf" else f"eps must be at least 0, got {eps:g}")
    return eps


def class_indices(lens, y, n: int, k: int | None = None) -> torch.Tensor | None:
    """`y` (None, a class index or name, or one per image) as a ``(n,)`` long tensor; None for
    None. Classes are checked against `k` classes (default: the lens's labels)."""
    if y is None:
        return None
    k = k if k is not None else getattr(lens, "num_classes", None)
    labels = list(getattr(lens, "labels", None) or [])

    def one(v) -> int:
        if isinstance(v, torch.Tensor):
            v = v.item()
        if isinstance(v, str):
            if v in labels:
                return labels.index(v)
            if not v.lstrip("-").isdigit():
                raise unknown("class", v, labels, hint="give a class index or name")
            v = int(v)
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ConvlensError(f"a class is an index or a name, got {v!r}")
        v = int(v)
        if v < 0 or (k is not None and v >= k):
            raise ConvlensError(f"class {v} does not exist: the model has {k} classes (0..{k - 1})"
                                if k is not None else f"class {v} does not exist")
        return v

    if isinstance(y, torch.Tensor) and y.dim() == 0:
        y = y.item()
    if isinstance(y, (torch.Tensor, np.ndarray, list, tuple)):
        vals = [one(v) for v in (y.tolist() if hasattr(y, "tolist") else y)]
        if len(vals) != n:
            raise ConvlensError(f"{len(vals)} classes for {n} images: give one, or one per image")
        return torch.tensor(vals, dtype=torch.long)
    return torch.full((n,), one(y), dtype=torch.long)


def _resolve(lens, labels: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
    """The labels checked against the model's output (or its prediction when None)."""
    if labels is None:
        return logits.detach().argmax(1)
    k = logits.shape[1]
    if int(labels.max()) >= k:
        raise ConvlensError(f"class {int(labels.max())} does not exist: the model gives {k} "
                            f"scores (0..{k - 1})")
    return labels.to(logits.device)


# -- the steps -----------------------------------------------------------------------------
def loss_grad(lens, u: torch.Tensor, labels: torch.Tensor | None, targeted: bool):
    """``(dJ/du, logits, labels)`` at pixels `u`: J is the summed cross-entropy (its negative
    for a targeted attack, so that ascending J descends toward the target)."""
    u = u.detach().requires_grad_(True)
    logits = lens(model_input(lens, u))
    labels = _resolve(lens, labels, logits)
    loss = F.cross_entropy(logits, labels, reduction="sum")
    (g,) = torch.autograd.grad(-loss if targeted else loss, u)
    return g, logits.detach(), labels


def image_seeds(seed: int, keys: Sequence[int]) -> list[int]:
    """One seed per image from the attack's `seed` and the image's key (its position in the
    batch, or its dataset index in a dataset pass), so its noise does not depend on the batch."""
    return [int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1)[0]) for k in keys]


def random_point(u: torch.Tensor, eps: float, norm: str, seeds: Sequence[int]) -> torch.Tensor:
    """A random point near `u`, clipped to [0, 1]: uniform in the L∞ ball (Madry et al.), or
    a normal direction at a uniform radius in [0, ε] for L2 (as torchattacks). Image ``i``'s
    noise comes from its own generator seeded with ``seeds[i]``: the same whatever the batch."""
    noise = []
    for s, ui in zip(seeds, u):
        g = torch.Generator().manual_seed(int(s))
        if norm == "linf":
            d = torch.rand(ui.shape, generator=g, dtype=torch.float64) * 2 - 1
            d = d * eps
        else:
            d = torch.randn(ui.shape, generator=g, dtype=torch.float64)
            d = d * (torch.rand((), generator=g, dtype=torch.float64) * eps / d.norm())
        noise.append(d.to(u.dtype))
    return (u + torch.stack(noise).to(u.device)).clamp(0, 1)


def pgd_pixels(lens, u: torch.Tensor, labels: torch.Tensor | None, eps: float, alpha: float,
               steps: int, norm: str = "linf", targeted: bool = False,
               start: torch.Tensor | None = None):
    """The PGD loop in pixel space: ``(adv, labels, logits at the first iterate)``.

    L∞: ``u' = clip_[0,1](u + clip_[-ε,ε](u_k + α sign(∇J) - u))``; L2: the step is
    ``α ∇J / ||∇J||`` and ``u_k - u`` is scaled back into the ε-ball. Without `start` the
    first iterate is `u` itself, so its logits are the clean ones.
    """
    adv = u if start is None else start
    first = None
    for k in range(steps):
        g, logits, labels = loss_grad(lens, adv, labels, targeted)
        if k == 0:
            first = logits
        if norm == "linf":
            adv = adv.detach() + alpha * g.sign()
            delta = torch.clamp(adv - u, min=-eps, max=eps)
        else:
            gn = g.flatten(1).norm(p=2, dim=1).view(-1, 1, 1, 1) + 1e-10
            adv = adv.detach() + alpha * (g / gn)
            delta = adv - u
            dn = delta.flatten(1).norm(p=2, dim=1)
            delta = delta * torch.minimum(eps / dn, torch.ones_like(dn)).view(-1, 1, 1, 1)
        adv = torch.clamp(u + delta, min=0, max=1).detach()
    return adv, labels, first


# -- the result ----------------------------------------------------------------------------
def examples_result(method: str, lens, xb: torch.Tensor, u: torch.Tensor, adv: torch.Tensor,
                    classes: torch.Tensor, targeted: bool, clean_logits: torch.Tensor | None,
                    params: dict, explain: str | None, evaluate: bool = True,
                    extra: dict | None = None) -> AdversarialExamples:
    """Evaluate the model on the adversarial images (and explain both) into a result."""
    x_adv = model_input(lens, adv)
    with preserved(lens), torch.no_grad():
        lens.eval()
        if clean_logits is None:
            clean_logits = lens(model_input(lens, u))
        pc = torch.softmax(clean_logits.float(), 1)
        adv_predicted = adv_confidence = adv_class_prob = None
        if evaluate:
            pa = torch.softmax(lens(x_adv).float(), 1)
            adv_confidence, adv_predicted = pa.max(1)
            adv_class_prob = pa.gather(1, classes.to(pa.device)[:, None])[:, 0]
    confidence, predicted = pc.max(1)
    sal_c = sal_a = None
    if explain is not None:
        from ..gradients.gradients import guided_backprop, saliency
        fn = {"saliency": saliency, "guided_backprop": guided_backprop}.get(explain)
        if fn is None:
            raise unknown("explain method", explain, ["saliency", "guided_backprop"])
        sal_c, sal_a = fn(lens, model_input(lens, u)).map, fn(lens, x_adv).map
    def cpu(t):
        return None if t is None else t.detach().cpu()
    return AdversarialExamples(
        method, cpu(u.clamp(0, 1)), cpu(adv), cpu(x_adv), cpu(classes), targeted, cpu(predicted),
        cpu(confidence), cpu(adv_predicted), cpu(adv_confidence), cpu(adv_class_prob),
        list(getattr(lens, "labels", None) or []), params, cpu(sal_c), cpu(sal_a), explain,
        {k: cpu(v) for k, v in (extra or {}).items()})


# -- the attacks ---------------------------------------------------------------------------
def fgsm(lens, x: torch.Tensor, y=None, eps: float = 8 / 255, targeted: bool = False,
         explain: str | None = None, evaluate: bool = True) -> AdversarialExamples:
    """The fast gradient sign method (Goodfellow, Shlens & Szegedy, "Explaining and Harnessing
    Adversarial Examples", ICLR 2015, https://arxiv.org/abs/1412.6572, §4).

    ``x_adv = clip_[0,1](x + ε sign(∇_x J(θ, x, y)))`` in pixel space, J the cross-entropy;
    with ``targeted=True``, ``x - ε sign(∇_x J(θ, x, t))``: one step toward class ``t = y``.

    Args:
        lens: a `Lens` (or a model taking pixels in [0, 1]).
        x: ``(N, C, H, W)`` normalised images (or one ``(C, H, W)``).
        y: the labels (a class index or name, or one per image); None: the model's prediction
            (untargeted only). With ``targeted=True``, the target classes.
        eps: the step in pixel units, in [0, 1] (e.g. 0.25 on MNIST in the paper).
        explain: ``"saliency"`` or ``"guided_backprop"``: also map x and x_adv.
        evaluate: run the model on x_adv for the result (False: images only, for speed).

    Example::

        res = fgsm(lens, x, labels, eps=0.1)
        res.success.float().mean()             # share of images whose prediction changed
    """
    lens = as_lens(lens, x)
    xb = check_input(lens, x)
    eps = check_eps(eps)
    labels = class_indices(lens, y, len(xb))
    if targeted and labels is None:
        raise ConvlensError("a targeted attack needs y: the class (or classes) to step toward")
    with attacking(lens):
        u = pixels(lens, xb)
        g, logits, labels = loss_grad(lens, u, labels, targeted)
        adv = torch.clamp(u + eps * g.sign(), min=0, max=1)
    params = {"eps": eps, "targeted": targeted, "norm": "linf"}
    return examples_result("fgsm", lens, xb, u, adv, labels, targeted, logits, params, explain,
                           evaluate)


def pgd(lens, x: torch.Tensor, y=None, eps: float = 8 / 255, alpha: float | None = None,
        steps: int = 10, random_start: bool = True, norm: str = "linf", targeted: bool = False,
        seed: int = 0, explain: str | None = None, evaluate: bool = True) -> AdversarialExamples:
    """Projected gradient descent: the iterative FGSM (basic iterative method, Kurakin,
    Goodfellow & Bengio 2016, https://arxiv.org/abs/1607.02533; with a random start, Madry et
    al. 2018, https://arxiv.org/abs/1706.06083).

    L∞: ``x_{k+1} = clip_[0,1](x + clip_[-ε,ε](x_k + α sign(∇J(x_k)) - x))``; L2 (``norm="l2"``):
    the step is ``α ∇J / ||∇J||_2`` and ``x_k - x`` is scaled back to norm ε. All in pixels.

    Args:
        x, y, eps, targeted, explain, evaluate: as `fgsm` (for L2, eps is the L2 radius).
        alpha: step size in pixel units (default ``2.5 ε / steps``, Madry et al.).
        steps: iterations. random_start: start at a uniform random point of the ε-ball
            (image ``i``'s noise seeded by ``(seed, i)``), else at x (the basic iterative
            method).

    Example::

        res = pgd(lens, x, labels, eps=0.03, steps=10, random_start=False)
    """
    lens = as_lens(lens, x)
    if norm not in NORMS:
        raise unknown("norm", str(norm), NORMS)
    xb = check_input(lens, x)
    eps = check_eps(eps, norm)
    if int(steps) < 1:
        raise ConvlensError(f"steps must be at least 1, got {steps}")
    alpha = 2.5 * eps / int(steps) if alpha is None else float(alpha)
    if not math.isfinite(alpha) or alpha < 0:
        raise ConvlensError(f"alpha must be at least 0, got {alpha:g}")
    labels = class_indices(lens, y, len(xb))
    if targeted and labels is None:
        raise ConvlensError("a targeted attack needs y: the class (or classes) to step toward")
    with attacking(lens):
        u = pixels(lens, xb)
        start = clean = None
        if random_start:  # the labels come from the clean images, before the noise
            with torch.no_grad():
                clean = lens(model_input(lens, u))
            labels = _resolve(lens, labels, clean)
            start = random_point(u, eps, norm, image_seeds(seed, range(len(u))))
        adv, labels, first = pgd_pixels(lens, u, labels, eps, alpha, int(steps), norm,
                                        targeted, start)
    params = {"eps": eps, "alpha": alpha, "steps": int(steps), "random_start": random_start,
              "norm": norm, "targeted": targeted, "seed": seed}
    return examples_result("pgd", lens, xb, u, adv, labels, targeted,
                           first if clean is None else clean, params, explain, evaluate)

