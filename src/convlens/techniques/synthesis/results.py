"""What the synthesis views return: `InversionResult` (`invert`), `FeatureVisResult`
(`feature_visualization`) and `ClassModelResult` (`class_model`). Each saves and loads through
`convlens.results.Result` (``Result.load`` / ``load_result``); the pictures are drawn in
`.figures`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...draw import image_hwc
from ...results import Result, as_numpy, figure, panel, safe_name
from .figures import image_grid, inversion_errors, inversion_strip


def _name(labels: list[str] | None, k: int) -> str:
    return labels[k] if labels and 0 <= k < len(labels) else str(k)


@dataclass
class InversionResult(Result):
    """Reconstructions of N images from L layers.

    Attributes:
        layers: the L layer names.
        original: ``(N, C, H, W)`` the images in [0, 1].
        reconstructions: ``(L, N, C, H, W)`` in [0, 1].
        rep_error: ``(L, N)`` ``||Phi(x*) - Phi0|| / ||Phi0||``.
        pixel_error: ``(L, N)`` ``||x* - x0|| / ||x0||`` in model-input units.
        predicted: ``(L, N)`` the class the model gives each reconstruction.
        original_predicted: ``(N,)`` the class it gives each original.
        labels: class names (or None). names: the images' names.
        history: ``(steps,)`` mean objective over the batch per step.
        params: the settings (sigma, lambdas per layer, steps, schedule, seed, ...).
    """

    layers: list[str]
    original: torch.Tensor
    reconstructions: torch.Tensor
    rep_error: torch.Tensor
    pixel_error: torch.Tensor
    predicted: torch.Tensor
    original_predicted: torch.Tensor
    labels: list[str] | None = None
    names: list[str] | None = None
    history: torch.Tensor | None = None
    params: dict[str, Any] = field(default_factory=dict)

    kind = "inversion"

    def label(self, k: int) -> str:
        """The name of class `k` (its index where there are no labels)."""
        return _name(self.labels, k)

    def arrays(self) -> dict[str, Any]:
        out = {"original": self.original, "reconstructions": self.reconstructions,
               "rep_error": self.rep_error, "pixel_error": self.pixel_error,
               "predicted": self.predicted, "original_predicted": self.original_predicted}
        if self.history is not None:
            out["history"] = self.history
        return out

    def layer_table(self):
        """One row per layer: mean and std of both errors, and how often the model still
        gives the original's class to the reconstruction."""
        import pandas as pd

        rep, pix = as_numpy(self.rep_error), as_numpy(self.pixel_error)
        same = as_numpy(self.predicted) == as_numpy(self.original_predicted)[None]
        return pd.DataFrame({
            "layer": self.layers, "images": rep.shape[1],
            "rep_error": rep.mean(1), "rep_error_sd": rep.std(1),
            "pixel_error": pix.mean(1), "pixel_error_sd": pix.std(1),
            "same_class": same.mean(1)})

    def tables(self):
        import pandas as pd

        rows = []
        for i, layer in enumerate(self.layers):
            for n in range(self.rep_error.shape[1]):
                rows.append({"layer": layer, "image": n,
                             "name": None if not self.names else self.names[n],
                             "rep_error": float(self.rep_error[i, n]),
                             "pixel_error": float(self.pixel_error[i, n]),
                             "predicted": int(self.predicted[i, n]),
                             "original_predicted": int(self.original_predicted[n])})
        return {"layers": self.layer_table(), "reconstructions": pd.DataFrame(rows)}

    def info(self) -> dict[str, Any]:
        t = self.layer_table()
        return {"layers": self.layers, "images": int(self.rep_error.shape[1]),
                "params": self.params,
                "mean_rep_error": dict(zip(t.layer, t.rep_error.round(4))),
                "mean_pixel_error": dict(zip(t.layer, t.pixel_error.round(4)))}

    def summary(self) -> list[str]:
        """What the command prints: the mean errors per layer."""
        t = self.layer_table()
        width = max(len(v) for v in t.layer)
        return [f"{self.original.shape[0]} image(s); mean over images, per layer "
                "(representation error ||Phi(x*)-Phi0||/||Phi0||, pixel error ||x*-x0||/||x0||):"
                ] + [f"  {row.layer:<{width}}  representation error {row.rep_error:.3f}  "
                     f"pixel error {row.pixel_error:.3f}  same class {row.same_class:.0%}"
                     for row in t.itertuples()]

    about = ("Images reconstructed from a layer's code (Mahendran & Vedaldi 2015): starting from "
             "noise, an image is optimised until the layer's response to it matches the "
             "original's, with image priors that keep it natural. Early layers keep "
             "photographic detail; deeper ones keep the object's parts but not their exact "
             "arrangement and colour. Under each: the representation error (how well the code "
             "is matched) and the pixel error (how far the image is from the original).")

    def figures(self):
        return [figure("each image and its reconstruction from each layer",
                       [panel("strip", kind="plot")]),
                figure("the errors by layer", [panel("errors", kind="plot")])]

    def _picture_names(self, n: int) -> list[str]:
        return [f"input_{n}"] + [f"reconstruction_{n}_{safe_name(layer)}"
                                 for layer in self.layers]

    def pictures(self):
        pics: dict[str, Any] = {"strip": lambda path: inversion_strip(self, path),
                                "errors": lambda path: inversion_errors(self, path)}
        orig, rec = as_numpy(self.original), as_numpy(self.reconstructions)
        for n in range(orig.shape[0]):
            names = self._picture_names(n)
            pics[names[0]] = image_hwc(orig[n])
            for i, name in enumerate(names[1:]):
                pics[name] = image_hwc(rec[i, n])
        return pics

    def per_image(self) -> list[list[str]]:
        """Per image: the original, then its reconstruction from each layer (input first)."""
        return [self._picture_names(n) for n in range(self.original.shape[0])]


@dataclass
class FeatureVisResult(Result):
    """Images that maximise an objective, one per objective row (e.g. per channel).

    Attributes:
        images: ``(B, C, H, W)`` in [0, 1].
        values: ``(B,)`` the objective of each final image (no transforms).
        objective: the objective's name.
        layer: the layer of a channel objective (None otherwise).
        channels: ``(B,)`` the channel each image maximises (None unless a channel objective).
        predicted: ``(B,)`` the class the model gives each image (or None).
        labels: class names (or None).
        history: ``(steps,)`` mean objective per step.
        params: the settings.
    """

    images: torch.Tensor
    values: torch.Tensor
    objective: str
    layer: str | None = None
    channels: list[int] | None = None
    predicted: torch.Tensor | None = None
    labels: list[str] | None = None
    history: torch.Tensor | None = None
    params: dict[str, Any] = field(default_factory=dict)

    kind = "featvis"

    def arrays(self) -> dict[str, Any]:
        out = {"images": self.images, "values": self.values}
        if self.channels is not None:
            out["channels"] = torch.tensor(self.channels)
        if self.predicted is not None:
            out["predicted"] = self.predicted
        if self.history is not None:
            out["history"] = self.history
        return out

    def tables(self):
        import pandas as pd

        n = self.images.shape[0]
        df = pd.DataFrame({"image": np.arange(n), "value": as_numpy(self.values)})
        if self.channels is not None:
            df.insert(1, "channel", self.channels)
            df.insert(1, "layer", self.layer)
        if self.predicted is not None:
            df["predicted"] = as_numpy(self.predicted)
        return {"images": df}

    def info(self) -> dict[str, Any]:
        return {"objective": self.objective, "layer": self.layer, "channels": self.channels,
                "images": int(self.images.shape[0]), "params": self.params}

    def summary(self) -> list[str]:
        """What the command prints: the objective's range over the images."""
        v = self.values
        what = f" of {self.layer}" if self.layer else ""
        return [f"{self.images.shape[0]} image(s){what}: objective min {float(v.min()):.3g}, "
                f"median {float(v.median()):.3g}, max {float(v.max()):.3g}"]

    about = ("Feature visualisation (Olah et al., Distill 2017): for each channel, an image "
             "optimised (from noise, through random jitter, scaling and rotation so that it "
             "stays natural) to excite that channel as much as possible: what the unit looks "
             "for, without any dataset image. Under each: the channel and the objective's value.")

    def figures(self):
        return [figure(self.layer or self.objective, [panel("grid", kind="plot")])]

    def pictures(self):
        pics = {"grid": self._grid}
        if self.per_unit():  # one picture per unit, for the units' pages
            imgs = as_numpy(self.images)
            pics.update({f"unit_{int(c)}": image_hwc(imgs[i])
                         for i, c in enumerate(self.channels)})
        return pics

    def per_unit(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The image optimised for each channel of `layer` and its objective value (the report
        shows it on that unit's page)."""
        if self.channels is None or not self.layer:
            return {}
        return {self.layer: {str(int(c)): {"picture": f"unit_{int(c)}",
                                           "value": float(self.values[i])}
                             for i, c in enumerate(self.channels)}}

    def _grid(self, path: str, max_images: int = 256) -> None:
        """A grid of the images, each titled with its channel (or row) and objective value."""
        if self.channels is None:
            what = f"maximising {self.objective}"
        elif self.objective.startswith("neuron"):
            what = f"{self.layer}: the image that maximises each channel's centre neuron"
        else:
            what = f"{self.layer}: the image that maximises each channel's mean activation"
        titles = [(f"ch {c}" if self.channels is not None else f"#{i}") +
                  f"\n{float(self.values[i]):.3g}"
                  for i, c in enumerate(self.channels or range(self.images.shape[0]))]
        image_grid(path, as_numpy(self.images)[:max_images], titles[:max_images],
                   f"Feature visualisation (Olah et al. 2017), {what}. Under each: the "
                   "objective's value on the final image.")


@dataclass
class ClassModelResult(Result):
    """One image per class, maximising its score (Simonyan et al. 2014, §2).

    Attributes:
        images: ``(K, C, H, W)`` in [0, 1].  targets: the K classes.
        scores: ``(K,)`` ``S_c(I*_c)``, the class score before softmax.
        probs: ``(K, num_classes)`` softmax of the model on each image.
        labels: class names (or None).  history, params: as `FeatureVisResult`.
    """

    images: torch.Tensor
    targets: list[int]
    scores: torch.Tensor
    probs: torch.Tensor
    labels: list[str] | None = None
    history: torch.Tensor | None = None
    params: dict[str, Any] = field(default_factory=dict)

    kind = "class_model"

    def label(self, k: int) -> str:
        """The name of class `k` (its index where there are no labels)."""
        return _name(self.labels, k)

    @property
    def p_class(self) -> torch.Tensor:
        """``(K,)`` p(c | I*_c): the probability each class model gets for its own class."""
        return self.probs[torch.arange(len(self.targets)), torch.tensor(self.targets)]

    @property
    def predicted(self) -> torch.Tensor:
        """``(K,)`` the class the model gives each image."""
        return self.probs.argmax(1)

    def arrays(self) -> dict[str, Any]:
        out = {"images": self.images, "targets": torch.tensor(self.targets),
               "scores": self.scores, "probs": self.probs}
        if self.history is not None:
            out["history"] = self.history
        return out

    def tables(self):
        import pandas as pd

        return {"targets": pd.DataFrame({
            "target": self.targets, "name": [self.label(c) for c in self.targets],
            "score": as_numpy(self.scores), "p_class": as_numpy(self.p_class),
            "predicted": as_numpy(self.predicted),
            "predicted_name": [self.label(int(k)) for k in self.predicted]})}

    def info(self) -> dict[str, Any]:
        return {"targets": self.targets, "labels": [self.label(c) for c in self.targets],
                "p_class": [round(float(p), 4) for p in self.p_class], "params": self.params}

    def summary(self) -> list[str]:
        """What the command prints: per class, its score, p(class) and the class it gets."""
        return [f"  {row.name}: S_c = {row.score:.2f}, p(class) = {row.p_class:.3f}, "
                f"classified as {row.predicted_name}"
                for row in self.tables()["targets"].itertuples()]

    about = ("Class models (Simonyan et al. 2014, §2): for each class, the image that maximises "
             "its score before softmax, with a penalty on the image's size: what the network "
             "thinks the class looks like. Under each: the score S, the probability p the "
             "network gives the class, and the class it predicts if that is another.")

    def figures(self):
        return [figure("one image per class", [panel("grid", kind="plot")])]

    def pictures(self):
        return {"grid": self._grid}

    def _grid(self, path: str) -> None:
        titles = [f"{self.label(c)}\nS={float(s):.1f}  p={float(p):.2f}"
                  + ("" if int(k) == c else f"\n→ {self.label(int(k))} ✗")
                  for c, s, p, k in zip(self.targets, self.scores, self.p_class, self.predicted)]
        image_grid(path, as_numpy(self.images), titles,
                   "Class models (Simonyan et al. 2014): the image that maximises each class's "
                   "score S_c minus λ‖I‖². Under each: the class, S_c (before softmax), "
                   "p(class | image) and, if the net prefers another class, that class (✗).",
                   cols=min(8, len(titles)))
