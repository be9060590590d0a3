"""Running reducers over a dataset: the local engine, checkpoints and resume.

`feed` is the inner loop shared by every engine: one forward pass per batch (eval mode, no
grad), each reducer's map step (`Reducer.summarize`) inside the forward hooks, then its
`update`. `run_local` streams a dataset through it with a progress bar (images/s) and
checkpoints the reducers every N batches; `local_pass` is the minimal form of it.
"""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from ..data import Loader
from ..hooks import capture, find_layers, model_of, preserved
from .checkpoint import Checkpoint, PassInfo
from .reducer import Reducer, shared


def model_device(lens) -> torch.device:
    p = next(iter(lens.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


class _Done(Exception):
    """Raised by a hook once every layer the reducers read has run its calls (no logits
    needed): the rest of the forward pass is skipped."""


@contextlib.contextmanager
def _stop_when(lens, layers: Sequence[str], done) -> Iterator[None]:
    """Forward hooks on the modules of `layers`, registered after (so run after) those of
    `capture`: each raises `_Done` when ``done()``."""
    def hook(module, args, output):
        if done():
            raise _Done

    model = model_of(lens)
    modules = {id(m): m for m in find_layers(model, layers)}
    handles = [m.register_forward_hook(hook) for m in modules.values()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def feed(lens, batches: Iterable, reducers: Sequence[Reducer], device=None,
         dtype: torch.dtype | None = None, channels_last: bool = False) -> Iterator:
    """Run each batch through `lens` and update every reducer; yields each batch when done.

    Each reducer's `summarize` runs inside the forward hook on the live activation (no copy),
    the result is handed to its `update` with the logits. Where no reducer reads the logits
    (`Reducer.needs_logits`), each batch after the first stops its forward pass once every
    layer has run as many times as in the first (logits None; a model whose calls per layer
    grow after the first batch would be cut at the first batch's count). `dtype` (e.g.
    ``torch.bfloat16``) runs the forward under autocast; `channels_last` feeds NHWC input. The
    model's training flags are restored afterwards and no hook is left behind.
    """
    device = torch.device(device) if device is not None else model_device(lens)
    p = next(iter(lens.parameters()), None)
    param_dtype = p.dtype if p is not None and p.dtype.is_floating_point else None
    users: dict[str, list[tuple[int, Reducer]]] = {}
    for i, r in enumerate(reducers):
        for name in r.layers:
            users.setdefault(name, []).append((i, r))
    layers = list(users)
    # A module run several times per forward (torchvision ResNets reuse one ReLU per block)
    # counts with its last call, as in `capture`. Once a batch has shown how many calls each
    # layer gets, earlier calls are not summarised at all; a batch with fewer calls than
    # expected (a dynamic model) is run again with every call summarised.
    expected: dict[str, int] = {}
    calls: dict[str, int] = {}

    def reduce(name: str, t: torch.Tensor) -> dict[int, Any] | None:
        i = calls.get(name, 0)
        calls[name] = i + 1
        if i < expected.get(name, 0) - 1:
            return None
        try:
            return {j: r.summarize(name, t) for j, r in users[name]}
        finally:
            shared.clear()  # results shared between reducers live for this call only

    amp = (torch.autocast(device.type, dtype=dtype)
           if dtype is not None and dtype != torch.float32 else contextlib.nullcontext())

    def forward(batch, x):
        cap.clear()
        calls.clear()
        for r in reducers:
            r.begin(batch)
        with amp:
            try:
                return lens(x)
            except _Done:
                return None

    early = not any(getattr(r, "needs_logits", True) for r in reducers)

    def done() -> bool:  # every layer has had the calls the first batch showed
        return early and bool(expected) and all(calls.get(n, 0) >= expected.get(n, 0)
                                                for n in layers)

    with preserved(lens), torch.no_grad():
        lens.eval()
        for r in reducers:
            r.attach(lens)
        with capture(lens, layers, reduce=reduce) as cap, (
                _stop_when(lens, layers, done) if early else contextlib.nullcontext()):
            for batch in batches:
                x = batch.images.to(device, non_blocking=True)
                if dtype is None and param_dtype is not None:  # no autocast: the model's type
                    x = x.to(param_dtype)
                if channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                logits = forward(batch, x)
                if any(calls.get(n, 0) < expected.get(n, 0) for n in layers):
                    expected.clear()
                    logits = forward(batch, x)
                expected.update(calls)
                got = {name: cap[name] for name in layers}
                for i, r in enumerate(reducers):
                    r.update(batch, {name: got[name][i] for name in r.layers}, logits)
                yield batch


def progress_bar(total: int, initial: int = 0, desc: str = "scan", enabled: bool = True):
    """A tqdm bar counting images (rate in images/s), on stderr."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="img", unit_scale=True,
                disable=not enabled, file=sys.stderr, dynamic_ncols=True, smoothing=0.05,
                leave=False)


# ------------------------------------------------------------------------------------------
# the local engine
# ------------------------------------------------------------------------------------------
def run_local(lens, data, reducers: Sequence[Reducer], order: np.ndarray, batch_size: int = 64,
              workers: int = 0, progress: bool = True, desc: str = "scan",
              checkpoint: Checkpoint | None = None, checkpoint_every: int = 50, device=None,
              dtype: torch.dtype | None = None, channels_last: bool = False) -> PassInfo:
    """Stream the items `order` (dataset indices) of `data` through `lens` into `reducers`.

    With a `checkpoint`, the pass resumes from it (if it exists) and saves one every
    `checkpoint_every` batches; batches are consecutive runs of `order`, so the position is
    the number of items done. Memory: the reducers' state plus one batch.
    """
    info = PassInfo()
    start = checkpoint.restore(reducers, info) if checkpoint is not None else 0
    if data.lens is None:
        data.with_lens(lens)
    loader = Loader(data, batch_size=batch_size, workers=workers, progress=False,
                    indices=order[start:].tolist() if start else order.tolist())
    t0, c0 = time.perf_counter(), time.process_time()
    bar = progress_bar(len(order), start, desc, progress)
    seen_before, skipped_before = info.seen, info.skipped
    sources_before = list(info.skipped_sources)

    def sync() -> None:  # the loader counts every item read, bad ones too
        info.seen = seen_before + loader.seen
        info.skipped = skipped_before + len(loader.skipped)
        info.skipped_sources = (sources_before + [s.source for s in loader.skipped[:100]])[:100]
        bar.update(info.seen - bar.n)

    try:
        batches = 0
        for batch in feed(lens, loader, reducers, device, dtype, channels_last):
            batches += 1
            sync()
            if batch.skipped:
                bar.set_postfix(skipped=info.skipped, refresh=False)
            if checkpoint is not None and batches % max(1, checkpoint_every) == 0:
                checkpoint.save(start + loader.seen, reducers, info)
        sync()
    finally:
        bar.close()
    info.seconds = time.perf_counter() - t0
    info.cpu_seconds = time.process_time() - c0
    return info


@torch.no_grad()
def local_pass(lens, data, reducers: Sequence[Reducer], batch_size: int = 64, workers: int = 0,
               progress: bool = True, desc: str = "scan", indices=None) -> Loader:
    """Stream `data` through `lens` once (eval mode) and feed every reducer each batch.

    Returns the loader, whose ``skipped`` lists the files that could not be read.
    """
    if data.lens is None:
        data.with_lens(lens)
    loader = Loader(data, batch_size=batch_size, workers=workers, progress=progress, desc=desc,
                    indices=indices)
    for _ in feed(lens, loader, reducers):
        pass
    return loader
