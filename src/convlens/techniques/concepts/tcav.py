"""Testing with concept activation vectors (Kim, Wattenberg, Gilmer, Cai, Wexler, Viegas &
Sayres 2018, "Interpretability Beyond Feature Attribution: Quantitative Testing with Concept
Activation Vectors (TCAV)", ICML, https://arxiv.org/abs/1711.11279; METHODS.md, "TCAV").

* `fit_cav`: the CAV ``v_C`` of a concept at a layer is the unit normal of a linear classifier
  (logistic regression) separating the layer's activations of the concept's examples from
  those of random images, pointing towards the concept.
* `layer_gradients`: ``grad h_{l,k}(f_l(x))``, each image's class-k score differentiated with
  respect to the layer's output, flattened.
* `tcav_score`: the directional derivatives ``S = grad . v_C`` and the TCAV score, the share
  of class-k inputs with ``S > 0`` (Captum's ``sign_count``; its ``magnitude`` too).
* `significance`: the concept's scores over R random counterpart sets against the scores of
  random-vs-random CAVs, a two-sided t-test, significant below ``alpha / tests`` (Bonferroni).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...errors import ConvlensError
from ...hooks import capture, model_of, preserved


@dataclass
class Cav:
    """``vector (D,)`` unit norm, towards the concept; ``accuracy`` on held-out activations
    (a CAV near 0.5 does not separate the concept); ``layer``."""

    vector: torch.Tensor
    accuracy: float
    layer: str = ""


def fit_cav(concept: torch.Tensor, random: torch.Tensor, seed: int = 0, test_share: float = 0.33,
            layer: str = "", C: float = 1.0) -> Cav:
    """Logistic regression (scikit-learn, L2, ``C``, solved to a 1e-6 gradient tolerance) on
    ``concept (n, ...)`` (label 1) against ``random (m, ...)`` (label 0), activations flattened
    (solved in the examples' span where they are fewer than the features: `_row_space`); the
    accuracy on a seeded held-out share `test_share` (the paper keeps CAVs that separate),
    then refitted on all. Where the two sides cannot be told apart at all (identical
    activations) the vector is 0 (every directional derivative 0: a score of 0 that the t-test
    will not call significant)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    a = concept.detach().reshape(len(concept), -1).double().cpu().numpy()
    b = random.detach().reshape(len(random), -1).double().cpu().numpy()
    if len(a) < 2 or len(b) < 2 or a.shape[1] != b.shape[1]:
        raise ConvlensError(f"a CAV needs at least 2 examples on each side with the same "
                            f"features, got {a.shape} and {b.shape}")
    x = np.concatenate([a, b])
    y = np.concatenate([np.ones(len(a)), np.zeros(len(b))])
    x, basis = _row_space(x)
    acc = float("nan")
    if test_share > 0 and len(x) >= 6:
        xt, xv, yt, yv = train_test_split(x, y, test_size=test_share, random_state=seed,
                                          stratify=y)
        acc = float(LogisticRegression(C=C, max_iter=2000, tol=1e-6).fit(xt, yt).score(xv, yv))
    w = LogisticRegression(C=C, max_iter=2000, tol=1e-6).fit(x, y).coef_[0]
    if basis is not None:
        w = basis @ w
    norm = np.linalg.norm(w)
    if norm == 0:  # identical activations (a dead layer): no direction, every S is 0
        return Cav(torch.zeros(len(w), dtype=torch.float64), float("nan"), layer)
    return Cav(torch.from_numpy(w / norm), acc, layer)


def _row_space(x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``(z, P)`` with ``z = x V`` the examples' coordinates in an orthonormal basis ``V`` of
    the rows' span and ``P = x^T U S^-1`` mapping a weight vector on them back (``V w``), where
    the examples are fewer than the features (a conv layer's maps: D in the tens of
    thousands, n in the hundreds); else ``(x, None)``.

    The same fit, n-dimensional: L2 logistic regression's gradient in ``w`` is
    ``X^T r + w / C``, so its optimum lies in the span of the rows (of any subset of them, the
    held-out split's too); on that span ``||w|| = ||V^T w||`` and ``x w = z (V^T w)``: the
    objective is the same function of ``V^T w``, whose optimum mapped back is the full fit's
    (solved to a 1e-6 gradient tolerance, cheap in n dimensions: scikit-learn's default
    1e-4 left CAVs 2e-3 off in 1 - cosine on a test's data). ``V`` from the Gram matrix
    ``x x^T = U S^2 U^T`` (one n^2 D product); directions with singular values below 1e-6 of
    the largest are dropped (below the float32 activations' own precision)."""
    n, d = x.shape
    if d <= n:
        return x, None
    lam, u = np.linalg.eigh(x @ x.T)
    keep = lam > lam.max() * 1e-12
    if not keep.any():  # every example zero: nothing to fit in any basis
        return x, None
    s = np.sqrt(lam[keep])
    u = u[:, keep]
    return u * s, x.T @ (u / s)


def layer_gradients(lens, x: torch.Tensor, layer: str, targets) -> torch.Tensor:
    """``(N, D)``: each image's target score differentiated with respect to `layer`'s output,
    flattened; the model in eval mode, left as found."""
    t = torch.as_tensor(targets).long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(len(x))
    with preserved(model_of(lens)) as model:
        model.eval()
        with torch.enable_grad(), capture(lens, [layer], grads=True) as cap:
            xi = x.detach().clone().requires_grad_(True)
            out = lens(xi)
            out.gather(1, t.to(out.device)[:, None]).sum().backward()
            g = cap.grad(layer)
    return g.detach().reshape(len(x), -1).double().cpu()


def tcav_score(grads: torch.Tensor, cav) -> dict:
    """``S = grads (N, D) . v``: ``{"sign_count": share with S > 0, "magnitude":
    sum(|S| [S > 0]) / sum(|S|), "derivatives": S}``."""
    v = cav.vector if isinstance(cav, Cav) else torch.as_tensor(cav)
    s = grads.double() @ v.double().reshape(-1)
    total = s.abs().sum()
    mag = float((s.clamp_min(0)).sum() / total) if total > 0 else float("nan")
    return {"sign_count": float((s > 0).double().mean()), "magnitude": mag, "derivatives": s}


def significance(concept_scores, random_scores, alpha: float = 0.05, tests: int = 1) -> dict:
    """Two-sided t-test (Welch's not: the paper's ``ttest_ind``) of the concept's TCAV scores
    over random counterpart sets against random-vs-random scores; significant when
    ``p < alpha / tests`` (Bonferroni over the concepts tested)."""
    from scipy.stats import ttest_ind

    a = np.asarray(concept_scores, dtype=float)
    b = np.asarray(random_scores, dtype=float)
    if len(a) < 2 or len(b) < 2:
        raise ConvlensError("the t-test needs at least 2 runs on each side")
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        p = 1.0 if a[0] == b[0] else 0.0
    else:
        import warnings

        with warnings.catch_warnings():  # near-constant scores (all 1.0): scipy's precision
            warnings.simplefilter("ignore", RuntimeWarning)  # note, not an error
            p = float(ttest_ind(a, b).pvalue)
    return {"p": p, "significant": bool(p < alpha / max(1, tests)), "mean": float(a.mean()),
            "std": float(a.std(ddof=1)), "random_mean": float(b.mean())}
