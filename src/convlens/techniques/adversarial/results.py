"""The results of fooling (METHODS.md §9): `AdversarialExamples` (one attack's images and the
model's answers on them: `fgsm`, `pgd`, `fool`) and `RobustnessResult` (accuracy and confidence
against ε over a dataset, `robustness`). Both load back with `convlens.results.load_result`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from ...errors import unknown
from ...results import Result, SavedResult
from .figures import curve_figure, gallery_figure, image_pictures, saliency_figure

#: what each attack is (the report's `about`)
WHAT = {"fgsm": "the fast gradient sign method (Goodfellow et al. 2015): one step of size "
                "ε along the sign of the loss gradient",
        "pgd": "projected gradient descent (Kurakin 2016, Madry et al. 2018): repeated "
               "small sign steps, kept within ε of the image",
        "fool": "the smallest change (Szegedy et al. 2014) that makes the model answer "
                "the target class with the asked confidence"}


@dataclass
class AdversarialExamples(Result):
    """Adversarial images of one attack and the model's answers on them.

    Attributes (pixels in [0, 1], ``(N, C, H, W)``; per image ``(N,)``):
        kind: the attack: ``"fgsm"``, ``"pgd"`` or ``"fool"``.
        images, adversarial: the clean and the adversarial pixels.
        x_adv: the adversarial images as normalised model input.
        classes: the class each image was pushed away from (untargeted) or toward (targeted).
        targeted: whether `classes` are targets.
        predicted, confidence: the model's answer on the clean image and its softmax
            probability.
        adv_predicted, adv_confidence, adv_class_prob: the answer on the adversarial image,
            its probability and the probability of `classes` there (None when not evaluated).
        labels: the model's class names.
        params: the attack's settings.
        saliency_clean, saliency_adv: ``(N, H, W)`` saliency maps of x and x_adv (each for
            its predicted class), when asked for (``explain``).
        extra: method-specific per-image arrays (`fool`: ``c``, ``reached``).
        max_pictures: pictures are drawn for the first this many images.
    """

    kind: str = field()  # required: without field(), `Result.kind` would be its default
    images: torch.Tensor
    adversarial: torch.Tensor
    x_adv: torch.Tensor
    classes: torch.Tensor
    targeted: bool
    predicted: torch.Tensor
    confidence: torch.Tensor
    adv_predicted: torch.Tensor | None
    adv_confidence: torch.Tensor | None
    adv_class_prob: torch.Tensor | None
    labels: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    saliency_clean: torch.Tensor | None = None
    saliency_adv: torch.Tensor | None = None
    explain: str | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    max_pictures: int = 8

    @property
    def perturbation(self) -> torch.Tensor:
        """``adversarial - images``, ``(N, C, H, W)`` in pixel units."""
        return self.adversarial - self.images

    @property
    def linf(self) -> torch.Tensor:
        """Largest change of any pixel value, per image (pixel units)."""
        return self.perturbation.flatten(1).abs().amax(1)

    @property
    def l2(self) -> torch.Tensor:
        """Euclidean norm of the change, per image (pixel units)."""
        return self.perturbation.flatten(1).norm(dim=1)

    @property
    def success(self) -> torch.Tensor | None:
        """Untargeted: the answer left the class; targeted: it is the target (for `fool`,
        with the asked confidence)."""
        if self.adv_predicted is None:
            return None
        if "reached" in self.extra:
            return self.extra["reached"].clone()
        return (self.adv_predicted == self.classes if self.targeted
                else self.adv_predicted != self.classes)

    def label(self, k: int) -> str:
        """The name of class `k` (its index where the model has no names)."""
        return self.labels[k] if 0 <= k < len(self.labels) else str(k)

    def arrays(self) -> dict[str, Any]:
        out = {"images": self.images, "adversarial": self.adversarial, "x_adv": self.x_adv,
               "classes": self.classes, "predicted": self.predicted,
               "confidence": self.confidence, "linf": self.linf, "l2": self.l2}
        for k in ("adv_predicted", "adv_confidence", "adv_class_prob", "saliency_clean",
                  "saliency_adv"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        out.update(self.extra)
        return out

    def tables(self):
        rows = []
        for i in range(len(self.classes)):
            r = {"image": i, "label" if not self.targeted else "target":
                 self.label(int(self.classes[i])),
                 "predicted": self.label(int(self.predicted[i])),
                 "confidence": float(self.confidence[i])}
            if self.adv_predicted is not None:
                r.update(adv_predicted=self.label(int(self.adv_predicted[i])),
                         adv_confidence=float(self.adv_confidence[i]),
                         adv_class_prob=float(self.adv_class_prob[i]),
                         success=bool(self.success[i]))
            r.update(linf=float(self.linf[i]), l2=float(self.l2[i]))
            for k, v in self.extra.items():
                r[k] = v[i].item()
            rows.append(r)
        return {"examples": pd.DataFrame(rows)}

    def info(self) -> dict[str, Any]:
        n = len(self.classes)
        out: dict[str, Any] = {"method": self.kind, "params": self.params,
                               "targeted": self.targeted, "images": n,
                               "median_linf": float(self.linf.median()) if n else None,
                               "median_l2": float(self.l2.median()) if n else None}
        if self.adv_predicted is not None:
            out["success_rate"] = float(self.success.float().mean()) if n else None
            out["clean_accuracy_vs_labels"] = (
                None if self.targeted else float((self.predicted == self.classes).float().mean()))
        return out

    def summary(self) -> list[str]:
        """A line per image: the answer before and after, and the size of the change."""
        out = []
        for i in range(len(self.classes)):
            line = (f"  image {i}: {self.label(int(self.predicted[i]))} "
                    f"({float(self.confidence[i]):.3f})")
            if self.adv_predicted is not None:
                line += (f" -> {self.label(int(self.adv_predicted[i]))} "
                         f"({float(self.adv_confidence[i]):.3f})")
            line += f", L2 {float(self.l2[i]):.3f}, Linf {float(self.linf[i]):.3f}"
            if self.success is not None and not bool(self.success[i]):
                line += "  [target not reached]" if self.targeted else "  [not fooled]"
            out.append(line)
        return out

    @property
    def about(self) -> str:  # type: ignore[override]
        return (f"Each row: the image with the model's answer, the change that was added "
                f"({WHAT[self.kind]}), amplified so that its largest value fills the colour "
                "scale, and the changed image with the model's new answer. Probabilities are "
                "softmax outputs.")

    def _shown(self) -> int:
        return min(len(self.classes), self.max_pictures)

    def plots(self) -> dict[str, Any]:
        """The gallery and (with `explain`) the saliency figure: name -> PNG writer."""
        n = self._shown()
        if n == 0:
            return {}
        pics = {"gallery": lambda path: gallery_figure(self, n, path)}
        if self.saliency_clean is not None:
            pics["saliency"] = lambda path: saliency_figure(self, n, path)
        return pics

    def pictures(self):
        return {**self.plots(), **image_pictures(self, self._shown())}

    def per_image(self) -> list[list[str]]:
        return [[f"input_{i}", f"adversarial_{i}", f"change_{i}"] for i in range(self._shown())]

    def figures(self, prefix: str = "") -> list[dict[str, Any]]:
        """For the report: the gallery and the saliency figure, each with a summary line."""
        from ...results import figure, panel

        n = len(self.classes)
        if self._shown() == 0:
            return []
        lines = [f"{n} images; median change L∞ {float(self.linf.median()):.3g}, "
                 f"L2 {float(self.l2.median()):.3g} (pixels in [0, 1])"]
        if self.adv_predicted is not None:
            lines.append(f"{'target reached' if self.targeted else 'prediction changed'} for "
                         f"{int(self.success.sum())} of {n}")
        out = [figure("x | the change, amplified | x_adv",
                      [panel(prefix + "gallery", kind="plot", caption=lines)],
                      "Under each image: the label (or target) and the model's answer with its "
                      "probability; red: the model was fooled.")]
        if self.saliency_clean is not None:
            out.append(figure(f"{(self.explain or 'saliency').replace('_', ' ')} of x and x_adv",
                              [panel(prefix + "saliency", kind="plot")],
                              "The map of each image's predicted class, before and after the "
                              "change, on one colour scale per row."))
        return out

    # -- loading: `extra` is a dict of arrays, recorded by name ---------------------------------
    def _fields(self, arrays: dict, tables: dict) -> dict[str, dict]:
        out = Result._fields(dataclasses.replace(self, extra={}), arrays, tables)
        out["extra"] = {"value": None, "named": {k: k for k in self.extra}}
        return out

    def _loaded(self, saved: SavedResult) -> None:
        named = (saved.manifest.get("fields", {}).get("extra") or {}).get("named") or {}
        self.extra = {k: torch.from_numpy(np.array(saved.array(a))) for k, a in named.items()}


#: the arrays, tables and pictures of a robustness result's examples are saved under this prefix
EXAMPLE = "example_"


@dataclass
class RobustnessResult(Result):
    """Accuracy and confidence against ε (`table`, one row per ε) with a few example images
    (`examples`, an `AdversarialExamples` at the largest ε, or None).

    Attributes:
        table: one row per ε: eps, images, correct, accuracy, error_rate, mean_confidence,
            mean_confidence_wrong, mean_p_true.
        params: the model, the data, the attack's settings and how the pass ran.
        examples: the first items attacked at the largest ε (None: none asked for).
    """

    kind = "robustness"

    table: pd.DataFrame
    params: dict[str, Any]
    examples: AdversarialExamples | None = None

    def accuracy(self, eps: float) -> float:
        row = self.table[np.isclose(self.table.eps, eps)]
        if row.empty:
            raise unknown("eps", f"{eps:g}", [f"{e:g}" for e in self.table.eps])
        return float(row.accuracy.iloc[0])

    def arrays(self):
        out = {}
        if self.examples is not None:
            out.update({f"{EXAMPLE}{k}": v for k, v in self.examples.arrays().items()})
        return out

    def tables(self):
        out = {"robustness": self.table}
        if self.examples is not None:
            out["examples"] = self.examples.tables()["examples"]
        return out

    @property
    def about(self) -> str:  # type: ignore[override]
        norm = "L∞" if self.params.get("norm", "linf") == "linf" else "L2 norm of the change"
        return ("Fooling ConvNets (Goodfellow et al. 2015): every labelled item attacked at each "
                f"ε, the largest change allowed ({norm}, pixels in [0, 1]); the curve shows the "
                "accuracy (solid) and the mean confidence of the model's answer (dashed) on the "
                "changed images, ε = 0 being the clean accuracy. The gallery shows the first "
                "items attacked at the largest ε.")

    def info(self):
        out = dict(self.params)
        if self.examples is not None:
            out["examples"] = self.examples.info()
        return out

    def summary(self) -> list[str]:
        """The table: accuracy, mean confidence and mean confidence when wrong, per ε."""
        lines = ["  eps      accuracy  mean conf.  conf. when wrong"]
        for row in self.table.itertuples():
            wrong = "-" if row.mean_confidence_wrong != row.mean_confidence_wrong else \
                f"{row.mean_confidence_wrong:.3f}"
            lines.append(f"  {row.eps:<8g} {row.accuracy:8.4f}  {row.mean_confidence:10.3f}  "
                         f"{wrong:>16}")
        return lines

    def figures(self):
        from ...results import figure, panel

        lines = [f"ε = {r.eps:g}: accuracy {r.accuracy:.1%}, mean confidence "
                 f"{r.mean_confidence:.2f}" for r in self.table.itertuples()]
        out = [figure("accuracy against ε", [panel("accuracy_vs_eps", kind="plot",
                                                   caption=lines)],
                      f"{self.params.get('images', 0)} labelled images, "
                      f"{str(self.params.get('attack', '')).upper()}")]
        if self.examples is not None:
            out += self.examples.figures(prefix=EXAMPLE)
        return out

    def pictures(self):
        t = self.table
        name = self.params.get("attack", "").upper()
        title = (f"{self.params.get('model', 'model')} on {self.params.get('data', 'data')} "
                 f"({self.params.get('images', 0)} images), {name}")
        pics = {"accuracy_vs_eps": lambda path: curve_figure(
            [(name, t.eps.to_numpy(), t.accuracy.to_numpy(), t.mean_confidence.to_numpy())],
            path, title)}
        if self.examples is not None:
            pics.update({f"{EXAMPLE}{k}": v for k, v in self.examples.plots().items()})
        return pics

    def _repr_html_(self) -> str:
        return self.table.to_html(index=False)

    # -- loading: the examples are a result of their own, saved under EXAMPLE -------------------
    def _fields(self, arrays: dict, tables: dict) -> dict[str, dict]:
        out = Result._fields(dataclasses.replace(self, examples=None), arrays, tables)
        if self.examples is not None:
            inner_arrays, inner_tables = dict(self.examples.arrays()), {}
            inner = self.examples._fields(inner_arrays, inner_tables)
            for how in inner.values():
                for name in [how["array"]] if "array" in how else how.get("arrays", []):
                    arrays.setdefault(EXAMPLE + name, inner_arrays[name])
            out["examples"] = {"value": None, "fields": {k: _prefixed(how)
                                                         for k, how in inner.items()}}
        return out

    def _loaded(self, saved: SavedResult) -> None:
        how = saved.manifest.get("fields", {}).get("examples") or {}
        if how.get("fields"):
            inner = SavedResult.__new__(SavedResult)
            inner.folder = saved.folder
            inner.manifest = {**saved.manifest, "fields": how["fields"], "result": ""}
            self.examples = inner.load_as(AdversarialExamples)


def _prefixed(how: dict) -> dict:
    """A field's entry with its array names under EXAMPLE."""
    out = dict(how)
    if "array" in out:
        out["array"] = EXAMPLE + out["array"]
    if "arrays" in out:
        out["arrays"] = [EXAMPLE + a for a in out["arrays"]]
    if "named" in out:
        out["named"] = {k: EXAMPLE + a for k, a in out["named"].items()}
    return out


__all__ = ["AdversarialExamples", "RobustnessResult"]
