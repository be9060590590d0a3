"""The Ray engine: the same reducers, run as Ray tasks over shards of the dataset, then merged.

The items to scan are cut into shards of consecutive indices. Each shard is a Ray task that
loads the model and the dataset from the object store, runs `feed` over its items with fresh
in-memory reducers (`Reducer.spawn`) and returns them; the driver merges the returned
reducers **in shard order** (so the result does not depend on which task finished first),
writes codes and predictions to disk as they arrive, and checkpoints after each merged shard.
A killed pass resumes after the last merged shard.

Install with ``pip install "convlens[ray]"``. On one machine nothing else is needed: a local
Ray starts on first use. For a cluster, connect first and make the data readable on every node
(a shared file system, or a built-in dataset)::

    import ray
    ray.init(address="auto")            # or "ray://HEAD:10001" with ray[client]
    convlens.scan(lens, "builtin:fashion-mnist:test", engine="ray", out="scan/")

or give ``ray_address=...`` to `scan` (``--ray-address`` on the command line); without either,
``RAY_ADDRESS`` is honoured by `ray.init`.
"""
from __future__ import annotations

import copy
import time
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ConvlensError
from .checkpoint import Checkpoint, PassInfo
from .local import feed, progress_bar
from .reducer import Reducer


def require_ray():
    """The `ray` module, or an error that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ConvlensError('engine="ray" needs Ray: pip install "convlens[ray]" '
                            '(or pip install "ray>=2.9")') from None
    return ray


def _scan_shard(lens, data, indices: np.ndarray, reducers: list[Reducer], batch_size: int,
                workers: int, device: str | None, dtype: torch.dtype | None,
                channels_last: bool) -> tuple[list[Reducer], int, list[str]]:
    """One Ray task: the items `indices` through fresh reducers; returns them and the counts."""
    from ..data import Loader

    if device is None:
        device = "cuda" if torch.cuda.is_available() and _has_gpu() else "cpu"
    lens = lens.to(device)
    data.with_lens(lens)
    loader = Loader(data, batch_size=batch_size, workers=workers, indices=indices.tolist())
    for _ in feed(lens, loader, reducers, device, dtype, channels_last):
        pass
    return [r.to("cpu") for r in reducers], loader.seen, [s.source for s in loader.skipped]


def _has_gpu() -> bool:
    try:
        import ray
        return bool(ray.get_gpu_ids())
    except Exception:  # noqa: BLE001
        return False


def shard_bounds(n: int, shard_size: int) -> list[tuple[int, int]]:
    """Consecutive ``[start, stop)`` ranges of at most `shard_size` items covering ``0..n``."""
    shard_size = max(1, int(shard_size))
    return [(s, min(n, s + shard_size)) for s in range(0, n, shard_size)]


def default_shard_size(n: int, batch_size: int, cpus: int) -> int:
    """About four shards per CPU (load balance), whole batches, at most 64 batches each."""
    per = -(-n // max(1, 4 * cpus))
    per = -(-per // batch_size) * batch_size
    return int(max(batch_size, min(per, 64 * batch_size)))


def run_ray(lens, data, reducers: Sequence[Reducer], order: np.ndarray, batch_size: int = 64,
            workers: int = 0, progress: bool = True, desc: str = "scan",
            checkpoint: Checkpoint | None = None, shard_size: int | None = None,
            address: str | None = None, task_options: dict[str, Any] | None = None,
            device: str | None = None, dtype: torch.dtype | None = None,
            channels_last: bool = False, max_in_flight: int | None = None) -> PassInfo:
    """Scan `order` with Ray tasks; merge into `reducers` in shard order (see the module doc).

    Args:
        shard_size: items per task (default: about four shards per CPU of the cluster).
        address: passed to ``ray.init`` when Ray is not initialised yet.
        task_options: ``ray.remote`` options per task, default ``{"num_cpus": 1}``
            (``{"num_gpus": 1}`` to run each shard on a GPU).
        max_in_flight: tasks submitted ahead of the merge (memory: that many shard results).
    """
    ray = require_ray()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, ignore_reinit_error=True,
                 log_to_driver=False)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    info = PassInfo()
    done = checkpoint.restore(reducers, info) if checkpoint is not None else 0
    # the items before `done` are merged already (by this engine or the local one)
    shard_size = shard_size or default_shard_size(len(order) - done, batch_size, cpus)
    bounds = [(done + s, done + e) for s, e in shard_bounds(len(order) - done, shard_size)]

    # the model travels once, on the CPU; the dataset without its lens (attached in the task)
    cpu_lens = lens if next(iter(lens.parameters()), torch.zeros(0)).device.type == "cpu" \
        else copy.deepcopy(lens).cpu()
    shipped = copy.copy(data)
    shipped.lens = None
    lens_ref, data_ref = ray.put(cpu_lens), ray.put(shipped)
    opts = {"num_cpus": 1} | dict(task_options or {})
    task = ray.remote(**opts)(_scan_shard)
    max_in_flight = max_in_flight or max(2, 2 * cpus)

    t0, c0 = time.perf_counter(), time.process_time()
    bar = progress_bar(len(order), done, desc, progress)
    pending: dict[Any, int] = {}
    ready: dict[int, tuple] = {}
    nxt = merge_at = 0  # next shard to submit; next shard to merge
    try:
        while merge_at < len(bounds):
            while nxt < len(bounds) and len(pending) + len(ready) < max_in_flight:
                s, e = bounds[nxt]
                ref = task.remote(lens_ref, data_ref, order[s:e], [r.spawn() for r in reducers],
                                  batch_size, workers, device, dtype, channels_last)
                pending[ref] = nxt
                nxt += 1
            finished, _ = ray.wait(list(pending), num_returns=1)
            for ref in finished:
                ready[pending.pop(ref)] = ray.get(ref)
            while merge_at in ready:  # merge in shard order: deterministic
                parts, seen, skipped = ready.pop(merge_at)
                for r, part in zip(reducers, parts):
                    r.merge(part)
                info.seen += seen
                info.add_skipped(skipped)
                merge_at += 1
                bar.update(seen)
                if skipped:
                    bar.set_postfix(skipped=info.skipped, refresh=False)
                if checkpoint is not None:
                    checkpoint.save(bounds[merge_at - 1][1], reducers, info)
    finally:
        bar.close()
        for ref in pending:
            ray.cancel(ref, force=True)
    info.seconds = time.perf_counter() - t0
    info.cpu_seconds = time.process_time() - c0  # the driver's only
    return info
