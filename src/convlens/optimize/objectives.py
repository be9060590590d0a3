"""Objectives: what image optimisation maximises, one value per image ``(B,)``.

Objectives add (``a + b``) and scale (``0.5 * a``, ``a - b``): `channel`, `neuron`,
`direction`, `deepdream`, `class_logit`, `match` (a representation to reconstruct) and the
image priors `l2`, `alpha_norm`, `total_variation`. Each reads the activations the render loop
captured (`Context`).
"""
from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Sequence

import torch

from ..errors import ConvlensError


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
