"""Model specs: `load_model(spec, weights=None)` turns a spec into a `Lens`.

Specs:
    ``builtin:NAME``            a network shipped with convlens (``BUILTIN_MODELS``)
    ``torchvision:NAME[:WEIGHTS]``  a torchvision architecture; weights from ``weights=FILE``, or
                                the torchvision weights name (``IMAGENET1K_V1``, ``DEFAULT``) when
                                that file is already in the torch hub cache. Never downloads.
    ``timm:NAME``               a timm architecture (needs ``pip install timm``), weights from a
                                file
    ``path/to/model.pt``        a TorchScript archive (``torch.jit.save``)
    ``package.module:factory``  a function returning an ``nn.Module`` (or a `Lens`)
"""
from __future__ import annotations

import importlib
import os
import re
from typing import Sequence

import torch
from torch import nn

from ..errors import ConvlensError, unknown
from ..lens import Lens
from .builtin import BUILTIN_MODELS, BuiltinModel, register_model
from .checkpoint import apply_weights, read_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def load_model(spec: str, weights: str | os.PathLike | None = None, *,
               mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
               input_size: Sequence[int] | None = None, labels: Sequence[str] | None = None,
               seed: int = 0, output=None) -> Lens:
    """A `Lens` from a model spec, in eval mode, on the CPU.

    ``lens.weights`` says where the weights came from. An architecture without weights
    (``torchvision:NAME`` or ``timm:NAME`` without a file) gets random weights initialised from
    `seed`, so every command explains the same model; ``lens.weights`` is then
    ``"random weights, seed S"``.

    Args:
        spec: see the module docstring.
        weights: a checkpoint file (state dict, or a dict holding one under ``state_dict`` or
            ``model``), loaded with ``torch.load(weights_only=True)``; keys must match exactly.
        mean, std, input_size, labels: override the preprocessing the spec implies; the model
            must accept the input size (checked with one forward pass).
        seed: initialisation of random weights (the global random state is left alone).
        output: which part of the model's output is the class scores when its forward returns
            more than a tensor (a key, attribute, index or function; see `Lens`).

    Example::

        lens = load_model("torchvision:vgg16", weights="vgg16.pth")
        lens = load_model("builtin:tiny")
    """
    spec = os.fspath(spec)
    kind, _, rest = spec.partition(":")
    with torch.random.fork_rng(devices=[]):  # seeded initialisation, global state untouched
        torch.manual_seed(int(seed))
        if kind == "builtin":
            lens = _builtin(rest, weights)
        elif kind == "torchvision":
            lens = _torchvision(rest, weights)
        elif kind == "timm":
            lens = _timm(rest, weights)
        elif os.path.isfile(spec):
            lens = _torchscript(spec, weights)
        elif _FACTORY.match(spec):
            lens = _factory(spec, weights)
        else:
            lens = None
        if kind in ("torchvision", "timm") and weights is None and lens is not None:
            _live_heads(lens.model)
    if lens is None:
        raise ConvlensError(
            f"cannot understand model spec {spec!r}: use builtin:NAME, torchvision:NAME, "
            "timm:NAME, a TorchScript file, or package.module:factory"
            + (" (no such file)" if spec.endswith((".pt", ".pth", ".ts")) else ""))
    if any(v is not None for v in (mean, std, input_size, labels)):
        size = tuple(input_size) if input_size is not None else lens.input_size

        def fit(v):  # a default for another channel count: the average over channels
            return v if len(v) == size[0] else (sum(v) / len(v),)
        lens = Lens(lens.model, mean=mean if mean is not None else fit(lens.mean),
                    std=std if std is not None else fit(lens.std),
                    input_size=size,
                    labels=labels if labels is not None else lens.labels,
                    value_range=lens.value_range, name=lens.name, weights=lens.weights,
                    output=lens.output)
        if input_size is not None:
            check_input_size(lens, spec)
    if lens.weights is None:
        lens.weights = f"random weights, seed {int(seed)}"
    if output is not None:
        lens.output = output
    lens.eval()
    return lens


def check_input_size(lens: Lens, spec: str = "the model") -> None:
    """One forward pass of a mean image: an input size the model cannot take is a one-line
    error here, not a shape error deep inside a technique."""
    from ..hooks import preserved

    c, h, w = lens.input_size
    try:
        with preserved(lens), torch.no_grad():
            lens.eval()
            out = lens(lens.example_input())
    except Exception as e:  # noqa: BLE001  any failure here means: wrong input size
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ConvlensError(f"{spec} does not take {c}x{h}x{w} input ({first}); check "
                            "--input-size (C,H,W)") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise ConvlensError(f"{spec} gives {type(out).__name__} "
                            f"{tuple(getattr(out, 'shape', ()))} on {c}x{h}x{w} input, not "
                            "class scores (N, K)")


def _builtin(name: str, weights) -> Lens:
    if name not in BUILTIN_MODELS:
        raise unknown("built-in model", name, BUILTIN_MODELS,
                      hint="built-ins: " + ", ".join(sorted(BUILTIN_MODELS)))
    b = BUILTIN_MODELS[name]
    model = b.build()
    path = weights if weights is not None else b.weights_path()
    if path is not None:
        apply_weights(model, path)
    desc = (os.fspath(weights) if weights is not None else
            f"shipped weights ({b.weights})" if b.weights else "seeded test weights (untrained)")
    return Lens(model, b.mean, b.std, b.input_size, b.labels, name=f"builtin:{name}",
                weights=desc)


def _torchvision(rest: str, weights) -> Lens:
    import torchvision

    name, _, wname = rest.partition(":")
    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        raise unknown("torchvision model", name, available)
    enum = torchvision.models.get_model_weights(name)
    model = torchvision.models.get_model(name, weights=None)
    meta_w = enum.DEFAULT
    if wname:
        try:
            meta_w = enum[wname] if wname != "DEFAULT" else enum.DEFAULT
        except KeyError:
            raise unknown(f"weights name for {name}", wname, [w.name for w in enum]) from None
        if weights is None:
            weights = _cached_torchvision_file(meta_w)
    if weights is not None:
        apply_weights(model, weights)
    t = meta_w.transforms()
    desc = None if weights is None else (f"torchvision {meta_w}" if wname else os.fspath(weights))
    crop = getattr(t, "crop_size", [224])
    size = crop[0] if isinstance(crop, (list, tuple)) else int(crop)
    labels = meta_w.meta.get("categories")
    mean = tuple(getattr(t, "mean", IMAGENET_MEAN))
    std = tuple(getattr(t, "std", IMAGENET_STD))
    return Lens(model, mean, std, (3, size, size), labels, name=f"torchvision:{name}",
                weights=desc)


def _cached_torchvision_file(w) -> str:
    """The torch hub cache file of torchvision weights `w`; an error if it is not there."""
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(w.url))
    if not os.path.isfile(path):
        raise ConvlensError(
            f"torchvision weights {w} are not in the local cache ({path}); convlens never "
            "downloads. Copy the file there (it comes from torchvision's weights URL) or pass "
            "--weights FILE")
    return path


def _timm(name: str, weights) -> Lens:
    try:
        import timm
    except ImportError:
        raise ConvlensError("timm is not installed: pip install timm") from None
    if name not in timm.list_models():
        raise unknown("timm model", name, timm.list_models())
    model = timm.create_model(name, pretrained=False)
    if weights is not None:
        apply_weights(model, weights)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return Lens(model, cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD),
                cfg.get("input_size", (3, 224, 224)), None, name=f"timm:{name}",
                weights=None if weights is None else os.fspath(weights))


def _torchscript(path: str, weights) -> Lens:
    import warnings
    try:
        with warnings.catch_warnings():  # jit's deprecation notice is not the user's business
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.load(path, map_location="cpu")
    except Exception as e:  # jit raises RuntimeError / ValueError with long C++ traces
        raise ConvlensError(
            f"{path} is not a TorchScript archive ({str(e).splitlines()[0][:120]}); for a "
            "checkpoint of weights, name the architecture with --model and pass the file with "
            "--weights") from None
    if weights is not None:
        apply_weights(model, weights)
    lens = _default_lens(model, name=os.path.basename(path))
    lens.weights = os.fspath(weights) if weights is not None else "from the TorchScript file"
    return lens


def _factory(spec: str, weights) -> Lens:
    modname, _, fname = spec.partition(":")
    try:
        mod = importlib.import_module(modname)
    except ImportError as e:
        raise ConvlensError(f"cannot import {modname!r} for model spec {spec!r}: {e}") from None
    fn = getattr(mod, fname, None)
    if fn is None or not callable(fn):
        raise unknown(f"factory in {modname}", fname,
                      [n for n in dir(mod) if callable(getattr(mod, n)) and not n.startswith("_")])
    obj = fn()
    desc = os.fspath(weights) if weights is not None else f"as {spec} made them"
    if isinstance(obj, Lens):
        if weights is not None:
            apply_weights(obj.model, weights)
        obj.weights = obj.weights or desc
        return obj
    if not isinstance(obj, nn.Module):
        raise ConvlensError(f"{spec} returned {type(obj).__name__}, not an nn.Module")
    if weights is not None:
        apply_weights(obj, weights)
    lens = _default_lens(obj, name=spec)
    lens.weights = desc
    return lens


def _default_lens(model: nn.Module, name: str) -> Lens:
    """ImageNet preprocessing at 224×224: the usual convention when nothing else is known."""
    return Lens(model, IMAGENET_MEAN, IMAGENET_STD, (3, 224, 224), None, name=name)


__all__ = ["load_model", "BUILTIN_MODELS", "BuiltinModel", "register_model", "apply_weights",
           "read_state_dict"]


def _live_heads(model: torch.nn.Module) -> None:
    """Random weights only: a linear layer its architecture initialises to zeros (ViT's and
    Swin's heads, for fine-tuning) gets small random weights instead, so the class scores
    depend on the image and every gradient view shows something."""
    for m in model.modules():
        if isinstance(m, torch.nn.Linear) and not m.weight.detach().any():
            torch.nn.init.normal_(m.weight, std=0.01)
