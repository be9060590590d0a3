"""The render loop: the only place image optimisation steps. It never draws or saves."""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ConvlensError, unknown
from ..hooks import find_module, forward_hooks, model_of, preserved
from .objectives import Context, Objective
from .param import Parameterization, seeded_generator
from .transforms import Transform, apply_transforms


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
        # `model`: the lens (its forward picks the class scores); the hooks sit on its model
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
    gen = seeded_generator(seed)
    fwd = _Forward(lens, objective.layers, objective.logits)
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

    with preserved(model), forward_hooks(model, objective.layers, fwd.hook,
                                                     grid=True):
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
