"""What every technique that streams a dataset does around the pass: pick the items, set up
the checkpoint in its output folder, run the local or the Ray engine as `RunSettings` says."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConvlensError
from .checkpoint import Checkpoint, PassInfo, fingerprint_model, fingerprint_order
from .local import run_local
from .reducer import Reducer
from .settings import RunSettings


def item_order(data, n: int | None = None, indices: Sequence[int] | None = None) -> np.ndarray:
    """The dataset indices a pass reads: `indices`, else the first `n` items (default all)."""
    if indices is not None:
        order = np.asarray(list(indices), dtype=np.int64)
    else:
        order = np.arange(len(data) if n is None else min(int(n), len(data)), dtype=np.int64)
    if len(order) and (order.min() < 0 or order.max() >= len(data)):
        raise ConvlensError(f"indices must lie in 0..{len(data) - 1}")
    return order


def pass_checkpoint(lens, data, order: np.ndarray, work: Path, run: RunSettings,
                    config: dict[str, Any]) -> Checkpoint:
    """The checkpoint of a pass in folder `work` (emptied first unless ``run.resume``),
    fingerprinted by the model, the data, the items and the reducer's `config`."""
    if not run.resume and work.exists():
        shutil.rmtree(work)
    spec = getattr(data, "spec", None)
    fingerprint = {"model": fingerprint_model(lens), "data": spec or type(data).__name__,
                   "data_len": len(data), "order": fingerprint_order(order), **config}
    return Checkpoint(work / "checkpoint.pt", fingerprint)


def run_pass(lens, data, reducers: Sequence[Reducer], order: np.ndarray, run: RunSettings,
             desc: str, checkpoint: Checkpoint | None = None) -> PassInfo:
    """Stream `order` through `reducers` on the engine ``run.engine`` names (``"local"`` or
    ``"ray"``), with the batch size, workers, progress and shards of `run`."""
    if run.engine == "local":
        return run_local(lens, data, reducers, order, run.batch_size, run.workers,
                         run.progress, desc, checkpoint, run.checkpoint_every)
    from .ray import run_ray
    return run_ray(lens, data, reducers, order, run.batch_size, run.workers, run.progress,
                   desc, checkpoint, run.shard_size, run.ray_address, run.ray_options or None)
