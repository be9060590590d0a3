"""The statistics of accuracy by attribute (METHODS.md §8): bins, bootstrap intervals and a
logistic regression with Wald intervals. numpy, scipy and pandas only (no torch).

- `make_bins`: numeric values into bins by quantiles (a value that holds at least 1/N of the
  items gets a bin of its own, so 75 % zeros do not swallow the first quantiles), into one bin
  per value when there are at most N distinct values, or by given edges; categories by value.
- `accuracy_interval`: the mean of 0/1 outcomes and its bootstrap interval
  (`scipy.stats.bootstrap`); where every outcome is the same the bootstrap distribution is a
  single point, so the Wilson score interval is given instead (and said so).
- `logistic_regression`: Newton's method (IRLS) for ``P(y = 1) = σ(X β)``, standard errors
  from the inverse Fisher information ``(Xᵀ W X)⁻¹``, ``W = diag(μ (1 - μ))``, and Wald
  intervals ``β ± z se``.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import linalg, special, stats

from ...errors import ConvlensError


@dataclass
class Bin:
    """One bin: a single value (``value``), or the range ``[lo, hi)`` (``hi`` closed for the
    last bin)."""

    label: str
    lo: float | None = None
    hi: float | None = None
    value: object = None


def fmt(v: float) -> str:
    """A bin edge for a label: 3 significant digits, integers without a point."""
    v = float(v)
    return str(int(v)) if v == int(v) and abs(v) < 1e9 else f"{v:.3g}"


def is_numeric(values: np.ndarray) -> bool:
    return values.dtype.kind in "iuf"


def make_bins(values: np.ndarray, bins: int | Sequence[float] = 5,
              max_levels: int = 20) -> tuple[list[Bin], np.ndarray, str]:
    """Bins for `values` (missing ones: NaN or None) and each value's bin (-1: none).

    Returns ``(bins, codes, kind)``, kind ``"categorical"`` (one bin per value, in sorted
    order), ``"discrete"`` (numbers with at most `bins` distinct values: one bin each),
    ``"quantile"`` or ``"edges"``.

    Example::

        bins, codes, kind = make_bins(np.random.rand(1000), 4)   # 4 bins of 250
    """
    values = np.asarray(values)
    if values.dtype.kind == "b":
        values = values.astype(object)
    codes = np.full(len(values), -1, dtype=np.int64)
    if not is_numeric(values):
        present = np.array([v is not None and not (isinstance(v, float) and np.isnan(v))
                            for v in values], dtype=bool)
        levels = sorted({v for v in values[present]}, key=lambda v: (str(type(v)), v))
        if len(levels) > max_levels:
            raise ConvlensError(f"{len(levels)} distinct values (more than {max_levels}): "
                                "not an attribute to bin by value")
        lookup = {v: k for k, v in enumerate(levels)}
        codes[present] = [lookup[v] for v in values[present]]
        return [Bin(str(v), value=v) for v in levels], codes, "categorical"
    x = values.astype(np.float64)
    ok = np.isfinite(x)
    if not np.isscalar(bins) and not isinstance(bins, (int, np.integer)):
        edges = check_edges(bins)
        out = [Bin(f"{fmt(a)}–{fmt(b)}", float(a), float(b)) for a, b in zip(edges[:-1], edges[1:])]
        inside = ok & (x >= edges[0]) & (x <= edges[-1])
        codes[inside] = np.clip(np.searchsorted(edges, x[inside], side="right") - 1, 0,
                                len(out) - 1)
        return out, codes, "edges"
    n_bins = int(bins)
    if n_bins < 1:
        raise ConvlensError(f"bins must be at least 1, got {n_bins}")
    distinct, counts = np.unique(x[ok], return_counts=True)
    if len(distinct) <= n_bins:
        lookup = {v: k for k, v in enumerate(distinct)}
        codes[ok] = [lookup[v] for v in x[ok]]
        return [Bin(fmt(v), float(v), float(v), float(v)) for v in distinct], codes, "discrete"
    # values holding at least 1/N of the items get their own bin; the rest by quantiles
    atoms = distinct[counts >= ok.sum() / n_bins]
    rest = ok & ~np.isin(x, atoms)
    k = max(1, n_bins - len(atoms))
    edges = (np.unique(np.quantile(x[rest], np.linspace(0, 1, k + 1))) if rest.any()
             else np.array([]))
    parts: list[tuple[float, int, Bin, np.ndarray]] = []
    for a in atoms:
        parts.append((float(a), 0, Bin(f"= {fmt(a)}", float(a), float(a), float(a)), ok & (x == a)))
    if len(edges) == 1:
        parts.append((float(edges[0]), 1, Bin(fmt(edges[0]), float(edges[0]), float(edges[0])),
                      rest))
    elif len(edges) > 1:
        j = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
        for b in range(len(edges) - 1):
            parts.append((float(edges[b]), 1, Bin(f"{fmt(edges[b])}–{fmt(edges[b + 1])}",
                                                  float(edges[b]), float(edges[b + 1])),
                          rest & (j == b)))
    parts.sort(key=lambda p: (p[0], p[1]))
    out = []
    for p in parts:
        if p[3].any():
            codes[p[3]] = len(out)
            out.append(p[2])
    return out, codes, "quantile"


def check_edges(bins) -> np.ndarray:
    """Bin edges as an increasing float array, or a one-line error."""
    try:
        edges = np.asarray(list(bins), dtype=np.float64)
    except (TypeError, ValueError):
        edges = np.zeros(0)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0) or \
            not np.all(np.isfinite(edges)):
        raise ConvlensError(f"bin edges must be at least 2 increasing numbers, got {bins!r}")
    return edges


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion k/n."""
    if n == 0:
        return float("nan"), float("nan")
    z = stats.norm.ppf(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if k == 0 else lo), (1.0 if k == n else hi)  # exact ends, no rounding


def accuracy_interval(outcomes: np.ndarray, level: float = 0.95, n_resamples: int = 1000,
                      method: str = "percentile", rng=None,
                      counts: tuple[int, int] | None = None) -> tuple[float, float, float, str]:
    """``(mean, lo, hi, how)`` of 0/1 outcomes (or of per-class accuracies).

    The interval is `scipy.stats.bootstrap`'s (`method`: ``"percentile"``, ``"basic"`` or
    ``"BCa"``). Where every outcome is 0 or every one is 1 the bootstrap collapses to a point,
    so the Wilson score interval of ``counts = (right, items)`` (default: the outcomes
    themselves) is given instead (``how = "wilson"``); with fewer than 2 outcomes, none.
    """
    x = np.asarray(outcomes, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan"), "none"
    m = float(x.mean())
    if np.all(x == x[0]) and x[0] in (0.0, 1.0):
        k, n = counts if counts is not None else (int(x.sum()), len(x))
        lo, hi = wilson(int(k), int(n), level)
        return m, lo, hi, "wilson"
    if len(x) < 2:
        return m, float("nan"), float("nan"), "none"
    if np.all(x == x[0]):
        return m, m, m, "bootstrap"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about degenerate BCa estimates
        res = stats.bootstrap((x,), np.mean, n_resamples=n_resamples, confidence_level=level,
                              method=method, vectorized=True, rng=rng,
                              batch=max(1, 2_000_000 // len(x)))
    ci = res.confidence_interval
    return m, float(ci.low), float(ci.high), "bootstrap"


# ------------------------------------------------------------------------------------------
# logistic regression
# ------------------------------------------------------------------------------------------
@dataclass
class Logit:
    """A fitted logistic regression: coefficients, covariance, and how the fit went."""

    coef: np.ndarray        # (p,)
    cov: np.ndarray         # (p, p) inverse Fisher information at the estimate
    converged: bool
    iterations: int
    loglik: float

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.cov), 0, None))

    def intervals(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        z = stats.norm.ppf(0.5 + level / 2)
        return self.coef - z * self.se, self.coef + z * self.se

    @property
    def z(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.coef / self.se

    @property
    def p(self) -> np.ndarray:
        return 2 * stats.norm.sf(np.abs(self.z))


def logistic_regression(X: np.ndarray, y: np.ndarray, max_iter: int = 100,
                        tol: float = 1e-10) -> Logit:
    """Maximum-likelihood logistic regression by Newton's method (IRLS).

    ``log L(β) = Σ_i y_i x_iᵀβ - log(1 + exp(x_iᵀβ))``; each step solves
    ``(Xᵀ W X) Δ = Xᵀ (y - μ)``, ``μ = σ(X β)``, ``W = diag(μ (1 - μ))``; the covariance of
    the estimate is ``(Xᵀ W X)⁻¹`` (the inverse Fisher information). Include a column of ones
    for an intercept. Step halving keeps the likelihood rising; the fit stops when the largest
    step is below `tol`. Separated data (a column that predicts y perfectly) does not converge:
    ``converged`` is then False and the coefficients run away.

    Args:
        X: ``(n, p)`` design matrix of full column rank. y: ``(n,)`` 0/1 outcomes.

    Example::

        fit = logistic_regression(np.c_[np.ones(n), x], y)
        fit.coef, fit.se, fit.intervals(0.95)
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)

    def loglik(b):
        eta = X @ b
        return float(np.sum(y * eta - np.logaddexp(0.0, eta)))

    beta = np.zeros(X.shape[1])
    ll = loglik(beta)
    converged, it = False, 0
    info = np.eye(X.shape[1])
    for it in range(1, max_iter + 1):
        mu = special.expit(X @ beta)
        w = mu * (1 - mu)
        info = X.T @ (X * w[:, None])
        grad = X.T @ (y - mu)
        try:
            with warnings.catch_warnings():  # ill-conditioned near separation: flagged below
                warnings.simplefilter("ignore", linalg.LinAlgWarning)
                step = linalg.solve(info, grad, assume_a="pos")
        except (linalg.LinAlgError, ValueError):
            step = linalg.lstsq(info, grad)[0]
        t, improved = 1.0, False
        while t > 1e-9:  # step halving: never let the likelihood fall
            new = loglik(beta + t * step)
            if new >= ll - 1e-12:
                improved = True
                break
            t /= 2
        if not improved:  # no step raises the likelihood: at the optimum up to rounding
            converged = True
            break
        beta, ll = beta + t * step, new
        if np.max(np.abs(t * step)) < tol:
            converged = True
            break
    mu = special.expit(X @ beta)
    info = X.T @ (X * (mu * (1 - mu))[:, None])
    try:
        with warnings.catch_warnings():  # near separation: flagged by `converged`
            warnings.simplefilter("ignore", linalg.LinAlgWarning)
            cov = linalg.inv(info)
    except (linalg.LinAlgError, ValueError):
        cov = np.full_like(info, np.nan)
    if np.max(np.abs(beta), initial=0) > 30:  # quasi-separation: the fit runs away
        converged = False
    return Logit(beta, cov, converged, it, ll)


def independent_columns(X: np.ndarray, tol: float = 1e-8) -> np.ndarray:
    """Indices of linearly independent columns of X, kept greedily left to right: a column is
    dropped when the ones kept before it explain it (relative residual below `tol`)."""
    keep: list[int] = []
    for j in range(X.shape[1]):
        col = X[:, j]
        norm = np.linalg.norm(col)
        if norm == 0:
            continue
        if keep:
            coef = np.linalg.lstsq(X[:, keep], col, rcond=None)[0]
            if np.linalg.norm(col - X[:, keep] @ coef) <= tol * norm:
                continue
        keep.append(j)
    return np.array(keep, dtype=np.int64)
