"""What a benchmark row is and the context it is built in.

A family module exposes ``rows(ctx: Context) -> list[Row | Skipped]``. Building a row may do
setup work (load a model, make inputs: not timed); the row's two callables do the timed work
and return what is compared: ``difference(ours_output, baseline_output)`` is the largest
difference of the outputs in the units the row names, and the row fails when it exceeds
``tolerance``.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch


@dataclass
class Context:
    """Where and how large. ``mode``: ``"smoke"`` (every row at toy sizes on the CPU, seconds
    in all), ``"cpu"`` (the sizes BENCHMARKS.md's figures were measured at) or ``"gpu"``
    (sizes worth a GPU: ResNet-50 / VGG-16 at 224 px, large batches). ``precision``:
    ``"fp32"`` or ``"bf16"`` (convlens and the baseline both run under bf16 autocast)."""

    mode: str = "smoke"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "fp32"

    @property
    def gpu(self) -> bool:
        return self.device.type == "cuda"

    def pick(self, smoke, cpu, gpu=None):
        """The size for this mode (`gpu` defaults to `cpu`'s)."""
        return {"smoke": smoke, "cpu": cpu, "gpu": cpu if gpu is None else gpu}[self.mode]

    def autocast(self):
        """A context: bf16 autocast on this device when ``precision == "bf16"``."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def sync(self) -> None:
        if self.gpu:
            torch.cuda.synchronize(self.device)


@dataclass
class Row:
    """One comparison.

    family, name: where it belongs and what it compares ("PGD, 10 steps").
    workload: model, input size, batch, settings, in words.
    items, unit: how much work one call does ("images", "image-steps", ...): throughput is
        items per second.
    ours, baseline: the timed calls; each returns what `difference` compares.
    baseline_name: the peer or baseline in words ("torchattacks 3.5.1 PGD", "bare forward").
    difference: ``(ours_out, baseline_out) -> float``, the largest difference.
    tolerance: the most `difference` may be (state the units in `equal`).
    equal: what the difference measures ("max |pixel| difference", "points that differ").
    goal: the ratio BENCHMARKS.md asks for (baseline time / convlens time), if any.
    note: anything a reader must know to read the figure.
    rounds: the most timed rounds of each side for this row (a row of minutes: 1).
    """

    family: str
    name: str
    workload: str
    items: int
    unit: str
    ours: Callable[[], Any]
    baseline: Callable[[], Any]
    baseline_name: str
    difference: Callable[[Any, Any], float]
    tolerance: float
    equal: str
    goal: float | None = None
    note: str = ""
    rounds: int | None = None  # at most this many timed rounds (a long row: fewer)


@dataclass
class Skipped:
    """A row that cannot run here, and why (a peer not installed, no GPU, ...)."""

    family: str
    name: str
    reason: str


def max_abs(a, b) -> float:
    """Largest absolute difference of two tensors (or arrays), as float64."""
    a = torch.as_tensor(a).detach().double().cpu()
    b = torch.as_tensor(b).detach().double().cpu()
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return float((a - b).abs().max()) if a.numel() else 0.0


def peer(module: str, family: str, name: str):
    """Import a peer library, or a `Skipped` saying it is not installed."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        return Skipped(family, name, f"{module} is not installed ({e})")
