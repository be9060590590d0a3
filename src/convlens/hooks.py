"""The only place convlens registers hooks on a model; every hook is removed in `finally`.

`capture` records activations (and their gradients) of named layers. `preserved` keeps a
model's training flags and `requires_grad` as they were, whatever a technique does inside.
"""
from __future__ import annotations

import contextlib
from collections import defaultdict
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from .errors import ConvlensError, unknown


def model_of(lens_or_model: nn.Module) -> nn.Module:
    """The wrapped network of a `Lens`, or the module itself."""
    return getattr(lens_or_model, "model", lens_or_model)


def find_module(model: nn.Module, name: str) -> nn.Module:
    """The sub-module called `name` (a `named_modules()` name such as ``"features.3"``)."""
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        raise unknown("layer", name, [n for n in modules if n],
                      hint="`convlens layers --model SPEC` lists them")
    return modules[name]


def first_tensor(output) -> torch.Tensor | None:
    """A module's output tensor: the output itself, or the first tensor of a tuple/list/dict."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for o in output:
            t = first_tensor(o)
            if t is not None:
                return t
    return None


@contextlib.contextmanager
def forward_hooks(model: nn.Module, names: Sequence[str],
                  fn: Callable[[str, nn.Module, torch.Tensor], None]) -> Iterator[None]:
    """Call ``fn(name, module, output_tensor)`` after every forward call of each named module."""
    modules = [(n, find_module(model, n)) for n in names]
    handles = []
    try:
        for name, module in modules:
            def hook(mod, args, output, _name=name):
                t = first_tensor(output)
                if t is not None:
                    fn(_name, mod, t)
            try:
                handles.append(module.register_forward_hook(hook))
            except RuntimeError as e:  # TorchScript modules refuse Python hooks
                raise ConvlensError(f"layer {name!r} ({type(module).__name__}) takes no hooks: "
                                    f"{str(e).splitlines()[0]}; load the model as Python code "
                                    "(package.module:factory) to look inside it") from None
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def preserved(model: nn.Module) -> Iterator[nn.Module]:
    """Restore every module's `training` flag and every parameter's `requires_grad` on exit."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in flags:
            p.requires_grad_(flag)


class Capture:
    """What `capture` recorded: per layer, the output of each forward call (and its gradient).

    A module called several times in one forward pass (a shared ReLU, a recurrent block) has
    one entry per call, in call order: ``cap.all(name)``. ``cap[name]`` is the last call, as
    in torch-cam and Captum. Tensors are detached copies, taken when the module returned, so a
    later in-place operation (``ReLU(inplace=True)`` after a conv) does not change them.
    """

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self._acts: dict[str, list[torch.Tensor]] = defaultdict(list)
        self._grads: dict[str, dict[int, torch.Tensor]] = defaultdict(dict)
        self._tensor_handles: list = []

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.all(name)[-1]

    def __contains__(self, name: str) -> bool:
        return bool(self._acts.get(name))

    def all(self, name: str) -> list[torch.Tensor]:
        """Activations of every forward call of layer `name`, in call order."""
        if name not in self.names:
            raise unknown("captured layer", name, self.names)
        if not self._acts.get(name):
            raise ConvlensError(f"layer {name!r} was not called in the forward pass")
        return self._acts[name]

    def grad(self, name: str) -> torch.Tensor:
        """Gradient of the backward pass with respect to the last call's output of `name`."""
        return self.all_grads(name)[-1]

    def all_grads(self, name: str) -> list[torch.Tensor]:
        """Gradients with respect to each call's output, in call order."""
        calls = len(self.all(name))
        got = self._grads.get(name, {})
        if len(got) < calls:
            raise ConvlensError(
                f"no gradient recorded for layer {name!r}: use capture(..., grads=True) "
                "and run a backward pass (or torch.autograd.grad) inside the block")
        return [got[i] for i in range(calls)]

    def clear(self) -> None:
        """Forget what was recorded (e.g. between batches); hooks stay until the block ends."""
        self._acts.clear()
        self._grads.clear()

    # -- filled by the hooks ------------------------------------------------------------
    def _record(self, name: str, grads: bool, module: nn.Module, out: torch.Tensor) -> None:
        call = len(self._acts[name])
        self._acts[name].append(out.detach().clone())
        if not grads:
            return
        if not out.requires_grad:
            raise ConvlensError(
                f"layer {name!r} does not require grad, so its gradient cannot be recorded: "
                "give an input with requires_grad=True (or parameters that require grad)")

        def store(g, _name=name, _call=call):
            self._grads[_name][_call] = g.detach().clone()
        # A tensor hook sees the gradient of this value even if it is modified in place
        # later, unlike module backward hooks (pytorch#61519).
        self._tensor_handles.append(out.register_hook(store))


@contextlib.contextmanager
def capture(lens: nn.Module, layers: str | Sequence[str], grads: bool = False) -> Iterator[Capture]:
    """Record the activations of `layers` (and, with ``grads=True``, their gradients).

    Args:
        lens: a `Lens` or any `nn.Module`; layers are its `named_modules()` names.
        layers: one name or several, e.g. ``"features.3"`` or ``["conv1", "layer4.1"]``.
        grads: also keep ``dL/dA`` for each recorded activation ``A`` (via
            `Tensor.register_hook`) when a backward pass runs inside the block.

    Every hook is removed when the block ends, also on an error. The model's training flags,
    `requires_grad` flags, parameter values and their ``.grad`` are the same afterwards.

    Example::

        with capture(lens, ["features.0", "features.3"]) as cap:
            lens(x)
        a = cap["features.3"]          # (N, C, H, W)
    """
    model = model_of(lens)
    names = [layers] if isinstance(layers, str) else list(layers)
    for n in names:
        find_module(model, n)  # fail early, naming close matches
    cap = Capture(names)
    saved_grads = [(p, None if p.grad is None else p.grad.detach().clone())
                   for p in model.parameters()] if grads else []
    try:
        with preserved(model), forward_hooks(
                model, names, lambda n, m, t: cap._record(n, grads, m, t)):
            yield cap
    finally:
        for h in cap._tensor_handles:
            h.remove()
        cap._tensor_handles.clear()
        for p, g in saved_grads:
            p.grad = g
