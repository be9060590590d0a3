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
from .grids import grid_of, layout_of, to_grid


def model_of(lens_or_model: nn.Module) -> nn.Module:
    """The wrapped network of a `Lens`, or the module itself."""
    return getattr(lens_or_model, "model", lens_or_model)


def find_module(model: nn.Module, name: str) -> nn.Module:
    """The sub-module called `name` (a `named_modules()` name such as ``"features.3"``)."""
    return _lookup(dict(model.named_modules()), name)


def _lookup(modules: dict[str, nn.Module], name: str) -> nn.Module:
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


INPUT_OF = "input of "


def input_of(name: str) -> str | None:
    """``"input of fc"`` -> ``"fc"``: the address of what a module receives (its first tensor
    input; the CNN code where functional code feeds the last linear layer); else None."""
    return name[len(INPUT_OF):] if name.startswith(INPUT_OF) else None


POOLED = "pooled "


def pooled_of(name: str) -> str | None:
    """``"pooled input of classifier.1"`` -> ``"input of classifier.1"``: an address whose maps
    are averaged over their positions, one value per channel (SqueezeNet's code, which no
    linear layer reads); else None."""
    return name[len(POOLED):] if name.startswith(POOLED) else None


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """`find_module`, also for ``"input of NAME"`` (the module NAME) and ``"pooled ..."``."""
    return find_layers(model, [name])[0]


def find_layers(model: nn.Module, names: Sequence[str]) -> list[nn.Module]:
    """`find_layer` of each name, walking the model's modules once."""
    modules = dict(model.named_modules())
    out = []
    for name in names:
        name = pooled_of(name) or name
        out.append(_lookup(modules, input_of(name) or name))
    return out


@contextlib.contextmanager
def watch_input(model: nn.Module) -> Iterator[list]:
    """A one-item list that holds ``(N, H, W)`` of the image batch `model` was last called on
    (None before a call, or for a model that takes no hooks)."""
    cell: list = [None]

    def pre_hook(mod, args):
        x = first_tensor(args)
        if x is not None and x.dim() == 4:
            cell[0] = (x.shape[0], x.shape[-2], x.shape[-1])
    try:
        handle = model.register_forward_pre_hook(pre_hook)
    except RuntimeError:  # TorchScript: forward_hooks says so for the layers themselves
        handle = None
    try:
        yield cell
    finally:
        if handle is not None:
            handle.remove()


@contextlib.contextmanager
def forward_hooks(model: nn.Module, names: Sequence[str],
                  fn: Callable[[str, nn.Module, torch.Tensor], None],
                  grid: bool = False) -> Iterator[None]:
    """Call ``fn(name, module, output_tensor)`` after every forward call of each named module;
    for ``"input of NAME"``, ``fn(name, module, input_tensor)`` before each call of NAME.
    With `grid`, token-shaped outputs reach `fn` as ``(N, C, h, w)`` maps (`grid_of`)."""
    modules = list(zip(names, find_layers(model, names)))
    handles = []
    with watch_input(model) if grid else contextlib.nullcontext([None]) as image:
        def emit(name, mod, t):
            if t is not None:
                t = grid_of(t, image[0])  # as it is without `grid`: no input was watched
                fn(name, mod, _pooled(t) if pooled_of(name) else t)
        try:
            for name, module in modules:
                def hook(mod, args, output, _name=name):
                    emit(_name, mod, first_tensor(output))

                def pre_hook(mod, args, _name=name):
                    emit(_name, mod, first_tensor(args))
                try:
                    reads_input = input_of(pooled_of(name) or name) is not None
                    handles.append(module.register_forward_pre_hook(pre_hook) if reads_input
                                   else module.register_forward_hook(hook))
                except RuntimeError as e:  # TorchScript modules refuse Python hooks
                    raise ConvlensError(
                        f"layer {name!r} ({type(module).__name__}) takes no hooks: "
                        f"{str(e).splitlines()[0]}; load the model as Python code "
                        "(package.module:factory) to look inside it") from None
            yield
        finally:
            for h in handles:
                h.remove()


@contextlib.contextmanager
def substituted(model: nn.Module, name: str, fn: Callable[[torch.Tensor], torch.Tensor],
                call: int | None = None) -> Iterator[None]:
    """Replace the output of module `name` by ``fn(output)`` (a forward hook that returns a
    value) in every call inside the block, or only in its `call`-th call (0-based: a module
    called several times in a forward pass); removed on exit, also after an error.
    Ablation-CAM feeds ablated copies of a layer's activations to the rest of the network so."""
    module = find_layer(model, name)
    calls = [0]

    def hook(mod, args, output):
        k = calls[0]
        calls[0] += 1
        return fn(output) if call is None or k == call else None
    try:
        handle = module.register_forward_hook(hook)
    except RuntimeError as e:  # TorchScript modules refuse Python hooks
        raise ConvlensError(f"layer {name!r} ({type(module).__name__}) takes no hooks: "
                            f"{str(e).splitlines()[0]}") from None
    try:
        yield
    finally:
        handle.remove()


def _pooled(t: torch.Tensor) -> torch.Tensor:
    return t.mean(dim=(-2, -1)) if t.dim() == 4 else t


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
    With a `reduce` function, each entry is instead ``reduce(name, output)``, computed on the
    live output inside the hook (nothing is copied; see `capture`).

    Token-shaped outputs come back as maps on the image's grid, ``(N, C, h, w)``, and so do
    their gradients: ``(N, k + h*w, C)`` of a vision transformer without its `k` class or
    register tokens, ``(N, h, w, C)`` of a Swin block permuted (`grid_layout`).
    """

    def __init__(self, names: Sequence[str],
                 reduce: Callable[[str, torch.Tensor], object] | None = None):
        self.names = list(names)
        self._reduce = reduce
        self._acts: dict[str, list[torch.Tensor]] = defaultdict(list)
        self._grads: dict[str, dict[int, torch.Tensor]] = defaultdict(dict)
        self._tensor_handles: list = []
        self._image: list = [None]  # (N, H, W) of the model's input: `watch_input`

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
        layout = layout_of(out, self._image[0])
        act = to_grid(out.detach(), layout)
        if self._reduce is not None:  # summarise the live tensor now: no copy is kept
            self._acts[name].append(self._reduce(name, act))
        else:
            self._acts[name].append(act.clone())
        if not grads:
            return
        if not out.requires_grad:
            raise ConvlensError(
                f"layer {name!r} does not require grad, so its gradient cannot be recorded: "
                "give an input with requires_grad=True (or parameters that require grad)")

        def store(g, _name=name, _call=call, _layout=layout):
            self._grads[_name][_call] = to_grid(g.detach(), _layout).clone()
        # A tensor hook sees the gradient of this value even if it is modified in place
        # later, unlike module backward hooks (pytorch#61519).
        self._tensor_handles.append(out.register_hook(store))


@contextlib.contextmanager
def capture(lens: nn.Module, layers: str | Sequence[str], grads: bool = False,
            reduce: Callable[[str, torch.Tensor], object] | None = None) -> Iterator[Capture]:
    """Record the activations of `layers` (and, with ``grads=True``, their gradients).

    Args:
        lens: a `Lens` or any `nn.Module`; layers are its `named_modules()` names.
        layers: one name or several, e.g. ``"features.3"`` or ``["conv1", "layer4.1"]``.
        grads: also keep ``dL/dA`` for each recorded activation ``A`` (via
            `Tensor.register_hook`) when a backward pass runs inside the block.
        reduce: optional ``fn(name, A) -> value`` run inside the forward hook on the live
            (detached, not copied) output; ``cap[name]`` is then that value. This is how the
            dataset pass keeps only small summaries (a max per channel) without cloning every
            activation; `fn` must not keep `A` itself, which a later in-place op may change.

    Every hook is removed when the block ends, also on an error. The model's training flags,
    `requires_grad` flags, parameter values and their ``.grad`` are the same afterwards.

    Example::

        with capture(lens, ["features.0", "features.3"]) as cap:
            lens(x)
        a = cap["features.3"]          # (N, C, H, W)
    """
    model = model_of(lens)
    names = [layers] if isinstance(layers, str) else list(layers)
    find_layers(model, names)  # fail early, naming close matches
    cap = Capture(names, reduce)
    saved_grads = [(p, None if p.grad is None else p.grad.detach().clone())
                   for p in model.parameters()] if grads else []
    try:
        with preserved(model), watch_input(model) as cap._image, forward_hooks(
                model, names, lambda n, m, t: cap._record(n, grads, m, t)):
            yield cap
    finally:
        for h in cap._tensor_handles:
            h.remove()
        cap._tensor_handles.clear()
        for p, g in saved_grads:
            p.grad = g


# ------------------------------------------------------------------------------------------
# relu_rule: a modified backward pass at every ReLU (DeconvNet, guided backpropagation)
# ------------------------------------------------------------------------------------------
import warnings  # noqa: E402  (kept with the section that uses it)

from torch.overrides import TorchFunctionMode  # noqa: E402

RELU_RULES = ("guided", "deconv")


class ReluRuleWarning(UserWarning):
    """`relu_rule` could not apply its rule everywhere (other non-linearities, no ReLU ran)."""


class _GuidedReLU(torch.autograd.Function):
    """ReLU forward; backward ``R_l = [f_l > 0] * max(R_{l+1}, 0)`` (Springenberg et al. 2015)."""

    @staticmethod
    def forward(ctx, x, inplace: bool):
        if inplace:
            out = x.relu_()
            ctx.mark_dirty(x)
        else:
            out = x.relu()
        ctx.save_for_backward(out)  # the output's sign is the input's: f > 0  <=>  relu(f) > 0
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        r = grad.clamp(min=0)
        # ReLU's own backward kernel, written into r in place: r where out > 0, else 0. Two
        # passes over memory and one allocation; about what the plain ReLU gradient costs.
        return torch.ops.aten.threshold_backward.grad_input(r, out, 0, grad_input=r), None


class _DeconvReLU(torch.autograd.Function):
    """ReLU forward; backward ``R_l = max(R_{l+1}, 0)`` whatever the input's sign (Zeiler &
    Fergus 2014)."""

    @staticmethod
    def forward(ctx, x, inplace: bool):
        if inplace:
            ctx.mark_dirty(x)
            return x.relu_()
        return x.relu()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        return grad.clamp(min=0), None


# Every Python-level spelling of ReLU: nn.ReLU calls F.relu; the rest are reached directly.
_RELU_OUT = {torch.nn.functional.relu, torch.relu, torch.Tensor.relu}
_RELU_INPLACE = {torch.relu_, torch.Tensor.relu_}
# Non-linearities the rule leaves alone (by function name, trailing "_" stripped).
_OTHER_NONLINEAR = {"gelu", "silu", "elu", "selu", "celu", "leaky_relu", "rrelu", "prelu",
                    "hardswish", "hardsigmoid", "hardtanh", "relu6", "mish", "softplus",
                    "sigmoid", "tanh", "logsigmoid", "softsign", "tanhshrink", "glu",
                    "threshold"}


class ReluRuleStats:
    """What a `relu_rule` block saw: ReLU calls changed, and other non-linearities by name."""

    def __init__(self, rule: str):
        self.rule = rule
        self.relus = 0
        self.others: dict[str, int] = {}

    def message(self) -> str | None:
        """A warning text when the rule did not cover every non-linearity, else None."""
        if self.others:
            names = ", ".join(sorted(self.others))
            return (f"relu_rule({self.rule!r}): the model also uses {names}; the rule changes "
                    f"only ReLU, so the ordinary gradient passes through those: the map is "
                    f"{'guided backprop' if self.rule == 'guided' else 'DeconvNet'} at the ReLUs "
                    "and the plain gradient elsewhere")
        if self.relus == 0:
            return (f"relu_rule({self.rule!r}): no ReLU ran inside the block (a model without "
                    "ReLU, ReLUs inside TorchScript, or torch.clamp(x, min=0), which is ordinary "
                    "arithmetic): the result is the plain gradient")
        return None


class _ReluRuleMode(TorchFunctionMode):
    def __init__(self, stats: ReluRuleStats, fn: type[torch.autograd.Function]):
        super().__init__()
        self.stats, self.fn = stats, fn

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inplace = func in _RELU_INPLACE
        if (inplace or func in _RELU_OUT) and "out" not in kwargs:
            x = args[0] if args else kwargs.get("input")
            if func is torch.nn.functional.relu:
                inplace = bool(args[1] if len(args) > 1 else kwargs.get("inplace", False))
            self.stats.relus += 1
            if isinstance(x, torch.Tensor) and torch.is_grad_enabled() and x.requires_grad:
                return self.fn.apply(x, inplace)
        else:
            name = getattr(func, "__name__", "").rstrip("_")
            if name in _OTHER_NONLINEAR:
                self.stats.others[name] = self.stats.others.get(name, 0) + 1
        return func(*args, **kwargs)


@contextlib.contextmanager
def relu_rule(lens: nn.Module | None, rule: str) -> Iterator[ReluRuleStats]:
    """Change the backward pass of every ReLU run inside the block.

    ``"guided"`` (guided backpropagation, Springenberg et al. 2015, Fig. 1,
    https://arxiv.org/abs/1412.6806): ``R_l = [f_l > 0] * max(R_{l+1}, 0)``.
    ``"deconv"`` (DeconvNet, Zeiler & Fergus 2014, https://arxiv.org/abs/1311.2901):
    ``R_l = max(R_{l+1}, 0)``, whatever the sign of the forward input ``f_l``.
    Everything else (convolutions, max-pooling switches, linear layers) keeps its ordinary
    gradient, which is what both papers prescribe.

    Every spelling of ReLU is caught, not only modules: ``nn.ReLU`` (``inplace`` or not),
    ``F.relu``, ``F.relu_``, ``torch.relu``, ``torch.relu_``, ``Tensor.relu``, ``Tensor.relu_``.
    A `TorchFunctionMode` (thread-local) replaces each call by an autograd function with the
    rule's backward; in-place calls stay in place. ``torch.clamp(x, min=0)``, ``x.clamp_min(0)``
    and ``torch.ops.aten.relu`` are ordinary arithmetic and keep the ordinary gradient, as do
    ReLUs inside TorchScript. The rule is bound when the forward pass runs: run the forward
    inside the block (the backward may run later). Other non-linearities (GELU, SiLU, sigmoid,
    tanh, LeakyReLU, ...) keep their ordinary gradient; the block then ends with a
    `ReluRuleWarning` saying so, as it does when no ReLU ran at all.

    Args:
        lens: the `Lens` or model the block is for (ReLUs of any module run inside the block
            are changed); TorchScript sub-modules are refused. May be None.
        rule: ``"guided"`` or ``"deconv"``.

    Yields a `ReluRuleStats` (ReLU calls changed, other non-linearities seen).

    Example::

        with relu_rule(lens, "guided"):
            (g,) = torch.autograd.grad(lens(x)[:, 3].sum(), x)
    """
    if rule not in RELU_RULES:
        raise unknown("ReLU rule", rule, RELU_RULES)
    if lens is not None:
        for name, m in model_of(lens).named_modules():
            if isinstance(m, torch.jit.ScriptModule):
                raise ConvlensError(
                    f"relu_rule cannot change the ReLUs inside TorchScript module "
                    f"{name or '(the model)'!r}: load the model as Python code "
                    "(package.module:factory)")
    stats = ReluRuleStats(rule)
    fn = _GuidedReLU if rule == "guided" else _DeconvReLU
    with _ReluRuleMode(stats, fn):
        yield stats
    msg = stats.message()  # not reached on an error: the error is the news then
    if msg:
        warnings.warn(msg, ReluRuleWarning, stacklevel=3)
