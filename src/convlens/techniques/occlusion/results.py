"""The result of the occlusion family: `OcclusionResult`, the maps of N images."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ...results import Result, as_numpy, figure, panel, scale
from .figures import PROB_CMAP, class_colours, occlusion_pictures


@dataclass
class OcclusionResult(Result):
    """Occlusion maps of ``N`` images at ``(Py, Px)`` occluder positions.

    Arrays (``P = (Py, Px)`` positions, top-left corners ``pos_y[i], pos_x[j]``):

    * ``prob`` ``(N, Py, Px)``: ``p(target | x with the occluder at (i, j))``, softmax.
    * ``logit`` ``(N, Py, Px)``: the target's score before softmax.
    * ``top_class`` / ``top_prob`` ``(N, Py, Px)``: the most probable class there, and its p;
      ``top_class_image`` ``(N, H, W)``: the class of the nearest occluder centre.
    * ``activation`` ``(N, Py, Px)`` or None: ``sum_{u,v} A_layer(x_occ)[channel, u, v]``.
    * ``prob_image`` ``(N, H, W)``: ``prob`` at image resolution (each value at its occluder's
      centre, bilinear in between, constant beyond the outermost centres); likewise
      ``activation_image``.
    * ``clean_prob``, ``clean_logit``, ``predicted``, ``targets`` ``(N,)``: the unoccluded
      image (``targets``: the class mapped in each image).
    * ``images`` ``(N, C, H, W)``: the inputs in [0, 1] for overlays.

    ``labels`` are the model's class names (None: it has none); ``stats`` says how the maps
    were computed (seconds, occluded copies evaluated, the engine's share of the work).
    """

    prob: torch.Tensor
    logit: torch.Tensor
    top_class: torch.Tensor
    top_prob: torch.Tensor
    prob_image: torch.Tensor
    top_class_image: torch.Tensor
    targets: torch.Tensor
    predicted: torch.Tensor
    clean_prob: torch.Tensor
    clean_logit: torch.Tensor
    images: torch.Tensor
    pos_y: list[int]
    pos_x: list[int]
    window: tuple[int, int]
    stride: tuple[int, int]
    fill: str
    mode: str
    labels: list[str] | None = None
    activation: torch.Tensor | None = None
    activation_image: torch.Tensor | None = None
    layer: str | None = None
    channel: list[int] | None = None
    ssim: list[float | None] | None = None
    exact_prob: torch.Tensor | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    kind = "occlusion"

    about = ("Occlusion (Zeiler & Fergus 2014, Fig. 7): a grey square slides over the image and "
             "at each position the model's probability of the target class is recorded. Dark "
             "regions of the probability map are where hiding that part of the image lowers the "
             "probability: the parts the decision rests on. The class map shows which class "
             "wins when that part is hidden.")

    def label(self, k: int) -> str:
        return self.labels[k] if self.labels is not None and 0 <= k < len(self.labels) else str(k)

    def arrays(self) -> dict[str, Any]:
        out = {"prob": self.prob, "logit": self.logit, "top_class": self.top_class,
               "top_prob": self.top_prob, "prob_image": self.prob_image,
               "top_class_image": self.top_class_image,
               "targets": self.targets, "predicted": self.predicted,
               "clean_prob": self.clean_prob, "clean_logit": self.clean_logit,
               "pos_y": np.asarray(self.pos_y), "pos_x": np.asarray(self.pos_x),
               "images": self.images}
        if self.activation is not None:
            out["activation"] = self.activation
            out["activation_image"] = self.activation_image
        if self.exact_prob is not None:
            out["exact_prob"] = self.exact_prob
        return out

    def tables(self) -> dict[str, Any]:
        import pandas as pd

        rows = []
        prob, logit, top, top_p = (as_numpy(a) for a in
                                   (self.prob, self.logit, self.top_class, self.top_prob))
        act = None if self.activation is None else as_numpy(self.activation)
        for n in range(prob.shape[0]):
            for i, y in enumerate(self.pos_y):
                for j, x in enumerate(self.pos_x):
                    r = {"image": n, "y": y, "x": x, "prob": float(prob[n, i, j]),
                         "logit": float(logit[n, i, j]), "top_class": int(top[n, i, j]),
                         "top_label": self.label(int(top[n, i, j])),
                         "top_prob": float(top_p[n, i, j])}
                    if act is not None:
                        r["activation"] = float(act[n, i, j])
                    rows.append(r)
        return {"positions": pd.DataFrame(rows)}

    def pictures(self) -> dict[str, np.ndarray]:
        return occlusion_pictures(self)

    def per_image(self) -> list[list[str]]:
        return [[f"image_{k}", f"overlay_{k}", f"prob_{k}", f"top_class_{k}"]
                + ([] if self.activation_image is None else [f"activation_{k}"])
                for k in range(len(self.images))]

    def figures(self) -> list[dict[str, Any]]:
        out = []
        top = as_numpy(self.top_class)
        colours = class_colours(self)
        for k in range(len(self.targets)):
            t, p = int(self.targets[k]), int(self.predicted[k])
            clean = float(self.clean_prob[k])
            prob = scale(0.0, 1.0, f"p({self.label(t)}), the target's probability", PROB_CMAP,
                         marks={f"unoccluded {clean:.2f}": clean})
            present = sorted(set(top[k].ravel().tolist()))
            legend = [(colours[c % len(colours)], self.label(c)) for c in present]
            panels = [
                panel(f"image_{k}", "input", [f"target: {self.label(t)}",
                                               f"predicted: {self.label(p)}",
                                               f"p(target) unoccluded = {clean:.3f}"],
                      kind="image"),
                panel(f"prob_{k}", "p(target) with the occluder here", scale=prob),
                panel(f"overlay_{k}", "over the image", scale=prob),
                panel(f"top_class_{k}", "most probable class with the occluder here",
                      legend=legend)]
            if self.activation is not None:
                a = as_numpy(self.activation_image)[k]
                panels.append(panel(f"activation_{k}", f"activation of {self.layer} "
                                    f"channel {self.channel[k] if self.channel else ''}",
                                    scale=scale(float(a.min()), float(a.max()),
                                                "total activation of the feature map")))
            note = (f"window {self.window[0]}x{self.window[1]} px, stride "
                    f"{self.stride[0]}x{self.stride[1]}, fill {self.fill}; lowest p(target) "
                    f"{float(as_numpy(self.prob[k]).min()):.3f}")
            out.append(figure(f"image {k}", panels, note))
        return out

    def info(self) -> dict[str, Any]:
        return {
            "window": list(self.window), "stride": list(self.stride), "fill": self.fill,
            "mode": self.mode, "positions": [len(self.pos_y), len(self.pos_x)],
            "targets": [int(t) for t in self.targets],
            "target_labels": [self.label(int(t)) for t in self.targets],
            "predicted": [int(t) for t in self.predicted],
            "predicted_labels": [self.label(int(t)) for t in self.predicted],
            "clean_prob": [float(p) for p in self.clean_prob],
            "layer": self.layer, "channel": self.channel, "ssim": self.ssim,
            "stats": self.stats,
        }

    def summary(self, names: Sequence[str] | None = None) -> list[str]:
        """A line per image (named by `names`, else ``image K``): its target and unoccluded
        p(target), the map's size, its lowest p(target) and, for the approximate mode, the
        SSIM against the exact map."""
        out = []
        for k in range(len(self.targets)):
            line = (f"{names[k] if names is not None else f'image {k}'}: target "
                    f"{self.label(int(self.targets[k]))} (p = {float(self.clean_prob[k]):.3f}), "
                    f"map {len(self.pos_y)}x{len(self.pos_x)}, "
                    f"lowest p = {float(self.prob[k].min()):.3f}")
            if self.ssim is not None and self.ssim[k] is not None:
                line += f", SSIM vs exact = {self.ssim[k]:.3f}"
            out.append(line)
        return out
