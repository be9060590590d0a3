"""Figures of fooling (METHODS.md §9): x | the change, amplified | x_adv with the model's answers;
saliency of x and of x_adv side by side; accuracy against ε; and per image, the input, the
changed image and the change as pictures. Matplotlib's `Figure` (never pyplot: no backend is
switched), from numpy arrays."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ...results import as_numpy


def _figure(**kw):
    from matplotlib.figure import Figure
    return Figure(**kw)


def _hwc(img: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` in [0, 1] to what imshow takes: ``(H, W)`` grey or ``(H, W, 3)``."""
    img = np.clip(np.asarray(img, dtype=np.float64), 0, 1)
    return img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)


def _answer(res, pred, prob, i: int) -> str:
    return f"{res.label(int(pred[i]))} ({float(prob[i]):.0%})"


def _panel(ax, img, title: str, colour: str = "black") -> None:
    grey = img.ndim == 2
    ax.imshow(img, cmap="gray" if grey else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(title, fontsize=9, color=colour)


def gallery_figure(res, n: int, path: str) -> None:
    """Rows: x with the clean answer | the change, amplified | x_adv with the new answer."""
    imgs, adv = as_numpy(res.images[:n]), as_numpy(res.adversarial[:n])
    r = adv - imgs
    m = float(np.abs(r).max()) or 1.0  # one scale for every row: the largest change shown
    grey = imgs.shape[1] == 1
    side = 2.3
    fig = _figure(figsize=(3 * side + 0.6, n * (side + 0.45) + 1.0), dpi=100,
                  layout="constrained")
    axes = fig.subplots(n, 3, squeeze=False)
    want = "target" if res.targeted else "label"
    for i in range(n):
        lab = res.label(int(res.classes[i]))
        _panel(axes[i, 0], _hwc(imgs[i]), f"x ({want} {lab})\nmodel: "
               + _answer(res, res.predicted, res.confidence, i))
        ax = axes[i, 1]
        if grey:
            im = ax.imshow(r[i, 0], cmap="RdBu_r", vmin=-m, vmax=m, interpolation="nearest")
        else:  # per channel: mid-grey is no change, full colour ±m
            ax.imshow(np.clip(0.5 + 0.5 * r[i].transpose(1, 2, 0) / m, 0, 1),
                      interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"change: L∞ {np.abs(r[i]).max():.3f}, L2 {np.linalg.norm(r[i]):.2f}",
                      fontsize=9)
        if res.adv_predicted is not None:
            ok = bool(res.success[i])
            title = "x_adv\nmodel: " + _answer(res, res.adv_predicted, res.adv_confidence, i)
            _panel(axes[i, 2], _hwc(adv[i]), title, "#b2182b" if ok else "black")
        else:
            _panel(axes[i, 2], _hwc(adv[i]), "x_adv")
    amp = 0.5 / m
    axes[0, 1].set_title(f"change, amplified ×{amp:.3g}", fontsize=9)
    if grey:
        cb = fig.colorbar(im, ax=axes[-1, 1], location="bottom", shrink=0.9, aspect=12)
        cb.set_label("change of pixel value (pixels in [0, 1])", fontsize=8)
        cb.ax.tick_params(labelsize=7)
    else:
        axes[-1, 1].set_title("mid-grey: no change; full colour: "
                              f"±{m:.3g} per channel", fontsize=7, y=-0.45)
    axes[0, 0].set_title("x (clean)", fontsize=9)
    axes[0, 2].set_title("x_adv (red: model fooled)", fontsize=9)
    fig.suptitle(_headline(res), fontsize=10)
    fig.savefig(path)


def _headline(res) -> str:
    p = res.params
    if res.kind == "fool":
        return (f"Szegedy et al.'s smallest change to reach the target with p ≥ "
                f"{p.get('confidence', 0.9):g} ({p.get('method')})")
    extra = (f", {p.get('steps')} steps of α = {p.get('alpha', 0):.3g}"
             if res.kind == "pgd" else "")
    return (f"{res.kind.upper()}{' (targeted)' if res.targeted else ''}, "
            f"ε = {p.get('eps', 0):g} ({p.get('norm', 'linf').replace('linf', 'L∞')}, "
            f"pixels in [0, 1]){extra}")


def saliency_figure(res, n: int, path: str) -> None:
    """Rows: x | its saliency | x_adv | its saliency, both maps on the row's shared scale."""
    imgs, adv = as_numpy(res.images[:n]), as_numpy(res.adversarial[:n])
    sc, sa = as_numpy(res.saliency_clean[:n]), as_numpy(res.saliency_adv[:n])
    side = 2.2
    fig = _figure(figsize=(4 * side + 1.2, n * (side + 0.4) + 0.8), dpi=100, layout="constrained")
    axes = fig.subplots(n, 4, squeeze=False)
    method = (res.explain or "saliency").replace("_", " ")
    for i in range(n):
        hi = float(max(sc[i].max(), sa[i].max())) or 1.0
        _panel(axes[i, 0], _hwc(imgs[i]), "x: " + _answer(res, res.predicted, res.confidence, i))
        axes[i, 1].imshow(sc[i], cmap="inferno", vmin=0, vmax=hi)
        _off(axes[i, 1], f"{method} of x")
        adv_answer = ("" if res.adv_predicted is None
                      else ": " + _answer(res, res.adv_predicted, res.adv_confidence, i))
        _panel(axes[i, 2], _hwc(adv[i]), "x_adv" + adv_answer)
        im = axes[i, 3].imshow(sa[i], cmap="inferno", vmin=0, vmax=hi)
        _off(axes[i, 3], f"{method} of x_adv")
        cb = fig.colorbar(im, ax=axes[i, 3], shrink=0.9)
        cb.set_label("max_c |dS/dx|", fontsize=7)
        cb.ax.tick_params(labelsize=7)
    fig.suptitle(f"{method} of the predicted class, before and after the change "
                 "(one scale per row)", fontsize=10)
    fig.savefig(path)


def _off(ax, label: str) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(label, fontsize=9)


def curve_figure(curves: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]], path: str,
                 title: str) -> None:
    """Accuracy (solid) and mean confidence of the prediction (dashed) against ε, one colour
    per curve ``(name, eps, accuracy, confidence)``."""
    import matplotlib

    fig = _figure(figsize=(6.0, 3.8), dpi=100)
    ax = fig.add_subplot()
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (name, eps, acc, conf) in enumerate(curves):
        col = colours[k % len(colours)]
        ax.plot(eps, acc, "o-", color=col, label=f"{name}: accuracy")
        ax.plot(eps, conf, "s--", color=col, alpha=0.7, label=f"{name}: mean confidence")
    ax.set_xlabel("ε (largest change of a pixel, pixels in [0, 1])")
    ax.set_ylabel("accuracy / confidence")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


def image_pictures(res, n: int) -> dict[str, np.ndarray]:
    """Per image (the first `n`): the input, the changed image and the change (grey images:
    red raises a pixel, blue lowers it; colour: mid-grey is no change), each change scaled by
    its own largest value, as uint8 pictures."""
    from ...draw import colormap, image_hwc

    imgs, adv = as_numpy(res.images[:n]), as_numpy(res.adversarial[:n])
    pics = {}
    for i in range(n):
        r = adv[i].astype(np.float64) - imgs[i]
        m = float(np.abs(r).max()) or 1.0
        pics[f"input_{i}"] = image_hwc(imgs[i])
        pics[f"adversarial_{i}"] = image_hwc(adv[i])
        pics[f"change_{i}"] = (colormap(r[0], "RdBu_r", lo=-m, hi=m) if r.shape[0] == 1
                               else image_hwc(np.clip(0.5 + 0.5 * r / m, 0, 1)))
    return pics
