"""Evaluating occluder positions for `convlens.techniques.occlusion`.

A *runner* maps a batch of occluder positions ``(ys, xs)`` to the logits of the occluded copies
(and the watched layer's total activation): `naive_runner` runs full forward passes,
`incremental_runner` the exact incremental engine (`convlens.incremental`), optionally with
Krypton's projective-field threshold ``tau``. `evaluate` turns runs into maps; `drill_down` is
Krypton's adaptive drill-down (a coarse grid, then the most sensitive fine positions), and
`ssim` scores an approximate map against the exact one.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from ...hooks import capture
from ...incremental import IncrementalEngine, channel_total
from ...results import as_numpy

Runner = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]


def evaluate(run: Runner, grid: list[tuple[int, int]], target: torch.Tensor, batch_size: int,
              stats: dict, count: bool = True) -> dict[str, torch.Tensor]:
    """Maps over `grid` positions (flat, in order): prob, logit, top class/prob, activation."""
    out: dict[str, list[torch.Tensor]] = {"prob": [], "logit": [], "top_class": [], "top_prob": []}
    acts = []
    for b in range(0, len(grid), batch_size):
        chunk = grid[b:b + batch_size]
        ys = torch.tensor([p[0] for p in chunk], dtype=torch.long)
        xs = torch.tensor([p[1] for p in chunk], dtype=torch.long)
        logits, act = run(ys, xs)
        if count:
            stats["forwards"] += len(chunk)
        p = torch.softmax(logits.double(), 1)
        out["prob"].append(p[:, target].float())
        out["logit"].append(logits[:, target])
        top_p, top_c = p.max(1)
        out["top_class"].append(top_c)
        out["top_prob"].append(top_p.float())
        if act is not None:
            acts.append(act)
    res = {key: torch.cat(v) for key, v in out.items()}
    if acts:
        res["activation"] = torch.cat(acts)
    return res


def naive_runner(lens, xk, fill_img, window, layer, ch) -> Runner:
    """Full forward passes of occluded copies (and the layer's activation via `capture`)."""
    model = lens.model
    wy, wx = window

    def run(ys: torch.Tensor, xs: torch.Tensor):
        xb = xk.expand(len(ys), -1, -1, -1).clone()
        for b, (y, x) in enumerate(zip(ys.tolist(), xs.tolist())):
            xb[b, :, y:y + wy, x:x + wx] = fill_img[0, :, y:y + wy, x:x + wx]
        if layer is None:
            return lens(xb), None
        with capture(model, layer) as cap:
            logits = lens(xb)
        return logits, channel_total(cap[layer], ch)
    return run


def incremental_runner(engine: IncrementalEngine, fill_img, window, ch,
                        tau: float | None = None) -> Runner:
    wy, wx = window
    rows, cols = torch.arange(wy), torch.arange(wx)
    fill_hwc = fill_img[0].permute(1, 2, 0)

    def run(ys: torch.Tensor, xs: torch.Tensor):
        dev = fill_img.device
        r = (ys[:, None] + rows).to(dev)
        c = (xs[:, None] + cols).to(dev)
        patch = fill_hwc[r[:, :, None], c[:, None, :]].permute(0, 3, 1, 2)  # (B, C, wy, wx)
        return engine.run(patch, ys.to(dev), xs.to(dev), tau=tau, channel=ch)
    return run


def drill_down(run: Runner, pos_y: list[int], pos_x: list[int], coarse: tuple[int, int],
                drill: float, target: torch.Tensor, clean_logits: torch.Tensor, batch_size: int,
                stats: dict) -> dict[str, torch.Tensor]:
    """Krypton's adaptive drill-down: a coarse grid (every `coarse`-th position, and the last),
    interpolated to the fine grid; then the `drill` fraction of the other fine positions with
    the largest interpolated change ``|p_clean - p|`` computed too. The rest stays
    interpolated (bilinear; the top class from the nearest coarse position)."""
    py, px = len(pos_y), len(pos_x)
    iy = sorted(set(range(0, py, coarse[0])) | {py - 1})
    ix = sorted(set(range(0, px, coarse[1])) | {px - 1})
    grid = [(pos_y[i], pos_x[j]) for i in iy for j in ix]
    m = evaluate(run, grid, target, batch_size, stats)
    m = {k: v.view(len(iy), len(ix)) for k, v in m.items()}
    my = interp_matrix(py, iy, 1).to(m["prob"].device)  # fine index -> coarse index
    mx = interp_matrix(px, ix, 1).to(m["prob"].device)
    full = {k: (my @ v.double() @ mx.T).to(v.dtype) for k, v in m.items()
            if k in ("prob", "logit", "top_prob", "activation")}
    ny = my.argmax(1)
    nx = mx.argmax(1)
    full["top_class"] = m["top_class"][ny][:, nx]
    known = torch.zeros(py, px, dtype=torch.bool)
    known[torch.tensor(iy)[:, None], torch.tensor(ix)[None, :]] = True
    for k in m:  # coarse positions keep their computed values (interpolation is exact there)
        full[k][torch.tensor(iy)[:, None], torch.tensor(ix)[None, :]] = m[k]
    p_clean = torch.softmax(clean_logits.double(), 0)[target].item()
    # "Most sensitive" = largest change either way (occluding a distractor can raise p).
    change = (p_clean - full["prob"].double().cpu()).abs().masked_fill(known, -math.inf).flatten()
    todo = int(round(drill * (py * px - int(known.sum()))))
    if todo > 0:
        pick = torch.topk(change, todo).indices.sort().values
        fine = [(pos_y[int(i) // px], pos_x[int(i) % px]) for i in pick]
        f = evaluate(run, fine, target, batch_size, stats)
        for k in full:
            full[k].view(-1)[pick.to(full[k].device)] = f[k].to(full[k].dtype)
    stats["approximate_positions"] = stats.get("approximate_positions", 0) + len(grid) + todo
    return full


def ssim(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """SSIM (Wang et al. 2004, scikit-image) of map `a` against reference map `b`, with the
    reference's range as data range; None for maps too small for a 3x3 window."""
    from skimage.metrics import structural_similarity

    a = as_numpy(a).astype(np.float64)
    b = as_numpy(b).astype(np.float64)
    side = min(a.shape)
    if side < 3:
        return None
    rng = float(b.max() - b.min())
    if rng == 0:
        return 1.0 if np.array_equal(a, b) else 0.0
    win = min(7, side if side % 2 else side - 1)
    return float(structural_similarity(a, b, data_range=rng, win_size=win))


def interp_matrix(n: int, starts: list[int], window: int) -> torch.Tensor:
    """``(n, P)``: linear interpolation from occluder centres to pixel centres, clamped."""
    centres = np.asarray(starts, dtype=np.float64) + (window - 1) / 2.0
    pix = np.arange(n, dtype=np.float64)
    eye = np.eye(len(starts))
    return torch.from_numpy(np.stack([np.interp(pix, centres, eye[j])
                                      for j in range(len(starts))], 1))


