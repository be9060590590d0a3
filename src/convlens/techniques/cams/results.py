"""The result of the CAM family: `CamMaps`, Grad-CAM's `GradientMaps` with the map at the
layer's resolution (``cam``) and each method's own words for what the map holds."""
from __future__ import annotations

from dataclasses import dataclass, fields

from ..gradients.results import GradientMaps

#: what each method's map holds (the colour bar's label)
MAP_UNITS = {
    "grad_cam_plus_plus": "Grad-CAM++: ReLU of the activations weighted by alpha * ReLU(dS/dA)",
    "xgrad_cam": "XGrad-CAM: ReLU of the activations weighted by their share of dS/dA",
    "hires_cam": "HiResCAM: ReLU of sum_k dS/dA^k * A^k (no averaging)",
    "layer_cam": "Layer-CAM: ReLU of sum_k ReLU(dS/dA^k) * A^k",
    "score_cam": "Score-CAM: ReLU of the activations weighted by the softmax of masked scores",
    "ablation_cam": "Ablation-CAM: ReLU of the activations weighted by the score drop",
    "eigen_cam": "Eigen-CAM: the activations projected on their first principal direction",
}
#: what each method shows and how to read it (the report's `about`)
ABOUT = {
    "grad_cam_plus_plus": "Grad-CAM++ (Chattopadhay et al. 2018): Grad-CAM with each position's "
                          "positive gradient weighted by a coefficient from the second and "
                          "third derivatives, so that several instances of a class, and small "
                          "parts of it, all count.",
    "xgrad_cam": "XGrad-CAM (Fu et al. 2020): the gradient averaged with the activations as "
                 "weights (not uniformly), chosen so that the map satisfies the sensitivity and "
                 "conservation axioms as well as it can.",
    "hires_cam": "HiResCAM (Draelos & Carin 2020): the gradient times the activations, summed "
                 "over channels at each position without Grad-CAM's averaging; it only "
                 "highlights locations the model used (for a CAM-style head, exactly).",
    "layer_cam": "Layer-CAM (Jiang et al. 2021): each position weighted by its own positive "
                 "gradient; reliable at earlier, finer layers too.",
    "score_cam": "Score-CAM (Wang et al. 2020): no gradient; each channel's upsampled map masks "
                 "the image, and the class score of that masked image (softmax over channels) "
                 "is the channel's weight.",
    "ablation_cam": "Ablation-CAM (Desai & Ramaswamy 2020): no gradient; each channel's weight "
                    "is the relative drop of the class score when the channel is set to zero.",
    "eigen_cam": "Eigen-CAM (Muhammad & Yeasin 2020): no gradient and no class: the layer's "
                 "activations projected on their first principal direction, the dominant "
                 "pattern the layer sees.",
}


@dataclass
class CamMaps(GradientMaps):
    """Maps of one CAM method for N images: `GradientMaps` with ``cam`` ``(N, h, w)`` at the
    layer's resolution and ``map`` ``(N, H, W)`` upsampled bilinearly to the input."""

    @property
    def about(self) -> str:  # type: ignore[override]
        return ABOUT.get(self.kind, "")

    @property
    def units(self) -> str:
        return MAP_UNITS.get(self.kind, "|signal|")

    @classmethod
    def of(cls, maps: GradientMaps) -> "CamMaps":
        """The same maps as a `CamMaps`."""
        return cls(**{f.name: getattr(maps, f.name) for f in fields(maps)})
