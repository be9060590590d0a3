"""Training the built-in models from scratch: the recipe, deterministically seeded.

Data are held in memory as uint8 arrays (Fashion-MNIST: 47 MB; shapes: rendered once), batches
are normalised and augmented as tensors, and the model trains in channels-last layout, which is
~1.6× faster for these small convolutions on a CPU.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConvlensError
from .builtin import BUILTIN_MODELS, Recipe


@dataclass
class EpochLog:
    epoch: int
    loss: float
    train_accuracy: float
    test_accuracy: float
    seconds: float


@dataclass
class TrainResult:
    name: str
    recipe: Recipe
    history: list[EpochLog] = field(default_factory=list)
    test_accuracy: float = float("nan")
    seconds: float = 0.0
    monitor: object = None

    def to_dict(self) -> dict:
        return {"name": self.name, "recipe": asdict(self.recipe),
                "history": [asdict(h) for h in self.history],
                "test_accuracy": self.test_accuracy, "seconds": self.seconds}


def augment(x: torch.Tensor, gen: torch.Generator, shift: int, flip: bool) -> torch.Tensor:
    """Random per-image translation by up to `shift` px (zero fill) and horizontal flip."""
    n, _, h, w = x.shape
    if shift:
        padded = F.pad(x, (shift, shift, shift, shift))
        dy = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
        rows = (dy[:, None] + torch.arange(h)[None]).view(n, 1, h, 1).expand(n, x.shape[1], h,
                                                                             w + 2 * shift)
        padded = torch.gather(padded, 2, rows)
        cols = (dx[:, None] + torch.arange(w)[None]).view(n, 1, 1, w).expand(n, x.shape[1], h, w)
        x = torch.gather(padded, 3, cols)
    if flip:
        mask = torch.rand(n, generator=gen) < 0.5
        x = torch.where(mask.view(n, 1, 1, 1), x.flip(3), x)
    return x


def to_tensor(images: np.ndarray, mean, std) -> torch.Tensor:
    """uint8 ``(N, H, W)`` or ``(N, H, W, C)`` to normalised float ``(N, C, H, W)``."""
    t = torch.from_numpy(np.array(images, dtype=np.uint8, copy=True))
    t = t[:, None] if t.dim() == 3 else t.permute(0, 3, 1, 2)
    t = t.float().div_(255.0)
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (t - m) / s


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].contiguous(memory_format=torch.channels_last)
        correct += (model(xb).argmax(1) == y[i:i + batch_size]).sum().item()
    model.train(was)
    return correct / max(1, len(x))


def fit(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor],
        test: tuple[torch.Tensor, torch.Tensor], recipe: Recipe, seed: int = 0,
        progress: bool = True, name: str = "model",
        on_epoch: Callable[[int, nn.Module], None] | None = None,
        monitor=None, monitor_every: int | None = None) -> TrainResult:
    """Train `model` in place on normalised tensors; evaluates on `test` after every epoch.

    `on_epoch(epoch, model)` is called before training (epoch 0) and after each epoch.
    `monitor` (a `TrainingMonitor`) is called with the step number before training, every
    `monitor_every` optimiser steps (default: once per epoch) and at the end.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    xtr, ytr = train
    model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps = recipe.epochs * ((len(xtr) + recipe.batch_size - 1) // recipe.batch_size)
    # warm up for a quarter of the run (at least 2 steps, so that tiny runs work too)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=max(steps, 4),
                                                pct_start=min(0.5, max(0.25, 2 / max(steps, 4))))
    result = TrainResult(name, recipe)
    start = time.time()
    if on_epoch:
        on_epoch(0, model)
    per_epoch = (len(xtr) + recipe.batch_size - 1) // recipe.batch_size
    every = monitor_every or per_epoch
    step = 0
    if monitor is not None:
        monitor(0, model, epoch=0.0)
    for epoch in range(1, recipe.epochs + 1):
        t0 = time.time()
        model.train()
        order = torch.randperm(len(xtr), generator=gen)
        total, correct, seen = 0.0, 0, 0
        bar = tqdm(range(0, len(xtr), recipe.batch_size),
                   desc=f"{name} epoch {epoch}/{recipe.epochs}", unit="batch", file=sys.stderr,
                   disable=not progress, leave=False)
        for i in bar:
            idx = order[i:i + recipe.batch_size]
            xb = augment(xtr[idx], gen, recipe.shift, recipe.flip)
            xb = xb.contiguous(memory_format=torch.channels_last)
            out = model(xb)
            loss = F.cross_entropy(out, ytr[idx], label_smoothing=recipe.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            correct += (out.argmax(1) == ytr[idx]).sum().item()
            seen += len(idx)
            bar.set_postfix(loss=f"{total / seen:.3f}", acc=f"{correct / seen:.3f}")
            step += 1
            if monitor is not None and (step % every == 0 or step == steps):
                monitor(step, model, epoch=step / per_epoch)
        test_acc = accuracy(model, *test)
        log = EpochLog(epoch, total / seen, correct / seen, test_acc, time.time() - t0)
        result.history.append(log)
        print(f"{name} epoch {epoch}/{recipe.epochs}: loss {log.loss:.4f}, train acc "
              f"{log.train_accuracy:.4f}, test acc {test_acc:.4f} ({log.seconds:.0f} s)",
              file=sys.stderr, flush=True)
        if on_epoch:
            on_epoch(epoch, model)
    model.to(memory_format=torch.contiguous_format)
    model.eval()
    result.test_accuracy = result.history[-1].test_accuracy if result.history else float("nan")
    result.seconds = time.time() - start
    return result


def train_builtin(name: str, out: str | os.PathLike | None = None, seed: int = 0,
                  epochs: int | None = None, progress: bool = True,
                  on_epoch: Callable[[int, nn.Module], None] | None = None,
                  recipe: Recipe | None = None, monitor=None, monitor_every: int | None = None,
                  probe_size: int = 512) -> tuple[nn.Module, TrainResult]:
    """Retrain built-in model `name` from scratch with its recipe; save the state dict to `out`.

    `monitor`: a function ``probe -> monitor`` (e.g. `convlens.TrainingMonitor`) called with the
    first `probe_size` test images; the monitor is then called during training (see `fit`) and
    returned as ``result.monitor``.
    """
    b = BUILTIN_MODELS.get(name)
    if b is None or "train_data" not in b.extra:
        trainable = [n for n, m in BUILTIN_MODELS.items() if "train_data" in m.extra]
        raise ConvlensError(f"no training recipe for built-in {name!r}; "
                            f"trainable: {', '.join(trainable)}")
    recipe = recipe or Recipe(**asdict(b.extra["recipe"]))
    if epochs is not None:
        recipe.epochs = epochs
    torch.manual_seed(seed)
    (xtr, ytr), (xte, yte) = b.extra["train_data"](recipe)
    train = (to_tensor(xtr, b.mean, b.std), torch.tensor(np.asarray(ytr, dtype=np.int64)))
    test = (to_tensor(xte, b.mean, b.std), torch.tensor(np.asarray(yte, dtype=np.int64)))
    model = b.build()
    if monitor is not None:  # the factory gets a probe: the first test images
        monitor = monitor(test[0][:probe_size].contiguous())
    result = fit(model, train, test, recipe, seed=seed, progress=progress, name=name,
                 on_epoch=on_epoch, monitor=monitor, monitor_every=monitor_every)
    result.monitor = monitor
    if out is not None:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        torch.save(model.state_dict(), out)
    return model, result
