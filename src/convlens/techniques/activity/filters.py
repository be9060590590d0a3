"""Filter weights and how noisy they are (METHODS.md §1; the seed's "Conv/FC Filters").

Noise score of a filter ``w`` (``C_in × k × k``, or a linear unit's weights reshaped to the
image ``C × H × W``): the share of its spectral energy above half the Nyquist frequency,

    P(f) = Σ_c |DFT_32(w_c)(f)|²,   score(w) = Σ_{max(|f_y|, |f_x|) > 1/4} P(f) / Σ_f P(f)

with frequencies in cycles per pixel (Nyquist = 1/2) and the DFT zero-padded to 32 × 32 (at
least the filter's size) so that a 3 × 3 kernel is judged on its continuous spectrum, not on
three frequency bins. White noise scores 0.75 in expectation (the high band is 3/4 of the
frequency square); a smooth, blob- or Gabor-like filter scores far less. A filter is *noisy*
when its score exceeds `NOISE_THRESHOLD`, a layer when the median of its filters does; the
threshold comes from measurement on the built-in nets (docs/filters.md).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ...errors import ConvlensError
from ...hooks import model_of
from ...lens import Lens, as_lens
from .results import FiltersResult

NOISE_THRESHOLD = 0.69
PAD = 32


def noise_score(w: np.ndarray | torch.Tensor, pad: int = PAD) -> np.ndarray:
    """Share of spectral energy above half Nyquist, per filter. ``w: (F, C, h, w)`` → ``(F,)``."""
    w = np.asarray(w.detach().cpu() if hasattr(w, "detach") else w, dtype=np.float64)
    if w.ndim == 2:
        w = w[None, None]
    elif w.ndim == 3:
        w = w[:, None]
    h, wd = w.shape[-2:]
    sy, sx = max(pad, h), max(pad, wd)
    power = (np.abs(np.fft.fft2(w, s=(sy, sx))) ** 2).sum(1)
    # Share of each frequency bin below half Nyquist per axis (a bin centred exactly on 1/4
    # counts half), so that white noise scores exactly 3/4 as in the continuum.
    def low(n):
        f = np.abs(np.fft.fftfreq(n))
        return np.where(np.isclose(f, 0.25), 0.5, (f < 0.25).astype(float))
    high = 1.0 - low(sy)[:, None] * low(sx)[None, :]
    total = power.sum((-1, -2))
    return np.where(total > 0, (power * high).sum((-1, -2)) / np.maximum(total, 1e-300), 0.0)


def first_conv(lens) -> str:
    for name, m in model_of(lens).named_modules():
        if isinstance(m, nn.Conv2d):
            return name
    raise ConvlensError("the model has no Conv2d layer; name a layer with --layer")


def filters(lens, layer: str | None = None, threshold: float = NOISE_THRESHOLD) -> FiltersResult:
    """The weights of a conv layer (default: the first) or of a linear layer that sees the image.

    Conv weights ``(C_out, C_in, k, k)``; the first layer's are shown as RGB (grey for one input
    channel) tiles, deeper ones as grids of input-channel slices. A linear layer whose input is
    the flattened image (``in_features == C·H·W``) is reshaped to image-shaped templates.

    Example::

        res = filters(lens)            # first conv layer
        res.verdict, res.scores        # "smooth" / "noisy", per-filter noise scores
    """
    if isinstance(lens, nn.Module) and not isinstance(lens, Lens):  # channels from the 1st conv
        conv = next((m for m in lens.modules() if isinstance(m, nn.Conv2d)), None)
        lens = as_lens(lens, torch.zeros(conv.in_channels if conv else 3, 1, 1))
    lens = as_lens(lens, None)
    layer = layer or first_conv(lens)
    mod = lens.layer(layer)
    c, h, w = lens.input_size
    if isinstance(mod, nn.Conv2d):
        weights = mod.weight.detach().cpu().float().clone()
        sees_image = mod.in_channels == c and layer == first_conv(lens)
    elif isinstance(mod, nn.Linear):
        if mod.in_features != c * h * w:
            raise ConvlensError(
                f"{layer} is a linear layer of {mod.in_features} inputs, "
                f"not the {c}x{h}x{w} image; "
                "only conv layers and linear layers that see the image have filter pictures")
        weights = mod.weight.detach().cpu().float().reshape(-1, c, h, w).clone()
        sees_image = True
    else:
        raise ConvlensError(f"{layer} is a {type(mod).__name__}: filters are shown for Conv2d "
                            "and image-sized Linear layers")
    return FiltersResult(layer, weights, noise_score(weights), threshold, sees_image)
