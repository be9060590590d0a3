"""Networks that ship with convlens, registered as ``builtin:NAME``."""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Callable

import torch
from torch import nn


@dataclass
class Recipe:
    """How a built-in model is trained."""

    epochs: int
    batch_size: int = 128
    lr: float = 2e-3              # peak of the one-cycle schedule (AdamW)
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    shift: int = 2                # random translation, pixels (zero padding), per image
    flip: bool = True             # random horizontal flip
    train_items: int | None = None  # procedural data: how many training items to render



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


# -- the shipped, trained models -------------------------------------------------------------
def _fashion_data(recipe):
    from ..data.fashion import load_arrays
    return load_arrays("train"), load_arrays("test")


def _shapes_data(recipe):
    from ..data import shapes
    n = recipe.train_items or 100_000
    train = shapes.render_batch(shapes.TRAIN_SEED, range(n))
    test = shapes.render_batch(shapes.TEST_SEED, range(10_000))
    return train, test


def _planted_data(recipe):
    from ..data import shapes
    n = recipe.train_items or 40_000
    train = shapes.render_batch(shapes.TRAIN_SEED, range(n), planted=True)
    test = shapes.render_batch(shapes.TEST_SEED, range(4_000), planted=True)
    return train, test


def _stamps_data(recipe):
    from ..data import stamps
    n = recipe.train_items or 12_000
    train = stamps.render_batch("train", range(n))
    test = stamps.render_batch("test", range(2_000))  # unseen stamps; per-epoch check only
    return train, test


def _register_trained() -> None:
    from ..data import fashion, shapes, stamps
    from .nets import fashion_net, shapes_net, stamps_net

    register_model("fashion-net", BuiltinModel(
        build=fashion_net, mean=(fashion.MEAN,), std=(fashion.STD,), input_size=(1, 28, 28),
        labels=list(fashion.CLASSES), weights="fashion-net.pt",
        description="AlexNet-shaped ConvNet trained on Fashion-MNIST (docs/models.md)",
        extra={"recipe": Recipe(epochs=24, batch_size=128, lr=2e-3, shift=2, flip=True),
               "train_data": _fashion_data}))
    register_model("shapes-net", BuiltinModel(
        build=shapes_net, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=(3, 64, 64),
        labels=list(shapes.SHAPE_CLASSES), weights="shapes-net.pt",
        description="AlexNet-shaped ConvNet trained on builtin:shapes (docs/models.md)",
        extra={"recipe": Recipe(epochs=10, batch_size=128, lr=2e-3, shift=0, flip=True,
                                train_items=100_000),
               "train_data": _shapes_data}))
    register_model("shapes-planted-net", BuiltinModel(
        build=shapes_net, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=(3, 64, 64),
        labels=list(shapes.SHAPE_CLASSES), weights="shapes-planted-net.pt",
        description="shapes-net's architecture trained on builtin:shapes-planted, where every "
                    "circle stands on stripes and no square does: a known concept for tcav and "
                    "dissect (docs/models.md)",
        extra={"recipe": Recipe(epochs=6, batch_size=128, lr=2e-3, shift=0, flip=True,
                                train_items=40_000),
               "train_data": _planted_data}))
    register_model("stamps-net", BuiltinModel(
        build=stamps_net, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
        input_size=(3, stamps.DEFAULT_SIZE, stamps.DEFAULT_SIZE), labels=list(stamps.CLASSES),
        weights="stamps-net.pt",
        description="small ResNet trained on builtin:stamps photographs (docs/models.md)",
        extra={"recipe": Recipe(epochs=12, batch_size=128, lr=2e-3, weight_decay=0.05, shift=4,
                                flip=True, label_smoothing=0.1, train_items=60_000),
               "train_data": _stamps_data}))


_register_trained()
