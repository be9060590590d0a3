"""`fool`: the smallest change that makes the model answer a chosen class (Szegedy et al. 2014).

Szegedy, Zaremba, Sutskever, Bruna, Erhan, Goodfellow & Fergus, "Intriguing properties of
neural networks", ICLR 2014, https://arxiv.org/abs/1312.6199, §4.1: minimise
``c ||r|| + loss_f(x + r, l)`` subject to ``x + r ∈ [0, 1]^m`` with box-constrained L-BFGS,
searching over ``c``. Here the penalty is the squared L2 norm (smooth at r = 0, as Carlini &
Wagner 2017 use it), the loss the cross-entropy of the target, and the search keeps, for each
image, the smallest change (in L2) seen whose target probability reaches `confidence`:

* a larger ``c`` asks for a smaller change; a ``c`` whose solve reaches the target is raised
  (×10 until one fails, then the geometric middle of the bracket), one that fails is lowered;
* each solve starts from the best change found so far (or from the last iterate) and runs
  `steps` iterations of Adam (batched: Adam is element-wise, so images do not interact) or of
  scipy's L-BFGS-B with the box as bounds (the paper's optimiser; one image at a time);
* with Adam, images that no c brought to the target are searched once more with a step three
  times as large (a few hard image-target pairs wander at the default step).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import ConvlensError, unknown
from ...lens import as_lens
from .attacks import (
    FOOL_METHODS,
    AdversarialExamples,
    attacking,
    check_input,
    class_indices,
    examples_result,
    model_input,
    pixels,
)


def _objective(lens, u, r, target, c):
    """Per image: ``c ||r||² + CE(f(u + r), t)``, and the target probability."""
    logits = lens(model_input(lens, u + r))
    ce = F.cross_entropy(logits, target, reduction="none")
    l2sq = r.flatten(1).pow(2).sum(1)
    return c * l2sq + ce, torch.exp(-ce.detach()), l2sq.detach()


#: Adam's step for the second search of images that no c brought to the target, x `lr`
RETRY_STEP = 3


class _Search:
    """The per-image search over c, and the best change found so far."""

    def __init__(self, u: torch.Tensor, c0: float, confidence: float):
        n = len(u)
        self.c = torch.full((n,), float(c0), dtype=u.dtype, device=u.device)
        self.lo = torch.zeros(n, dtype=torch.float64)
        self.hi = torch.full((n,), math.inf, dtype=torch.float64)
        self.best = torch.zeros_like(u)
        self.best_l2 = torch.full((n,), math.inf, dtype=torch.float64)
        self.best_c = torch.full((n,), math.nan, dtype=torch.float64)
        self.confidence = confidence

    def see(self, r: torch.Tensor, p: torch.Tensor, l2sq: torch.Tensor, rows=None) -> torch.Tensor:
        """Record the iterates `r` of images `rows` whose target probability `p` reaches the
        confidence; returns which did."""
        rows = torch.arange(len(self.c)) if rows is None else torch.as_tensor(rows)
        ok = (p >= self.confidence).cpu()
        l2 = l2sq.double().sqrt().cpu()
        better = ok & (l2 < self.best_l2[rows])
        if better.any():
            idx = rows[better]
            self.best[idx.to(self.best.device)] = r.detach()[better.to(r.device)].to(
                self.best.dtype)
            self.best_l2[idx] = l2[better]
            self.best_c[idx] = self.c[idx.to(self.c.device)].double().cpu()
        return ok

    def next_c(self, reached: torch.Tensor, rows=None) -> None:
        """Raise c where the target was reached, lower it where not (bracket, then bisect);
        only for images `rows` (default all)."""
        rows = torch.arange(len(self.c)) if rows is None else torch.as_tensor(rows)
        c = self.c.double().cpu()[rows]
        lo = torch.where(reached, c, self.lo[rows])
        hi = torch.where(reached, self.hi[rows], c)
        up = torch.where(torch.isinf(hi), c * 10, (lo * hi).sqrt())
        down = torch.where(lo > 0, (lo * hi).sqrt(), c / 10)
        self.lo[rows], self.hi[rows] = lo, hi
        self.c[rows.to(self.c.device)] = torch.where(reached, up, down).to(self.c)

    @property
    def found(self) -> torch.Tensor:
        return torch.isfinite(self.best_l2)


def _adam(lens, u, target, search: _Search, steps: int, rounds: int, lr: float) -> torch.Tensor:
    r = torch.zeros_like(u)
    for _ in range(rounds):
        start = torch.where(search.found.to(u.device).view(-1, 1, 1, 1), search.best, r)
        rv = start.clone().requires_grad_(True)
        m, v = torch.zeros_like(u), torch.zeros_like(u)
        for k in range(1, steps + 1):
            obj, p, l2sq = _objective(lens, u, rv, target, search.c)
            search.see(rv, p, l2sq)  # any iterate that reaches the target is a candidate
            (g,) = torch.autograd.grad(obj.sum(), rv)
            with torch.no_grad():
                # Adam (Kingma & Ba 2015) written out: torch.optim's first use imports
                # torch._dynamo, seconds of start-up for a few lines of arithmetic
                m.mul_(0.9).add_(g, alpha=0.1)
                v.mul_(0.999).addcmul_(g, g, value=0.001)
                step = (m / (1 - 0.9 ** k)) / ((v / (1 - 0.999 ** k)).sqrt_().add_(1e-8))
                rv.sub_(lr * step)
                rv.copy_((u + rv).clamp(0, 1) - u)  # the box: u + r stays in [0, 1]
        with torch.no_grad():
            _, p, l2sq = _objective(lens, u, rv, target, search.c)
        # c moves on whether the solve's end point (the approximate minimiser for this c)
        # reaches the target, not whether some iterate on the way did
        reached = search.see(rv, p, l2sq)
        r = rv.detach()
        search.next_c(reached)
    return r


def _lbfgs(lens, u, target, search: _Search, steps: int, rounds: int) -> torch.Tensor:
    from scipy.optimize import Bounds, minimize

    last = torch.zeros_like(u)
    for i in range(len(u)):
        ui, ti = u[i:i + 1], target[i:i + 1]
        shape, dtype = ui.shape, ui.dtype
        flat = ui.detach().double().cpu().numpy().ravel()
        bounds = Bounds(-flat, 1.0 - flat)  # u + r in [0, 1]
        r0 = np.zeros_like(flat)
        for _ in range(rounds):
            ci = search.c[i:i + 1]

            def f(v):
                rv = torch.from_numpy(v).to(device=u.device, dtype=dtype).view(shape)
                rv.requires_grad_(True)
                obj, _, _ = _objective(lens, ui, rv, ti, ci)
                (g,) = torch.autograd.grad(obj.sum(), rv)
                return float(obj.detach().sum()), g.double().cpu().numpy().ravel()

            if search.found[i]:
                r0 = search.best[i].double().cpu().numpy().ravel()
            res = minimize(f, r0, jac=True, method="L-BFGS-B", bounds=bounds,
                           options={"maxiter": steps})
            rv = torch.from_numpy(np.clip(res.x, bounds.lb, bounds.ub)).to(
                u.device, dtype).view(shape)
            with torch.no_grad():
                _, p, l2sq = _objective(lens, ui, rv, ti, ci)
            ok = search.see(rv, p, l2sq, rows=[i])
            search.next_c(ok, rows=[i])
            r0 = res.x
            last[i] = rv[0]
    return last


def fool(lens, x: torch.Tensor, target, confidence: float = 0.9, method: str = "adam",
         steps: int = 50, search: int = 6, c: float = 1.0, lr: float = 0.01,
         explain: str | None = None) -> AdversarialExamples:
    """The smallest change ``r`` (in L2) that makes the model answer `target` with probability
    at least `confidence` (Szegedy et al. 2014, https://arxiv.org/abs/1312.6199, §4.1).

    Minimises ``c ||r||_2² + CE(f(x + r), target)`` over ``x + r ∈ [0, 1]`` (pixels), for a
    sequence of ``c`` found by a per-image bracket-and-bisect search (see the module doc).

    Args:
        lens: a `Lens` (or a model taking pixels in [0, 1]).
        x: ``(N, C, H, W)`` normalised images (or one ``(C, H, W)``).
        target: a class index or name, or one per image.
        confidence: the target probability to reach, in (0, 1).
        method: ``"adam"`` (batched, default) or ``"lbfgs"`` (scipy L-BFGS-B, the paper's).
        steps: optimiser iterations per value of c. search: values of c tried.
        c: the first c. lr: Adam's step (pixel units); images that no c brought to the
            target are searched once more with a step 3 times as large (on the AlexNet-shaped
            stamps-net shipped before, 2 of 100 image-target pairs needed it).
        explain: ``"saliency"`` or ``"guided_backprop"``: also map x and x_adv.

    Returns an `AdversarialExamples` (kind ``"fool"``, targeted) with ``extra["reached"]``
    (the target reached with the confidence) and ``extra["c"]`` (the c of the kept change);
    an image that never reached the target keeps its last iterate.

    Example::

        res = fool(lens, x, target="cat", confidence=0.9)
        res.l2, res.linf, res.extra["reached"]
    """
    lens = as_lens(lens, x)
    if method not in FOOL_METHODS:
        raise unknown("method", str(method), FOOL_METHODS)
    xb = check_input(lens, x)
    try:
        confidence = float(confidence)
    except (TypeError, ValueError):
        raise ConvlensError(f"confidence must be a number, got {confidence!r}") from None
    if not 0 < confidence < 1:
        raise ConvlensError(f"confidence must lie in (0, 1), got {confidence:g}")
    if int(steps) < 1 or int(search) < 1:
        raise ConvlensError("steps and search must be at least 1")
    if not (c > 0 and lr > 0):
        raise ConvlensError("c and lr must be positive")
    if target is None:
        raise ConvlensError("fool needs a target class (an index or a name)")
    labels = class_indices(lens, target, len(xb))
    with attacking(lens):
        u = pixels(lens, xb).clamp(0, 1)  # the box holds the start too
        with torch.no_grad():
            clean = lens(model_input(lens, u))
        if int(labels.max()) >= clean.shape[1]:
            raise ConvlensError(f"class {int(labels.max())} does not exist: the model gives "
                                f"{clean.shape[1]} scores")
        t = labels.to(u.device)
        s = _Search(u, c, confidence)
        # an image already answered as the target with the confidence needs no change
        s.see(torch.zeros_like(u), torch.softmax(clean.float(), 1).gather(1, t[:, None])[:, 0],
              torch.zeros(len(u), device=u.device))
        s.best_c[s.found] = math.nan  # no change needed: no c was used
        if method == "adam":
            last = _adam(lens, u, t, s, int(steps), int(search), float(lr))
            miss = torch.nonzero(~s.found).flatten()
            if len(miss):  # hard pairs: the whole search once more, with larger steps
                rows = miss.to(u.device)
                s2 = _Search(u[rows], c, confidence)
                last[rows] = _adam(lens, u[rows], t[rows], s2, int(steps), int(search),
                                   RETRY_STEP * float(lr))
                s.best[rows], s.best_l2[miss], s.best_c[miss] = s2.best, s2.best_l2, s2.best_c
        else:
            last = _lbfgs(lens, u, t, s, int(steps), int(search))
        found = s.found.to(u.device).view(-1, 1, 1, 1)
        adv = (u + torch.where(found, s.best, last)).clamp(0, 1).detach()
    params = {"target": [int(v) for v in labels], "confidence": confidence, "method": method,
              "steps": int(steps), "search": int(search), "c0": float(c), "lr": float(lr),
              "retry_lr": RETRY_STEP * float(lr), "penalty": "c * ||r||_2^2"}
    res = examples_result("fool", lens, xb, u, adv, labels, True, clean, params, explain,
                          extra={"reached": s.found.clone(), "c": s.best_c.float()})
    # the kept change must be what the search saw: confirm on the final images
    res.extra["reached"] &= (res.adv_class_prob >= confidence) & (res.adv_predicted == res.classes)
    return res
