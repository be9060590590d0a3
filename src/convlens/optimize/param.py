"""Parameterisations: the image batch from the tensors the optimiser changes, always in the
valid pixel range: `PixelImage` (pixels, projected on the range or squashed by a sigmoid) and
`FFTImage` (a spectrum scaled by 1/f, optionally in decorrelated colour, Olah et al. 2017)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import ConvlensError, unknown


class Parameterization:
    """Gives the image batch ``(B, C, H, W)`` in [0, 1] from tensors the optimiser changes."""

    def parameters(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def __call__(self) -> torch.Tensor:
        raise NotImplementedError

    def project(self) -> None:
        """Called after each step (no grad): keep the parameters valid."""

    @property
    def batch(self) -> int:
        return self.parameters()[0].shape[0]


def seeded_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


class PixelImage(Parameterization):
    """Pixels as the parameters: ``unit = offset + scale * p`` (per channel).

    ``squash="clamp"``: after each step the pixels are projected on [0, 1] (projected gradient
    descent, as in Simonyan et al. 2014 and Mahendran & Vedaldi 2015). ``squash="sigmoid"``:
    ``unit = sigmoid(offset + scale * p)`` (Olah et al. 2017's valid-range mapping).

    Args:
        init: ``(B, C, H, W)`` the initial parameters p (not the image).
        offset, scale: numbers or ``(C,)``.
    """

    def __init__(self, init: torch.Tensor, offset=0.0, scale=1.0, squash: str = "clamp"):
        if squash not in ("clamp", "sigmoid"):
            raise unknown("pixel squash", squash, ["clamp", "sigmoid"])
        self.p = init.detach().clone().requires_grad_(True)
        c = init.shape[1]
        self.offset = _channel_vec(offset, c, init)
        self.scale = _channel_vec(scale, c, init)
        self.squash = squash

    def parameters(self) -> list[torch.Tensor]:
        return [self.p]

    def __call__(self) -> torch.Tensor:
        u = self.offset + self.scale * self.p
        return torch.sigmoid(u) if self.squash == "sigmoid" else u

    def project(self) -> None:
        if self.squash == "clamp":
            lo = (0 - self.offset) / self.scale
            hi = (1 - self.offset) / self.scale
            self.p.data.copy_(torch.maximum(torch.minimum(self.p.data, torch.maximum(lo, hi)),
                                            torch.minimum(lo, hi)))

    @classmethod
    def random(cls, batch: int, size: Sequence[int], sd: float = 0.01, seed: int = 0,
               squash: str = "sigmoid", device=None, dtype=torch.float32) -> PixelImage:
        """Grey plus Gaussian noise of std `sd` (pre-sigmoid with ``squash="sigmoid"``)."""
        g = seeded_generator(seed)
        noise = torch.randn((batch, *size), generator=g) * sd
        if squash == "sigmoid":
            return cls(noise.to(device, dtype), squash="sigmoid")
        return cls((0.5 + noise).to(device, dtype), squash="clamp")


def _channel_vec(v, c: int, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=like.dtype, device=like.device).flatten()
    if t.numel() == 1:
        t = t.expand(c)
    if t.numel() != c:
        raise ConvlensError(f"expected 1 or {c} values per channel, got {t.numel()}")
    return t.reshape(1, c, 1, 1).clone()


def color_matrix(images: torch.Tensor) -> torch.Tensor:
    """A ``(C, C)`` square root of the channel covariance of `images` ``(N, C, H, W)`` in [0, 1],
    scaled so that its largest column has norm 1: multiplying decorrelated channels by it gives
    channels correlated as the data's (Olah et al. 2017, "decorrelated colour space")."""
    c = images.shape[1]
    px = images.detach().double().permute(1, 0, 2, 3).reshape(c, -1)
    cov = torch.cov(px)
    vals, vecs = torch.linalg.eigh(cov)
    root = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T
    norm = root.norm(dim=0).max()
    if not float(norm) > 0:
        raise ConvlensError("colour statistics: the images have no colour variance")
    return (root / norm).float()


class FFTImage(Parameterization):
    """An image parameterised by its 2-D Fourier spectrum, each frequency scaled by ``1/f``
    (Olah et al., Distill 2017, "Preconditioning and parameterization"): gradient steps then
    change every spatial frequency about equally in a natural image's energy, which removes
    the high-frequency patterns plain pixel ascent produces.

    ``unit = sigmoid(M @ irfft2(spectrum * w))`` with ``w_f = 1 / max(|f|, 1/max(H, W))^decay``
    normalised to root-mean-square 1 (so the initial image is grey plus noise of std ~`sd`),
    and ``M`` an optional ``(C, C)`` colour matrix (`color_matrix`): the parameters then live
    in a decorrelated colour space.

    Args:
        batch: images B.  size: ``(C, H, W)``.  sd: std of the initial spectrum.
        decay: the exponent of 1/f.  color: None or a ``(C, C)`` matrix.  seed: initial noise.
    """

    def __init__(self, batch: int, size: Sequence[int], sd: float = 0.01, decay: float = 1.0,
                 color: torch.Tensor | None = None, seed: int = 0, device=None,
                 dtype=torch.float32):
        c, h, w = (int(v) for v in size)
        self.size = (c, h, w)
        fy = torch.fft.fftfreq(h).view(-1, 1)
        fx = torch.fft.rfftfreq(w).view(1, -1)
        f = (fx ** 2 + fy ** 2).sqrt().clamp_min(1.0 / max(h, w))
        wgt = f.pow(-decay)
        self.weight = (wgt / wgt.pow(2).mean().sqrt()).to(device, dtype)
        g = seeded_generator(seed)
        spec = torch.randn((batch, c, h, w // 2 + 1, 2), generator=g) * sd
        self.spectrum = spec.to(device, dtype).requires_grad_(True)
        if color is not None:
            color = torch.as_tensor(color, dtype=dtype).to(device)
            if color.shape != (c, c):
                raise ConvlensError(f"colour matrix must be ({c}, {c}), got {tuple(color.shape)}")
        self.color = color

    def parameters(self) -> list[torch.Tensor]:
        return [self.spectrum]

    def __call__(self) -> torch.Tensor:
        _c, h, w = self.size
        spec = torch.view_as_complex(self.spectrum) * self.weight
        img = torch.fft.irfft2(spec, s=(h, w), norm="ortho")
        # ortho: an image of N pixels with unit-variance spectrum has unit-variance pixels
        if self.color is not None:
            img = torch.einsum("ij,bjhw->bihw", self.color, img)
        return torch.sigmoid(img)
