"""The results of the gradient family: `GradientMaps` (one method's maps for N images) and
`SanityCheck` (how the maps change as the model's weights are randomised)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...results import Result, as_numpy, figure, panel, scale
from .figures import MAP_CMAP, SIGNED_CMAP, gradient_pictures, sanity_pictures, signed_sum

SIGNED_NOTE = "red: more of this pixel raises the target, blue lowers it, white: no effect"
#: what a method's map holds (the colour bar's label)
MAP_UNITS = {
    "saliency": "|dS/dx|, max over colour channels",
    "deconvnet": "|DeconvNet signal|, max over colour channels",
    "guided_backprop": "|guided backprop signal|, max over colour channels",
    "grad_cam": "Grad-CAM: ReLU of the gradient-weighted activations",
    "guided_grad_cam": "|guided Grad-CAM|, max over colour channels",
    "integrated_gradients": "|integrated gradients summed over colour channels| (score units)",
}
#: what a method shows and how to read it (the report's `about`)
ABOUT = {
    "saliency": "The data gradient (Simonyan et al. 2014): how much the class score (before "
                "softmax) changes when each pixel changes; bright pixels are the ones the score "
                "is most sensitive to.",
    "deconvnet": "DeconvNet (Zeiler & Fergus 2014): the target sent back to the pixels, passing "
                 "only positive signal at every ReLU; it shows what pattern in the image the "
                 "unit or class responds to.",
    "guided_backprop": "Guided backpropagation (Springenberg et al. 2015): the gradient, passing "
                       "only positive signal through units that were on; sharp, edge-like maps "
                       "of the pixels that raise the target.",
    "grad_cam": "Grad-CAM (Selvaraju et al. 2017): the last conv layer's maps weighted by the "
                "gradient of the class score, at that layer's coarse resolution; it shows where "
                "the evidence for the class lies.",
    "guided_grad_cam": "Guided Grad-CAM (Selvaraju et al. 2017): guided backpropagation times "
                       "Grad-CAM: fine detail, only where the class evidence lies.",
    "integrated_gradients": "Integrated gradients (Sundararajan et al. 2017): each pixel's share "
                            "of the score difference between a baseline image and this one; the "
                            "shares add up to that difference.",
}


@dataclass
class GradientMaps(Result):
    """Maps of one gradient method for N images.

    Attributes:
        kind: the method: ``"saliency"``, ``"guided_backprop"``, ..., ``"smoothgrad_<method>"``.
        map: ``(N, H, W)`` non-negative map at input resolution (what overlays show).
        attribution: ``(N, C, H, W)`` signed signal at the input (the gradient, the guided or
            DeconvNet signal, the attribution), or None (Grad-CAM).
        images: ``(N, C, H, W)`` the inputs in [0, 1] for display.
        targets: what was explained, per image (``"class 3 (star)"``, ``"unit features.10:5 at
            (2, 4)"``).
        classes: ``(N,)`` the class explained (-1 for a unit target).
        predicted: ``(N,)`` the model's predicted class.
        scores: ``(N,)`` the target's value (class score before softmax, or activation).
        cam: ``(N, h, w)`` Grad-CAM at the layer's resolution (Grad-CAM methods only).
        params: the method's parameters.
        notes: remarks on the run.
        max_pictures: pictures are drawn for the first this many images.
        labels: the model's class names (None: it has none).
        confidence: ``(N,)`` softmax probability of the prediction.
    """

    kind: str = field()  # required: without field(), `Result.kind` would be its default
    map: torch.Tensor
    attribution: torch.Tensor | None
    images: torch.Tensor
    targets: list[str]
    classes: torch.Tensor
    predicted: torch.Tensor
    scores: torch.Tensor
    cam: torch.Tensor | None = None
    params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    max_pictures: int = 16
    labels: list[str] | None = None
    confidence: torch.Tensor | None = None

    @property
    def about(self) -> str:  # type: ignore[override]
        return ABOUT.get(self.kind.removeprefix("smoothgrad_"), "") + (
            " Averaged over noisy copies of the image (SmoothGrad, Smilkov et al. 2017), which "
            "keeps what is stable and washes out the rest." if self.kind.startswith("smoothgrad")
            else "")

    @property
    def units(self) -> str:
        """What the map holds (the colour bar's label)."""
        return MAP_UNITS.get(self.kind.removeprefix("smoothgrad_"), "|signal|")

    def arrays(self) -> dict[str, Any]:
        out = {"map": self.map, "images": self.images, "classes": self.classes,
               "predicted": self.predicted, "scores": self.scores}
        if self.attribution is not None:
            out["attribution"] = self.attribution
        if self.cam is not None:
            out["cam"] = self.cam
        if self.confidence is not None:
            out["confidence"] = self.confidence
        return out

    def info(self) -> dict[str, Any]:
        return {"method": self.kind, "params": self.params, "targets": self.targets,
                "notes": self.notes}

    def label(self, k: int) -> str:
        """The name of class `k` (its index where the model has no names)."""
        return self.labels[k] if self.labels and 0 <= k < len(self.labels) else str(k)

    def summary(self) -> list[str]:
        """A line per image: what was explained and what the model predicted (and, for
        integrated gradients, the completeness error)."""
        delta = self.params.get("delta")
        return [f"  image {i}: {t}, predicted {self.label(int(self.predicted[i]))}"
                + ("" if delta is None else f", completeness error {delta[i]:+.3g}")
                for i, t in enumerate(self.targets)]

    def _shown(self) -> int:
        """How many images have pictures."""
        return min(len(self.map), self.max_pictures)

    def pictures(self) -> dict[str, np.ndarray]:
        return gradient_pictures(self)

    def per_image(self) -> list[list[str]]:
        return [[f"input_{i}", f"overlay_{i}", f"map_{i}"]
                + ([] if self.attribution is None else [f"signed_{i}"])
                for i in range(self._shown())]

    def caption(self, i: int) -> list[str]:
        """What was explained and what the model said, for image `i`."""
        p = "" if self.confidence is None else f" (p = {float(self.confidence[i]):.2f})"
        return [f"explains: {self.targets[i]}", f"score {float(self.scores[i]):.3g}",
                f"predicted: {self.label(int(self.predicted[i]))}{p}"]

    def figures(self) -> list[dict[str, Any]]:
        out = []
        maps = as_numpy(self.map)
        what = self.units
        for i in range(self._shown()):
            hi = float(maps[i].max())
            panels = [panel(f"input_{i}", "input", self.caption(i), kind="image"),
                      panel(f"map_{i}", "map", scale=scale(0.0, hi, what, MAP_CMAP)),
                      panel(f"overlay_{i}", "overlay", scale=scale(0.0, hi, what, MAP_CMAP))]
            s = signed_sum(self, i)
            if s is not None:
                m = float(np.abs(s).max())
                panels.append(panel(f"signed_{i}", "signed", [SIGNED_NOTE], scale=scale(
                    -m, m, "signal summed over colour channels", SIGNED_CMAP)))
            out.append(figure(f"image {i}", panels))
        return out


@dataclass
class SanityCheck(Result):
    """Similarity of each method's maps to the trained model's as layers are randomised.

    Attributes:
        methods: method names (columns of the curves).
        stages: ``"original"``, then the layer randomised at each step (cumulative, top down).
        spearman, ssim: ``(stages, methods, N)`` per image, vs the original maps.
        maps: ``(stages, methods, k, H, W)`` the maps of the first `k` images (for figures).
        images: ``(k, C, H, W)`` those images in [0, 1].
        params: the run's settings (seed, number of images ``n``, targets, method arguments).
    """

    methods: list[str]
    stages: list[str]
    spearman: np.ndarray
    ssim: np.ndarray
    maps: np.ndarray
    images: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    kind: str = "sanity_check"

    about = ("Sanity checks for saliency maps (Adebayo et al. 2018): the model's layers are "
             "randomised from the top down and each method's map is compared with the trained "
             "model's. A map that explains the model falls apart as its weights are destroyed; "
             "one that stays the same shows edges of the image, not the model's reasons.")

    def table(self):
        """One row per (stage, method): mean and standard deviation over images."""
        import pandas as pd

        rows = []
        for s, stage in enumerate(self.stages):
            for m, method in enumerate(self.methods):
                rows.append({"stage": s, "randomised_down_to": stage, "method": method,
                             "spearman_mean": float(self.spearman[s, m].mean()),
                             "spearman_std": float(self.spearman[s, m].std()),
                             "ssim_mean": float(self.ssim[s, m].mean()),
                             "ssim_std": float(self.ssim[s, m].std())})
        return pd.DataFrame(rows)

    def tables(self):
        return {"similarity": self.table()}

    def arrays(self):
        return {"spearman": self.spearman, "ssim": self.ssim, "maps": self.maps,
                "images": self.images}

    def info(self):
        return {"methods": self.methods, "stages": self.stages, "params": self.params}

    def summary(self) -> list[str]:
        """A line per method: how similar its maps stay to the trained model's once every
        layer is randomised (mean over images)."""
        last = len(self.stages) - 1
        return [f"  {m}: Spearman {float(self.spearman[last, j].mean()):+.3f}, SSIM "
                f"{float(self.ssim[last, j].mean()):.3f} with every layer down to "
                f"{self.stages[last]} randomised" for j, m in enumerate(self.methods)]

    def pictures(self):
        return sanity_pictures(self)
