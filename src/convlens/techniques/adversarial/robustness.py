"""`robustness`: accuracy and confidence against ε over a dataset of any size (METHODS.md §9).

A reducer of the dataset pass (`convlens.engine`): for each batch it attacks every labelled
image at each ε (FGSM or PGD, `convlens.techniques.adversarial`) and adds up, per ε, the images,
the correct answers and the softmax probabilities. All are sums, so `merge` is exact and the
numbers do not depend on the batch size, the order or the engine; the pass checkpoints and
resumes like `scan`, and runs on Ray (``engine="ray"``).

Goodfellow et al. 2015 report, for FGSM on MNIST at ε = 0.25, the *error rate* and the *mean
confidence on the misclassified* images: both are in the table (``error_rate``,
``mean_confidence_wrong``), beside the accuracy and the mean confidence of every answer.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from ...data.labels import LabelMap, align_labels, warn_if_differ
from ...engine import Reducer, item_order, pass_checkpoint, run_pass
from ...engine.settings import RunSettings, as_run
from ...errors import ConvlensError, unknown
from ...lens import lens_and_data
from .attacks import (
    NORMS,
    attacking,
    check_eps,
    image_seeds,
    loss_grad,
    model_input,
    pgd_pixels,
    pixels,
    random_point,
)
from .results import AdversarialExamples, RobustnessResult

ATTACKS = ("fgsm", "pgd")
ENGINES = ("local", "ray")
WORK = ".convlens-robustness"  # the checkpoint's folder inside `out`
_SUMS = ("correct", "confidence", "confidence_wrong", "p_true")


class Robustness(Reducer):
    """Per ε: images, correct answers, and sums of p(answer), p(answer) over the wrong ones and
    p(true label), on the adversarial images of each labelled item (unlabelled ones, and items
    whose class the model does not have, are counted apart). Attacks are untargeted, against
    the item's label, mapped to the model's classes by `label_map` (`convlens.data.labels`).

    The reducer runs the model itself: the engine hands it the model (`attach`) before a pass.
    PGD's random start is seeded per item by ``(seed, dataset index)``.
    """

    layers: list[str] = []

    def __init__(self, eps: Sequence[float], attack: str = "fgsm", steps: int = 10,
                 alpha: float | None = None, random_start: bool = True, norm: str = "linf",
                 seed: int = 0, label_map: LabelMap | None = None):
        self.eps = [float(e) for e in eps]
        self.label_map = label_map  # data class -> model class (None: the same indices)
        self.attack, self.steps, self.alpha = attack, int(steps), alpha
        self.random_start, self.norm, self.seed = bool(random_start), norm, int(seed)
        self.n = 0
        self.unlabelled = 0
        e = len(self.eps)
        self.correct = torch.zeros(e, dtype=torch.long)
        self.confidence = torch.zeros(e, dtype=torch.float64)
        self.confidence_wrong = torch.zeros(e, dtype=torch.float64)
        self.p_true = torch.zeros(e, dtype=torch.float64)
        self._lens = None

    def config(self) -> dict[str, Any]:
        return {"eps": self.eps, "attack": self.attack, "steps": self.steps, "alpha": self.alpha,
                "random_start": self.random_start, "norm": self.norm, "seed": self.seed}

    def spawn(self) -> "Robustness":
        return Robustness(**self.config(), label_map=self.label_map)

    def attach(self, lens) -> None:
        self._lens = lens

    def __getstate__(self):  # the model travels apart (Ray ships it once per task)
        state = dict(vars(self))
        state["_lens"] = None
        return state

    def _alpha(self, eps: float) -> float:
        return 2.5 * eps / self.steps if self.alpha is None else float(self.alpha)

    def update(self, batch, acts, logits) -> None:
        lens = self._lens
        if lens is None:
            raise ConvlensError("the Robustness reducer runs the model: pass it to the engine "
                                "(run_local / feed), which attaches the model first")
        labels = batch.labels
        if self.label_map is not None:  # the data's classes as the model's (-1: none)
            labels = torch.as_tensor(self.label_map.model_class(labels.cpu().numpy()))
        labels = labels.to(logits.device)
        valid = (labels >= 0) & (labels < logits.shape[1])
        self.unlabelled += int((~valid).sum())
        if not bool(valid.any()):
            return
        y = labels[valid]
        x = batch.images.to(logits.device)[valid]
        keys = batch.indices[valid.cpu()].tolist()
        clean = logits[valid].float()
        with attacking(lens):
            u = pixels(lens, x)
            g = None
            for k, eps in enumerate(self.eps):
                if eps == 0:
                    out = clean
                else:
                    if self.attack == "fgsm":  # one gradient serves every ε
                        if g is None:
                            g = loss_grad(lens, u, y, False)[0]
                        adv = torch.clamp(u + eps * g.sign(), min=0, max=1)
                    else:
                        start = (random_point(u, eps, self.norm, image_seeds(self.seed, keys))
                                 if self.random_start else None)
                        adv = pgd_pixels(lens, u, y, eps, self._alpha(eps), self.steps,
                                         self.norm, False, start)[0]
                    with torch.no_grad():
                        out = lens(model_input(lens, adv)).float()
                self._add(k, out, y)
        self.n += len(y)

    def _add(self, k: int, logits: torch.Tensor, y: torch.Tensor) -> None:
        p = torch.softmax(logits.detach(), 1)
        prob, pred = p.max(1)
        right = pred == y
        self.correct[k] += int(right.sum())
        # float32 probabilities summed in float64: exact for any order of items
        self.confidence[k] += prob.double().sum().cpu()
        self.confidence_wrong[k] += prob.double()[~right].sum().cpu()
        self.p_true[k] += p.gather(1, y[:, None])[:, 0].double().sum().cpu()

    def merge(self, other: "Robustness") -> "Robustness":
        self.n += other.n
        self.unlabelled += other.unlabelled
        for name in _SUMS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    def to(self, device) -> "Robustness":
        return self  # the sums live on the CPU

    def state_dict(self) -> dict[str, Any]:
        return {"config": self.config(), "n": self.n, "unlabelled": self.unlabelled,
                **{name: getattr(self, name).clone() for name in _SUMS}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n, self.unlabelled = int(state["n"]), int(state["unlabelled"])
        for name in _SUMS:
            setattr(self, name, state[name].clone())

    def finalize(self) -> pd.DataFrame:
        """One row per ε: eps, images, correct, accuracy, error_rate, mean_confidence,
        mean_confidence_wrong (NaN when none is wrong), mean_p_true."""
        n = max(self.n, 1)
        wrong = self.n - self.correct.numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            conf_wrong = np.where(wrong > 0, self.confidence_wrong.numpy() / wrong, np.nan)
        return pd.DataFrame({
            "eps": self.eps, "images": self.n, "correct": self.correct.numpy(),
            "accuracy": self.correct.numpy() / n, "error_rate": wrong / n,
            "mean_confidence": self.confidence.numpy() / n,
            "mean_confidence_wrong": conf_wrong, "mean_p_true": self.p_true.numpy() / n})


def robustness(lens, data, eps: Sequence[float] = (0.0, 0.01, 0.03, 0.1), attack: str = "fgsm",
               steps: int = 10, alpha: float | None = None, random_start: bool = True,
               norm: str = "linf", seed: int = 0, examples: int = 0,
               explain: str | None = "saliency", out: str | os.PathLike | None = None,
               n: int | None = None, indices: Sequence[int] | None = None,
               run: RunSettings | None = None) -> RobustnessResult:
    """Accuracy and mean confidence against ε, streamed over a dataset (Goodfellow, Shlens &
    Szegedy 2015, https://arxiv.org/abs/1412.6572, §5-6; PGD: Madry et al. 2018).

    Every labelled item is attacked, untargeted against its label, at each ε (pixel units,
    images in [0, 1]): ``attack="fgsm"`` (one gradient, reused for every ε) or ``"pgd"``
    (`steps` steps of `alpha`, default ``2.5 ε / steps``; `random_start` seeded per item).
    Per ε: accuracy, error rate, mean confidence of the answer, mean confidence on the
    misclassified (the paper's figure) and mean p(true label).

    Args:
        lens: the model. data: a dataset or a data spec (``"builtin:fashion-mnist:test"``).
        eps: the ε values (0 gives the clean accuracy). norm: ``"linf"`` or ``"l2"`` (PGD).
        examples: also attack the first `examples` items at the largest ε, for the gallery
            (with `explain` maps of x and x_adv: ``"saliency"``, ``"guided_backprop"``, None).
        out: a folder: the pass checkpoints into ``out/.convlens-robustness`` every
            ``run.checkpoint_every`` batches and resumes after a kill (``run.resume``); the
            result is saved there (without pictures; the command line draws them).
        n, indices: the first `n` items, or these dataset indices (default all).
        run: how the pass runs (`convlens.RunSettings`: batch size, workers, progress, the
            ``"local"`` or ``"ray"`` engine and its shard size, address and options).

    Example::

        res = robustness(lens, "builtin:fashion-mnist:test", eps=[0, 0.05, 0.1], attack="pgd")
        res.table[["eps", "accuracy", "mean_confidence"]]
    """
    run = as_run(run)
    engine = run.engine
    if attack not in ATTACKS:
        raise unknown("attack", str(attack), ATTACKS)
    if engine not in ENGINES:
        raise unknown("engine", str(engine), ENGINES)
    if norm not in NORMS:
        raise unknown("norm", str(norm), NORMS)
    if norm == "l2" and attack == "fgsm":
        raise ConvlensError("FGSM is an L∞ attack: use attack='pgd' for norm='l2'")
    eps = [check_eps(e, norm) for e in (eps if isinstance(eps, (list, tuple, np.ndarray))
                                        else [eps])]
    if not eps:
        raise ConvlensError("give at least one eps")
    if int(steps) < 1:
        raise ConvlensError(f"steps must be at least 1, got {steps}")
    lens, data = lens_and_data(lens, data)
    spec = getattr(data, "spec", None)
    order = item_order(data, n, indices)

    label_map = align_labels(getattr(data, "classes", None), getattr(lens, "labels", None))
    if not label_map.comparable:
        raise ConvlensError(f"robustness measures accuracy, but {label_map.note()}")
    warn_if_differ(label_map)
    reducer = Robustness(eps, attack, steps, alpha, random_start, norm, seed, label_map)
    folder = Path(out) if out is not None else None
    checkpoint = (pass_checkpoint(lens, data, order, folder / WORK, run, reducer.config())
                  if folder is not None else None)
    info = run_pass(lens, data, [reducer], order, run,
                    f"robustness {attack} {getattr(lens, 'name', 'model')}", checkpoint)
    if reducer.n == 0:
        raise ConvlensError(f"none of the {info.images} items read has a label the model knows: "
                            "robustness measures accuracy, so it needs labelled data")
    table = reducer.finalize()
    gallery = _examples(lens, data, order, examples, max(eps), attack, steps, alpha,
                        random_start, norm, seed, explain, label_map) if examples else None
    params = {"model": getattr(lens, "name", None), "data": spec, "attack": attack, "eps": eps,
            "norm": norm, "steps": int(steps) if attack == "pgd" else None,
            "alpha": ((alpha if alpha is not None else "2.5 eps / steps") if attack == "pgd"
                      else None),
            "random_start": bool(random_start) if attack == "pgd" else None, "seed": seed,
            "images": reducer.n, "unlabelled": reducer.unlabelled, "skipped": info.skipped,
            "label_map": label_map.info(),
            "skipped_sources": info.skipped_sources, "engine": engine,
            "resumed_from": info.resumed_from, "seconds": round(info.seconds, 3),
            "images_per_s": round((info.seen - info.resumed_from) / info.seconds, 1)
            if info.seconds > 0 else None}
    result = RobustnessResult(table, params, gallery)
    if checkpoint is not None:
        checkpoint.remove()
        shutil.rmtree(folder / WORK, ignore_errors=True)
        result.save(folder, lens=lens, pictures=False)
    return result


def _examples(lens, data, order, n, eps, attack, steps, alpha, random_start, norm, seed,
              explain, label_map: LabelMap) -> AdversarialExamples | None:
    """The first `n` items of the pass, attacked at ε for the gallery."""
    from ...data import Loader
    from .attacks import fgsm, pgd

    batches = list(Loader(data, batch_size=n, indices=order[:n].tolist()))
    if not batches or eps == 0:
        return None
    b = batches[0]
    y = torch.as_tensor(label_map.model_class(b.labels.numpy()))
    y = y if bool((y >= 0).all()) else None  # else each image's prediction
    if attack == "fgsm":
        return fgsm(lens, b.images, y, eps=eps, explain=explain)
    return pgd(lens, b.images, y, eps=eps, alpha=alpha, steps=steps, random_start=random_start,
               norm=norm, seed=seed, explain=explain)
