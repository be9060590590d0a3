"""Loading weights from untrusted checkpoint files: never unpickle arbitrary objects."""
from __future__ import annotations

import os
import pickle
from collections import OrderedDict

import torch
from torch import nn

from ..errors import ConvlensError

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from `path`, loaded with ``torch.load(weights_only=True)``.

    Accepts a plain state dict or a dict holding one under ``state_dict`` / ``model``; strips a
    ``module.`` prefix (DataParallel / DDP). A checkpoint that needs arbitrary unpickling (a
    whole pickled model, custom classes) is refused: loading it could run code.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConvlensError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConvlensError(
            f"refusing to load {path}: it is not a plain tensor checkpoint and unpickling it could "
            f"run code ({first[:160]}). Re-save it where you trust it with "
            "torch.save(model.state_dict(), 'weights.pt')") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ConvlensError(f"cannot read weights {path}: {str(e).splitlines()[0][:200]}") from None
    for _ in range(2):  # {"model": {"state_dict": ...}} happens too
        if isinstance(obj, dict):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is not None and not any(isinstance(v, torch.Tensor) for v in obj.values()):
                obj = inner
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConvlensError(f"{path} does not hold a state dict (name -> tensor)")
    prefix = "module."
    if obj and all(k.startswith(prefix) for k in obj):
        obj = OrderedDict((k[len(prefix):], v) for k, v in obj.items())
    return obj


def apply_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load the checkpoint at `path` into `model`; mismatched keys or shapes are an error."""
    state = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
             if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        def few(xs):
            return ", ".join(xs[:8]) + (f" (+{len(xs) - 8} more)" if len(xs) > 8 else "")
        parts = []
        if missing:
            parts.append(f"missing keys: {few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {few(unexpected)}")
        if wrong:
            parts.append(f"shape mismatch (file vs model): {few(wrong)}")
        raise ConvlensError(f"weights {os.fspath(path)} do not fit the model; " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return model
