"""Image optimisation: objectives, parameterisations, transforms and the render loop.

The core under `invert` (Mahendran & Vedaldi 2015), `class_model` (Simonyan et al. 2014, §2) and
`feature_visualization` (Olah et al., Distill 2017), split in four as Lucid splits it:

* an **objective** says what to maximise, one value per image ``(B,)``; objectives add
  (``a + b``) and scale (``0.5 * a``, ``a - b``): `channel`, `neuron`, `direction`,
  `deepdream`, `class_logit`, `match` (a representation to reconstruct) and the image priors
  `l2`, `alpha_norm`, `total_variation`;
* a **parameterisation** gives the image batch from the tensors the optimiser changes, always
  in the valid pixel range: `PixelImage` (pixels, projected on the range or squashed by a
  sigmoid) and `FFTImage` (a spectrum scaled by 1/f, optionally in decorrelated colour);
* **transforms** move the image at random before each step (`jitter`, `random_scale`,
  `random_rotate`, with `pad` naming what fills the uncovered border), one resampling per step;
* `render`, the loop: the only place that steps. It never draws or saves anything.

Images are handled in *unit* space, ``[0, 1]`` per channel (the `Lens`'s ``value_range``
mapped to 0..1); the model sees ``lens.normalize(lo + unit * (hi - lo))``. Every image of a
batch is optimised for its own value of the objective (the model runs in eval mode, so images
do not interact): a whole layer's channels are one batch.

Example::

    obj = channel("features.7", range(96))                # one image per channel
    out = render(lens, obj, FFTImage(96, lens.input_size), standard_transforms(64), steps=256)
    out.images.shape                                      # (96, 3, 64, 64), in [0, 1]
"""
from .objectives import (
    Context,
    Objective,
    alpha_norm,
    channel,
    class_logit,
    deepdream,
    direction,
    l2,
    match,
    neuron,
    total_variation,
)
from .param import FFTImage, Parameterization, PixelImage, color_matrix
from .render import Rendered, Schedule, render, to_unit
from .transforms import (
    FILLS,
    Transform,
    apply_transforms,
    jitter,
    pad,
    random_rotate,
    random_scale,
    standard_transforms,
)

__all__ = ["Context", "Objective", "alpha_norm", "channel", "class_logit", "deepdream",
           "direction", "l2", "match", "neuron", "total_variation", "FFTImage",
           "Parameterization", "PixelImage", "color_matrix", "Rendered", "Schedule", "render",
           "to_unit", "FILLS", "Transform", "apply_transforms", "jitter", "pad",
           "random_rotate", "random_scale", "standard_transforms"]
