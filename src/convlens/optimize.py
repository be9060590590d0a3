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
from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConvlensError, unknown
from .hooks import find_module, forward_hooks, model_of, preserved


# ==========================================================================================
# objectives
# ==========================================================================================
class Context:
    """What an objective reads in one step.

    Attributes:
        batch: number of images B.
        unit: ``(B, C, H, W)`` the parameterised images in [0, 1], before the transforms.
        x: ``(B, C, H, W)`` the same images as model input (normalised), before the transforms.
        logits: ``(B, K)`` class scores before softmax of the transformed images (None when
            no objective asked for them and the forward pass stopped early).
    """

    def __init__(self, acts: dict[str, torch.Tensor], logits: torch.Tensor | None,
                 unit: torch.Tensor, x: torch.Tensor | Callable[[], torch.Tensor]):
        self._acts, self.logits, self.unit = acts, logits, unit
        self._x = x
        self.batch = unit.shape[0]

    @property
    def x(self) -> torch.Tensor:
        if callable(self._x):  # computed on first use: most objectives never read it
            self._x = self._x()
        return self._x

    def act(self, layer: str) -> torch.Tensor:
        """Output of module `layer` (its last call) for the transformed images, with its graph."""
        if layer not in self._acts:
            raise ConvlensError(f"layer {layer!r} was not called in the forward pass")
        return self._acts[layer]


class Objective:
    """A function of a `Context` giving one value per image, ``(B,)``, to be maximised.

    Objectives compose: ``a + b``, ``a - b``, ``2 * a``, ``-a``; a sum asks for the layers of
    both. `batch` is the number of images the objective is written for (e.g. one per channel),
    None when it fits any batch.
    """

    def __init__(self, fn: Callable[[Context], torch.Tensor], name: str,
                 layers: Iterable[str] = (), logits: bool = False, batch: int | None = None):
        self.fn, self.name = fn, name
        self.layers = tuple(dict.fromkeys(layers))
        self.logits, self.batch = bool(logits), batch

    def __call__(self, ctx: Context) -> torch.Tensor:
        v = self.fn(ctx)
        if v.dim() == 0:
            v = v.expand(ctx.batch)
        return v

    def __add__(self, other) -> Objective:
        if isinstance(other, numbers.Number):
            if other == 0:
                return self
            return Objective(lambda c: self(c) + other, f"{self.name} + {other:g}",
                             self.layers, self.logits, self.batch)
        if not isinstance(other, Objective):
            return NotImplemented
        return Objective(lambda c: self(c) + other(c), f"{self.name} + {other.name}",
                         self.layers + other.layers, self.logits or other.logits,
                         _join_batch(self, other))

    __radd__ = __add__

    def __mul__(self, k) -> Objective:
        if not isinstance(k, numbers.Number):
            return NotImplemented
        k = float(k)
        return Objective(lambda c: k * self(c), f"{k:g} * ({self.name})", self.layers,
                         self.logits, self.batch)

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return -1.0 * self

    def __sub__(self, other) -> Objective:
        return self + (-1.0 * other)

    def __rsub__(self, other) -> Objective:
        return (-1.0 * self) + other

    def __repr__(self) -> str:
        return f"Objective({self.name})"


def _join_batch(a: Objective, b: Objective) -> int | None:
    if a.batch is not None and b.batch is not None and a.batch != b.batch:
        raise ConvlensError(f"objectives written for different batches cannot be added: "
                            f"{a.name!r} has {a.batch} images, {b.name!r} has {b.batch}")
    return a.batch if a.batch is not None else b.batch


def _per_image(v, what: str) -> tuple[torch.Tensor | int, int | None]:
    """An int (same for every image) or a sequence (one per image) as an index."""
    if isinstance(v, numbers.Integral):
        return int(v), None
    if isinstance(v, (range, list, tuple)) or (
            isinstance(v, torch.Tensor) and v.dim() == 1):
        idx = torch.as_tensor(list(v) if not isinstance(v, torch.Tensor) else v, dtype=torch.long)
        if idx.numel() == 0:
            raise ConvlensError(f"{what}: an empty list")
        return idx, int(idx.numel())
    raise ConvlensError(f"{what} must be an int or a list of ints, got {type(v).__name__}")


def _check_channels(layer: str, act: torch.Tensor, c) -> None:
    if act.dim() < 2:
        raise ConvlensError(f"layer {layer!r} gives shape {tuple(act.shape)}: no channels")
    n = act.shape[1]
    hi = int(c.max()) if isinstance(c, torch.Tensor) else c
    lo = int(c.min()) if isinstance(c, torch.Tensor) else c
    if lo < 0 or hi >= n:
        bad = hi if hi >= n else lo
        raise ConvlensError(f"channel {bad} is out of range: layer {layer!r} has {n} channels "
                            f"(0..{n - 1})")


def _pick(act: torch.Tensor, c) -> torch.Tensor:
    """``act[i, c_i]`` for every image (c per image) or ``act[:, c]``: ``(B, ...)``."""
    if isinstance(c, torch.Tensor):
        if c.numel() != act.shape[0]:
            raise ConvlensError(f"{c.numel()} channels given for a batch of {act.shape[0]} images")
        return act[torch.arange(act.shape[0], device=act.device), c.to(act.device)]
    return act[:, c]


def channel(layer: str, c) -> Objective:
    """Mean activation of channel `c` of `layer` over positions (Olah et al. 2017).

    ``c``: one channel for every image, or a list with one channel per image (a whole layer in
    one batch: ``channel(layer, range(C))``)."""
    idx, batch = _per_image(c, "channel")

    def fn(ctx: Context) -> torch.Tensor:
        a = ctx.act(layer)
        _check_channels(layer, a, idx)
        a = _pick(a, idx)
        return a.flatten(1).mean(1) if a.dim() > 1 else a
    return Objective(fn, f"channel({layer}, {_show(c)})", [layer], batch=batch)


def neuron(layer: str, c, y: int | None = None, x: int | None = None) -> Objective:
    """Activation of channel `c` of `layer` at one position ``(y, x)`` (default: the centre)."""
    idx, batch = _per_image(c, "channel")

    def fn(ctx: Context) -> torch.Tensor:
        a = ctx.act(layer)
        _check_channels(layer, a, idx)
        a = _pick(a, idx)
        if a.dim() == 1:
            if y is not None or x is not None:
                raise ConvlensError(f"layer {layer!r} has no positions: give the neuron without "
                                    "y, x")
            return a
        if a.dim() != 3:
            raise ConvlensError(f"layer {layer!r} gives shape {tuple(a.shape)}: expected "
                                "(N, C, H, W) for a neuron")
        h, w = a.shape[1:]
        yy = h // 2 if y is None else y
        xx = w // 2 if x is None else x
        if not (0 <= yy < h and 0 <= xx < w):
            raise ConvlensError(f"position ({yy}, {xx}) is outside layer {layer!r}'s maps of "
                                f"size ({h}, {w})")
        return a[:, yy, xx]
    where = "" if y is None and x is None else f", {y}, {x}"
    return Objective(fn, f"neuron({layer}, {_show(c)}{where})", [layer], batch=batch)


def direction(layer: str, v) -> Objective:
    """Mean over positions of ``<A_l(p), v>``: a direction in `layer`'s channel space (Szegedy
    et al. 2014; the scan's random directions). ``v``: ``(C,)`` for every image or ``(B, C)``."""
    v = torch.as_tensor(v, dtype=torch.float32)
    if v.dim() not in (1, 2):
        raise ConvlensError(f"direction: v must be (C,) or (B, C), got shape {tuple(v.shape)}")
    batch = v.shape[0] if v.dim() == 2 else None

    def fn(ctx: Context) -> torch.Tensor:
        a = ctx.act(layer)
        if a.dim() < 2 or a.shape[1] != v.shape[-1]:
            raise ConvlensError(f"direction has {v.shape[-1]} components but layer {layer!r} has "
                                f"{a.shape[1] if a.dim() > 1 else 0} channels")
        vv = v.to(a.device, a.dtype)
        vv = vv.view(*vv.shape, *([1] * (a.dim() - 2)))
        if vv.dim() == a.dim() - 1:
            vv = vv.unsqueeze(0)
        return (a * vv).sum(1).flatten(1).mean(1) if a.dim() > 2 else (a * vv).sum(1)
    return Objective(fn, f"direction({layer})", [layer], batch=batch)


def deepdream(layer: str) -> Objective:
    """Mean squared activation of the whole layer (Mordvintsev et al., DeepDream 2015)."""
    return Objective(lambda ctx: ctx.act(layer).pow(2).flatten(1).mean(1),
                     f"deepdream({layer})", [layer])


def class_logit(c) -> Objective:
    """Score of class `c` before softmax, ``S_c`` (Simonyan et al. 2014, §2); `c` an int or
    one class per image."""
    idx, batch = _per_image(c, "class")

    def fn(ctx: Context) -> torch.Tensor:
        s = ctx.logits
        if s is None or s.dim() != 2:
            raise ConvlensError("the model must return class scores (N, K) for class_logit")
        k = s.shape[1]
        hi = int(idx.max()) if isinstance(idx, torch.Tensor) else idx
        lo = int(idx.min()) if isinstance(idx, torch.Tensor) else idx
        if lo < 0 or hi >= k:
            raise ConvlensError(f"class {hi if hi >= k else lo} is out of range: the model "
                                f"gives {k} scores (0..{k - 1})")
        return _pick(s, idx)
    return Objective(fn, f"class_logit({_show(c)})", logits=True, batch=batch)


def match(layer: str, target: torch.Tensor, rows: Sequence[int] | torch.Tensor | None = None
          ) -> Objective:
    """Minus the normalised reconstruction error ``-||Phi(x) - Phi0||^2 / ||Phi0||^2`` of each
    image's `layer` representation (Mahendran & Vedaldi 2015, eq. 1 and §3.3).

    ``target``: ``(n, ...)`` the representations Phi0 to reconstruct; ``rows``: the n images
    of the batch that reconstruct them (default: all, in order). Other images get 0."""
    target = target.detach()
    norm2 = target.flatten(1).pow(2).sum(1)
    if bool((norm2 == 0).any()):
        raise ConvlensError(f"layer {layer!r}: a representation to reconstruct is all zero, so "
                            "its normalised error is undefined")
    rows_t = None if rows is None else torch.as_tensor(rows, dtype=torch.long)

    def fn(ctx: Context) -> torch.Tensor:
        a = ctx.act(layer)
        sel = a if rows_t is None else a[rows_t.to(a.device)]
        if sel.shape != target.shape:
            raise ConvlensError(f"layer {layer!r}: representation of shape {tuple(sel.shape)} "
                                f"does not match the target's {tuple(target.shape)}")
        t = target.to(a.device, a.dtype)
        err = (sel - t).flatten(1).pow(2).sum(1) / norm2.to(a.device, a.dtype)
        if rows_t is None:
            return -err
        out = a.new_zeros(ctx.batch)
        return out.index_put((rows_t.to(a.device),), -err)
    return Objective(fn, f"match({layer})", [layer],
                     batch=None if rows_t is not None else int(target.shape[0]))


def _weights(weight, ctx: Context, like: torch.Tensor) -> torch.Tensor | float:
    if isinstance(weight, torch.Tensor):
        return weight.to(like.device, like.dtype)
    return float(weight)


def _scaled(ctx: Context, scale) -> torch.Tensor:
    if scale is None:
        return ctx.x
    s = torch.as_tensor(scale, dtype=ctx.x.dtype, device=ctx.x.device)
    return ctx.x * (s.view(1, -1, 1, 1) if s.dim() == 1 else s)


def l2(weight: float | torch.Tensor = 1.0) -> Objective:
    """``weight * ||x||^2`` of the model-input image (zero-centred pixels), per image: the
    prior of Simonyan et al. 2014, §2 (subtract it: ``class_logit(c) - l2(lam)``)."""
    return Objective(lambda ctx: _weights(weight, ctx, ctx.x) * ctx.x.flatten(1).pow(2).sum(1),
                     "l2")


def alpha_norm(alpha: float = 6.0, weight: float | torch.Tensor = 1.0, scale=None) -> Objective:
    """``weight * sum |s * x|^alpha`` over the pixels of each image: the alpha-norm prior of
    Mahendran & Vedaldi (2015, eq. 3). `scale` s (a number or one per channel) maps the
    model-input image to the units the prior is written in; `weight` may be one per image."""
    def fn(ctx: Context) -> torch.Tensor:
        v = _scaled(ctx, scale)
        return _weights(weight, ctx, v) * v.abs().pow(alpha).flatten(1).sum(1)
    return Objective(fn, f"alpha_norm({alpha:g})")


def total_variation(beta: float = 2.0, weight: float | torch.Tensor = 1.0, scale=None) -> Objective:
    """``weight * sum_{i,j} ((x[i,j+1] - x[i,j])^2 + (x[i+1,j] - x[i,j])^2)^(beta/2)``, per
    image and channel (Mahendran & Vedaldi 2015, eq. 4; the last row and column have no
    forward difference). `scale` and `weight` as for `alpha_norm`."""
    def fn(ctx: Context) -> torch.Tensor:
        v = _scaled(ctx, scale)
        dh = v[..., :-1, 1:] - v[..., :-1, :-1]
        dv = v[..., 1:, :-1] - v[..., :-1, :-1]
        s = dh.pow(2) + dv.pow(2)
        s = s if beta == 2 else s.clamp_min(1e-12).pow(beta / 2)
        return _weights(weight, ctx, v) * s.flatten(1).sum(1)
    return Objective(fn, f"total_variation({beta:g})")


def _show(c) -> str:
    if isinstance(c, numbers.Integral):
        return str(int(c))
    c = list(c)
    return f"[{len(c)} values]" if len(c) > 4 else str([int(v) for v in c])


# ==========================================================================================
# parameterisations
# ==========================================================================================
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


def _gen(seed: int) -> torch.Generator:
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
        g = _gen(seed)
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
        g = _gen(seed)
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


# ==========================================================================================
# transforms
# ==========================================================================================
FILLS = ("grey", "reflect", "border", "zeros")


@dataclass(frozen=True)
class Transform:
    """One random geometric change of the image before a step (Olah et al. 2017,
    "transformation robustness"). Build with `jitter`, `random_scale`, `random_rotate`, `pad`.

    Consecutive transforms are composed into one affine map and applied with a single bilinear
    resampling; integer jitter moves pixels exactly. The image keeps its size (a classifier
    with fully connected layers takes one input size); `pad` says what fills the border the
    moves uncover (Lucid pads the canvas instead, which only a fully convolutional net allows).
    """

    kind: str
    values: tuple = ()
    fill: str = "grey"

    def matrix(self, batch: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor | None:
        """``(B, 3, 3)`` sampling matrices in normalised coordinates, or None (pad)."""
        eye = torch.eye(3).repeat(batch, 1, 1)
        if self.kind == "pad":
            return None
        if self.kind == "jitter":
            d = int(self.values[0])
            if d == 0:
                return eye
            shift = torch.randint(-d, d + 1, (batch, 2), generator=gen).float()
            eye[:, 0, 2] = shift[:, 0] * 2.0 / w
            eye[:, 1, 2] = shift[:, 1] * 2.0 / h
            return eye
        choice = torch.randint(0, len(self.values), (batch,), generator=gen)
        v = torch.tensor(self.values, dtype=torch.float32)[choice]
        if self.kind == "scale":  # sampling at p / s shows the image magnified by s
            eye[:, 0, 0] = 1.0 / v
            eye[:, 1, 1] = 1.0 / v
            return eye
        if self.kind == "rotate":
            t = v * math.pi / 180.0
            # normalised coordinates of a non-square image: rotate in pixel units
            eye[:, 0, 0] = torch.cos(t)
            eye[:, 0, 1] = -torch.sin(t) * h / w
            eye[:, 1, 0] = torch.sin(t) * w / h
            eye[:, 1, 1] = torch.cos(t)
            return eye
        raise ConvlensError(f"unknown transform {self.kind!r}")


def jitter(d: int) -> Transform:
    """Move each image by a random whole number of pixels in ``[-d, d]``, per axis."""
    if int(d) < 0:
        raise ConvlensError(f"jitter must be >= 0 pixels, got {d}")
    return Transform("jitter", (int(d),))


def random_scale(scales: Sequence[float]) -> Transform:
    """Scale each image about its centre by a factor drawn from `scales`."""
    scales = tuple(float(s) for s in scales)
    if not scales or min(scales) <= 0:
        raise ConvlensError(f"scales must be positive numbers, got {scales}")
    return Transform("scale", scales)


def random_rotate(degrees: Sequence[float]) -> Transform:
    """Rotate each image about its centre by an angle (degrees) drawn from `degrees`."""
    degrees = tuple(float(a) for a in degrees)
    if not degrees:
        raise ConvlensError("random_rotate needs at least one angle")
    return Transform("rotate", degrees)


def pad(fill: str = "grey") -> Transform:
    """What fills pixels that the moves bring in from outside the image: ``grey`` (mid-range,
    Lucid's constant 0.5), ``reflect``, ``border`` (edge pixels repeated) or ``zeros``."""
    if fill not in FILLS:
        raise unknown("fill", fill, FILLS)
    return Transform("pad", (), fill)


def standard_transforms(size: int) -> list[Transform]:
    """Olah et al. (2017)'s robustness recipe scaled to an image side of `size` pixels: grey
    fill, jitter of size/16, scale by 0.95..1.05, rotate by -5..5 degrees, jitter of size/32."""
    big, small = max(1, round(size / 16)), max(1, round(size / 32))
    return [pad("grey"), jitter(big), random_scale([1 + (i - 5) / 100 for i in range(11)]),
            random_rotate(range(-5, 6)), jitter(small)]


def apply_transforms(unit: torch.Tensor, transforms: Sequence[Transform],
                     gen: torch.Generator) -> torch.Tensor:
    """Each image of `unit` ``(B, C, H, W)`` moved by its own random draw of `transforms`."""
    if not transforms:
        return unit
    b, _, h, w = unit.shape
    fill = "grey"
    m = torch.eye(3).repeat(b, 1, 1)
    for t in transforms:
        a = t.matrix(b, h, w, gen)
        if a is None:
            fill = t.fill
        else:
            m = m @ a
    theta = m[:, :2, :].to(unit.device, unit.dtype)
    if torch.equal(m, torch.eye(3).expand_as(m)):
        return unit
    grid = F.affine_grid(theta, list(unit.shape), align_corners=False)
    mode = {"grey": "zeros", "zeros": "zeros", "reflect": "reflection", "border": "border"}[fill]
    src = unit - 0.5 if fill == "grey" else unit
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode=mode, align_corners=False)
    return out + 0.5 if fill == "grey" else out


# ==========================================================================================
# the render loop
# ==========================================================================================
@dataclass
class Schedule:
    """Learning rate per step: ``lr * factors[k]`` for the k-th part of the steps, the parts
    in proportion to `parts` (Mahendran & Vedaldi's code: ``0.004 x (1, 0.1, 0.01)`` over
    100, 200 and 100 iterations). `reset_momentum`: zero the momentum when the rate changes."""

    factors: tuple[float, ...] = (1.0,)
    parts: tuple[float, ...] = (1.0,)
    reset_momentum: bool = True

    def factor(self, step: int, steps: int) -> float:
        total = sum(self.parts)
        edge = 0.0
        for f, p in zip(self.factors, self.parts):
            edge += p / total * steps
            if step < round(edge):
                return f
        return self.factors[-1]


@dataclass
class Rendered:
    """What `render` gives back.

    Attributes:
        images: ``(B, C, H, W)`` the final images in [0, 1] (CPU).
        values: ``(B,)`` the objective of each final image, without transforms.
        history: ``(steps,)`` the mean objective over the batch at each step (transformed).
        logits: ``(B, K)`` class scores of the final images, or None.
    """

    images: torch.Tensor
    values: torch.Tensor
    history: torch.Tensor
    logits: torch.Tensor | None = None
    seconds: float = 0.0
    params: dict = field(default_factory=dict)


class _Stop(Exception):
    """Raised inside a forward hook once every layer an objective reads has run."""


class _Forward:
    """Runs the model with hooks that keep (a copy of) each requested layer's last output,
    with its graph; without logits it stops the forward pass after the last needed call."""

    def __init__(self, model: nn.Module, layers: Sequence[str], need_logits: bool):
        self.model, self.layers, self.need_logits = model, list(layers), need_logits
        self.acts: dict[str, torch.Tensor] = {}
        self.calls: dict[str, int] = {}
        self.expected: dict[str, int] | None = None

    def hook(self, name: str, module: nn.Module, out: torch.Tensor) -> None:
        # A copy now: a later in-place op (ReLU after this conv) must not change what we read.
        self.acts[name] = out.clone()
        self.calls[name] = self.calls.get(name, 0) + 1
        if (self.expected is not None and not self.need_logits
                and all(self.calls.get(n, 0) >= self.expected[n] for n in self.layers)):
            raise _Stop

    def __call__(self, x: torch.Tensor) -> torch.Tensor | None:
        self.acts.clear()
        self.calls.clear()
        try:
            out = self.model(x)
        except _Stop:
            return None
        if self.expected is None:
            self.expected = dict(self.calls)
            missing = [n for n in self.layers if n not in self.calls]
            if missing:
                raise ConvlensError(f"layer {missing[0]!r} was not called in the forward pass")
        return out


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="step", disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, leave=False)


def render(lens: nn.Module, objective: Objective, param: Parameterization,
           transforms: Sequence[Transform] = (), steps: int = 256, optimizer: str = "adam",
           lr: float = 0.05, momentum: float = 0.9, schedule: Schedule | None = None,
           post_step: Callable[[Parameterization, int], None] | None = None, seed: int = 0,
           progress: bool = True, desc: str = "render") -> Rendered:
    """Maximise ``sum_i objective_i`` over the images of `param`: the only loop that steps.

    Each step: image = param() in [0, 1]; moved by `transforms`; normalised for the model;
    forward (hooks keep the layers the objective reads; the pass stops after them unless the
    objective needs the logits); gradient of minus the summed objective with respect to the
    parameters; one optimiser step; ``param.project()``; ``post_step(param, step)``.

    Optimisers: ``"adam"`` (Olah et al. 2017) or ``"momentum"``: plain gradient descent with
    momentum, ``v <- momentum * v + lr_t * grad; p <- p + v`` (ascent), with the rate
    ``lr_t = lr * schedule.factor(t)`` and the momentum reset where the rate changes
    (Mahendran & Vedaldi's solver).

    The model runs in eval mode with its parameters frozen; its training flags,
    ``requires_grad`` flags, parameters and their ``.grad`` are as before afterwards and no
    hook is left, also after an error. Randomness (transforms) comes from `seed` only.

    Args:
        lens: a `Lens` (or a module with ``normalize`` and ``value_range``).
        objective: what to maximise (`Objective`). param: a `Parameterization`.
        steps: at least 1.  lr, momentum, schedule: the optimiser's settings.
        progress: a progress bar on stderr.

    Example::

        out = render(lens, channel("features.4", 3), FFTImage(1, lens.input_size), steps=128)
    """
    import time

    if not isinstance(objective, Objective):
        raise ConvlensError(f"objective must be a convlens objective (channel(...), "
                            f"class_logit(...), ...), got {type(objective).__name__}")
    if int(steps) < 1:
        raise ConvlensError(f"steps must be at least 1, got {steps}")
    if optimizer not in ("adam", "momentum"):
        raise unknown("optimizer", optimizer, ["adam", "momentum"])
    steps = int(steps)
    model = model_of(lens)
    for name in objective.layers:
        find_module(model, name)  # an unknown name: one line naming the close matches
    b = param.batch
    if objective.batch is not None and objective.batch != b:
        raise ConvlensError(f"the objective is written for {objective.batch} images but the "
                            f"image batch has {b}")
    params = param.parameters()
    schedule = schedule or Schedule()
    gen = _gen(seed)
    fwd = _Forward(model, objective.layers, objective.logits)
    history = torch.zeros(steps)
    t0 = time.perf_counter()

    to_model = _model_mapping(lens, param().detach())

    def run(unit: torch.Tensor, moved: torch.Tensor):
        logits = fwd(to_model(moved))
        ctx = Context(fwd.acts, logits, unit, lambda: to_model(unit))
        v = objective(ctx)
        if v.shape != (b,):
            raise ConvlensError(f"objective {objective.name!r} gave shape {tuple(v.shape)}; "
                                f"expected one value per image ({b},)")
        return v, logits

    with preserved(model), forward_hooks(model, objective.layers, fwd.hook):
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)  # no parameter gradient: faster, and .grad stays as it was
        opt = torch.optim.Adam(params, lr=lr) if optimizer == "adam" else None
        velocity = [torch.zeros_like(p) for p in params]
        last = None
        with _progress(steps, desc, progress) as bar:
            for step in range(steps):
                rate = lr * schedule.factor(step, steps)
                with torch.enable_grad():
                    unit = param()
                    v, _ = run(unit, apply_transforms(unit, transforms, gen))
                    if not v.requires_grad:
                        raise ConvlensError(f"objective {objective.name!r} does not depend on "
                                            "the image: nothing to optimise")
                    grads = torch.autograd.grad(-v.sum(), params)
                history[step] = float(v.detach().mean())
                with torch.no_grad():
                    if opt is not None:
                        for p, g in zip(params, grads):
                            p.grad = g
                        opt.step()
                        for p in params:
                            p.grad = None
                    else:
                        if schedule.reset_momentum and last is not None and rate != last:
                            for vel in velocity:
                                vel.zero_()
                        for p, g, vel in zip(params, grads, velocity):
                            vel.mul_(momentum).add_(g, alpha=-rate)
                            p.add_(vel)
                    last = rate
                    param.project()
                if post_step is not None:
                    with torch.no_grad():
                        post_step(param, step)
                bar.update(1)
                if step % 16 == 0 or step == steps - 1:
                    bar.set_postfix(objective=f"{history[step]:.4g}", refresh=False)
        with torch.no_grad():
            unit = param()
            fwd.need_logits = True  # the final check always reports the class scores
            values, logits = run(unit, unit)
    return Rendered(unit.detach().float().cpu(), values.detach().float().cpu(), history,
                    None if logits is None else logits.detach().float().cpu(),
                    time.perf_counter() - t0)


def _model_mapping(lens, like: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Images in [0, 1] to normalised model input: ``unit * a + b`` per channel (the lens's
    ``normalize(lo + unit * (hi - lo))``, its constants made once)."""
    lo, hi = getattr(lens, "value_range", (0.0, 1.0))
    if not hasattr(lens, "normalize"):
        return lambda u: lo + u * (hi - lo)
    b = lens.normalize(torch.full_like(like[:1], lo))
    a = lens.normalize(torch.full_like(like[:1], hi)) - b
    return lambda u: u * a + b


def to_unit(lens, x: torch.Tensor) -> torch.Tensor:
    """Normalised model input to [0, 1] (not clipped): the inverse of the model mapping."""
    lo, hi = getattr(lens, "value_range", (0.0, 1.0))
    raw = lens.denormalize(x) if hasattr(lens, "denormalize") else x
    return (raw - lo) / (hi - lo)
