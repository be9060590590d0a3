"""Networks that ship with convlens, registered as ``builtin:NAME``."""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Callable

import torch
from torch import nn


@dataclass
class BuiltinModel:
    """How to build one built-in model and feed it."""

    build: Callable[[], nn.Module]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int, int]
    labels: list[str]
    weights: str | None = None          # file name inside convlens/models/weights
    description: str = ""
    extra: dict = field(default_factory=dict)

    def weights_path(self):
        if self.weights is None:
            return None
        return resources.files("convlens.models").joinpath("weights", self.weights)


BUILTIN_MODELS: dict[str, BuiltinModel] = {}


def register_model(name: str, spec: BuiltinModel) -> BuiltinModel:
    BUILTIN_MODELS[name] = spec
    return spec


class TinyNet(nn.Module):
    """A very small untrained ConvNet for 1×28×28 input: for tests and quick checks only."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(8 * 7 * 7, 32),
                                        nn.ReLU(inplace=True), nn.Linear(32, classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def _tiny() -> nn.Module:
    # Seeded so that every call gives the same weights, without touching the global RNG.
    gen = torch.Generator().manual_seed(0)
    net = TinyNet()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_((torch.rand(p.shape, generator=gen) - 0.5) * 2 / max(1, p[0].numel()) ** 0.5)
    return net


register_model("tiny", BuiltinModel(
    build=_tiny, mean=(0.5,), std=(0.5,), input_size=(1, 28, 28),
    labels=[str(k) for k in range(10)],
    description="untrained 2-conv net for 28x28 grey input (tests, quick checks)"))
