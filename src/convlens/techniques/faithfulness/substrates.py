"""What removed pixels become: ROAD's noisy linear imputation and RISE's blurred image.

Both work on one normalised image ``(C, H, W)``; `metrics` builds the perturbed batches.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

#: ROAD's neighbours (Rong et al. 2022, §4.2, and the authors' ``road/imputations.py``):
#: ``(dy, dx, weight)``, 1/6 for the 4 direct and 1/12 for the 4 diagonal neighbours
NEIGHBOURS = ((1, 1, 1 / 12), (0, 1, 1 / 6), (-1, 1, 1 / 12), (1, -1, 1 / 12), (0, -1, 1 / 6),
              (-1, -1, 1 / 12), (1, 0, 1 / 6), (-1, 0, 1 / 6))


def linear_imputation(image: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """ROAD's linear imputation without its noise: every removed pixel equals the weighted mean
    of its neighbours inside the image (removed ones with their imputed values), per channel.

    ``image (C, H, W)``, ``removed (H, W)`` bool -> ``(C, H, W)`` (kept pixels unchanged).
    For removed pixel ``j`` with in-image neighbours ``n`` of weight ``w_n`` (`NEIGHBOURS`):
    ``(sum_n w_n) v_j - sum_{n removed} w_n v_n = sum_{n kept} w_n x_n``: one sparse system per
    image, shared by its channels (a right-hand side each), solved exactly by sparse LU
    (SuperLU, as the authors' and Quantus's ``spsolve``). The matrix is the authors' negated;
    it is a weighted graph Laplacian plus the weights to kept neighbours: symmetric and
    positive definite while one pixel is kept, so it is factorised in SuperLU's symmetric
    mode (minimum-degree ordering of ``A + A^T``, diagonal pivots: 1.4-1.7x faster than
    ``spsolve``'s column ordering on stamps-net's maps at 96 px, same values to float
    rounding).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import splu

    c, h, w = image.shape
    gone = removed.reshape(-1).cpu().numpy().astype(bool)
    unknown = np.flatnonzero(gone)
    n = len(unknown)
    if n == 0:
        return image.clone()
    flat = image.reshape(c, -1).detach().cpu().double().numpy()
    var = np.full(h * w, -1, dtype=np.int64)
    var[unknown] = np.arange(n)
    yy, xx = unknown // w, unknown % w
    rows, cols, vals = [np.arange(n)], [np.arange(n)], []
    diag = np.zeros(n)
    rhs = np.zeros((n, c))
    for dy, dx, wt in NEIGHBOURS:
        ny, nx = yy + dy, xx + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        j = np.flatnonzero(inside)
        nb = ny[inside] * w + nx[inside]
        diag[j] += wt
        lost = gone[nb]
        rows.append(j[lost])
        cols.append(var[nb[lost]])
        vals.append(np.full(int(lost.sum()), -wt))
        np.add.at(rhs, j[~lost], wt * flat[:, nb[~lost]].T)
    vals.insert(0, diag)
    a = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                   shape=(n, n)).tocsc()
    lu = splu(a, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
              options={"SymmetricMode": True})
    sol = np.asarray(lu.solve(rhs)).reshape(n, c)
    out = flat.copy()
    out[:, unknown] = sol.T
    return torch.from_numpy(out).to(image).reshape(c, h, w)


def noisy_linear_imputation(image: torch.Tensor, removed: torch.Tensor, noise: torch.Tensor,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """`linear_imputation` plus Gaussian noise of std ``noise (C,)`` (per channel, in the
    image's units) on every removed value: ROAD's NoisyLinearImputer."""
    out = linear_imputation(image, removed)
    gone = removed.to(torch.bool)
    if bool((noise > 0).any()) and bool(gone.any()):
        eps = torch.randn((image.shape[0], int(gone.sum())), generator=generator,
                          dtype=torch.float64)
        vals = out[:, gone].double() + eps * noise.double()[:, None].cpu()
        out[:, gone] = vals.to(out)
    return out


def rise_kernel(size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """RISE's blur kernel ``(size, size)`` as the authors build it (``evaluation.py``,
    ``gkern``): a unit impulse at the centre smoothed by ``scipy.ndimage.gaussian_filter``
    (sigma, its default mode "reflect", so the tails beyond the window fold back and the
    kernel sums to 1). For ``size >= 8 sigma + 1`` it is the sampled Gaussian."""
    from scipy.ndimage import gaussian_filter

    delta = np.zeros((size, size))
    delta[size // 2, size // 2] = 1.0
    return torch.from_numpy(gaussian_filter(delta, sigma))


def rise_blur(x: torch.Tensor, size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """``x (N, C, H, W)`` (normalised) blurred channel by channel with `rise_kernel`, zero
    padding of ``size // 2`` (the authors' ``conv2d(x, kern, padding=klen // 2)`` on the
    normalised image: the border fades towards the data mean)."""
    k = rise_kernel(size, sigma).to(x)
    c = x.shape[1]
    weight = k.expand(c, 1, size, size).contiguous()
    return F.conv2d(x, weight, padding=size // 2, groups=c)
