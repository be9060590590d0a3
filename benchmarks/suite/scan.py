"""The dataset pass: `scan` with top-9 on every ReLU against a bare forward pass of the same
model, batch and data (BENCHMARKS.md, "scan"; goal 0.9: at least 90 % of the bare images/s)."""
from __future__ import annotations

import numpy as np
import torch

from convlens.data.base import ImageDataset

from .base import Context, Row, Skipped

GOAL = 0.9


class Noise(ImageDataset):
    """`n` random RGB images of `size` x `size` (uint8, seeded per item)."""

    classes = [str(k) for k in range(1000)]

    def __init__(self, n: int, size: int = 224, lens=None):
        super().__init__(lens)
        self.n, self.size = n, size

    def __len__(self):
        return self.n

    def load(self, i):
        rng = np.random.default_rng(i)
        return rng.integers(0, 256, (self.size, self.size, 3), dtype=np.uint8), i % 1000, {}


def _row(ctx: Context, lens, data, n: int, batch: int, what: str) -> Row:
    from convlens.data import Loader
    from convlens.engine.settings import RunSettings
    from convlens.hooks import capture
    from convlens.lens import default_layers
    from convlens.techniques.units.scan import scan

    layers = default_layers(lens)
    channels_last = ctx.gpu
    run = RunSettings(batch_size=batch, progress=False, channels_last=channels_last,
                      dtype="bf16" if ctx.precision == "bf16" else None)
    model = lens.model.to(ctx.device).eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)

    def ours():
        return scan(lens, data, layers, topk=9, n=n, stats=False, codes=None,
                    predictions=False, run=run)

    def bare():
        with torch.no_grad():
            for b in Loader(data, batch_size=batch, indices=range(n)):
                x = b.images.to(ctx.device, non_blocking=True)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                lens(x)
        return None

    last = layers[-1]

    def difference(res, _):
        """Largest gap between scan's top-1 score of each unit of the last layer and the
        brute-force maximum over images and positions (one hooked pass, not timed)."""
        best = None
        with torch.no_grad(), ctx.autocast():
            for b in Loader(data, batch_size=batch, indices=range(n)):
                x = b.images.to(ctx.device)
                with capture(lens, [last]) as acts:
                    lens(x)
                a = acts[last].float()
                m = (a.flatten(2).amax(2) if a.dim() > 2 else a).amax(0).cpu()
                best = m if best is None else torch.maximum(best, m)
        got = torch.as_tensor(np.asarray(res.topk[last]["score"])[:, 0]).float()
        return float((got - best).abs().max() / best.abs().max().clamp_min(1e-12))

    return Row("scan", f"scan top-9, {what}", f"{what}, batch {batch}, {n} images, "
               f"{len(layers)} ReLU layers", n, "images", ours, bare, "bare forward pass",
               difference, 1e-5 if ctx.precision == "fp32" else 2e-2,
               "top-1 score vs brute force, relative", goal=GOAL)


def rows(ctx: Context) -> list:
    import convlens
    from convlens.data import load_data

    out = []
    if ctx.mode == "gpu":
        for arch in ("resnet50", "vgg16"):
            lens = convlens.load_model(f"torchvision:{arch}")
            out.append(_row(ctx, lens, Noise(2048, 224, lens), 2048, 256,
                            f"{arch} 224 px"))
    else:
        lens = convlens.load_model("builtin:fashion-net")
        data = load_data("builtin:fashion-mnist:test", lens=lens)
        n = ctx.pick(256, 2000)
        out.append(_row(ctx, lens, data, n, 128, "fashion-net 28 px"))
        r18 = convlens.load_model("torchvision:resnet18")
        n, size = ctx.pick((16, 64), (192, 224))
        out.append(_row(ctx, r18, Noise(n, size, r18), n, ctx.pick(8, 32),
                        f"resnet18 {size} px"))
    if ctx.gpu and torch.cuda.device_count() < 2:
        out.append(Skipped("scan", "scan on several devices",
                           "one GPU here: the engine's scaling (images/s per device and in "
                           "total, engine='ray') needs several GPUs or a Ray cluster"))
    elif not ctx.gpu:
        out.append(Skipped("scan", "scan on several devices",
                           "a CPU run: the engine's scaling is measured on several GPUs"))
    return out
