"""`scan`: one pass over a dataset for the top-k images of every unit, codes and predictions.

METHODS.md §2 (Girshick et al., R-CNN 2014, Fig. 4; Szegedy et al. 2014, §3), and the
collection of CNN codes (§3) and predictions with item attributes (§8) in the same pass.
`scan` builds the techniques' reducers (`TopK`, `Directions`, `ActivationStats`,
`CodesReducer`, `Predictions`), runs them with the local or the Ray engine
(`convlens.engine`), checkpoints as it goes and writes a scan folder (`ScanResult`).

A scan folder holds ``manifest.json`` (kind ``"scan"``) and

- ``codes.npy`` float16 ``(N, D)``: row ``i`` is the code of dataset item ``code_index[i]``;
  ``code_index.npy`` int64 ``(N,)``, increasing (skipped items are absent);
- ``predictions.parquet``: one row per item, sorted by ``index``: ``index, label, pred, correct,
  p_true, p_pred, top5, top5_prob`` and the item's scalar metadata columns;
- per layer ``topk_<layer>_index.npy`` ``(C, k)`` int64 dataset indices, ``topk_<layer>_score``
  ``(C, k)`` float32, ``topk_<layer>_pos`` ``(C, k, 2)`` (y, x) arg-max positions; the same for
  random directions as ``dirs_<layer>_*`` plus ``dirs_<layer>_vectors`` ``(D, C)``;
- the activation statistics tables ``channels`` and ``layers`` (as `StatsResult`).

Reading it back needs no torch: `SavedResult(folder)`; `ScanResult.load(folder)` (or
`convlens.results.load_result`) makes the result again.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ...data.labels import align_labels, warn_if_differ
from ...engine import Checkpoint, Slots, fingerprint_model, fingerprint_order, run_local
from ...engine.settings import RunSettings, as_run
from ...errors import ConvlensError, unknown
from ...hooks import find_layer, model_of
from ...lens import default_layers, lens_and_data
from ..activity.results import StatsResult
from ..activity.stats import DEAD_THRESHOLD, ActivationStats
from .codes import CodesReducer, code_layer
from .predictions import Predictions
from .results import ScanResult
from .topk import Directions, TopK

WORK = ".convlens-scan"  # working folder inside `out`: checkpoint, partial codes, parts
ENGINES = ("local", "ray")
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def _resolve_layers(lens, layers) -> list[str]:
    if layers is None or layers == "relu":
        return default_layers(lens)
    if layers == "conv":
        return [n for n, m in model_of(lens).named_modules() if isinstance(m, nn.Conv2d)]
    names = [layers] if isinstance(layers, str) else list(layers)
    for n in names:
        lens.layer(n)  # an unknown name: error naming the close matches
    return list(dict.fromkeys(names))


def _field_info(lens, layers: Sequence[str]) -> tuple[dict, dict]:
    infos = {i.name: i for i in lens.layers(fields=layers)}
    fields, shapes = {}, {}
    for n in layers:
        info = infos.get(n)
        shape = None if info is None else (info.grid or info.shape)  # tokens: on the grid
        shapes[n] = None if shape is None else list(shape)
        f = None if info is None else info.field
        fields[n] = None if f is None else {  # the local field, and what is known besides
            "size": list(f.size), "stride": None if f.stride is None else list(f.stride),
            "center": None if f.center is None else list(f.center), "is_global": f.is_global,
            "global_context": f.global_context, "clipped": f.clipped, "envelope": f.envelope,
            "source": f.source}
    return fields, shapes


def _dtype(dtype) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise unknown("dtype", str(dtype), DTYPES)
    return DTYPES[dtype]


def scan(lens, data, layers: str | Sequence[str] | None = None, topk: int = 9,
         directions: int = 0, codes: str | None = "auto", predictions: bool = True,
         stats: bool = True, out: str | os.PathLike | None = None, seed: int = 0,
         indices: Sequence[int] | None = None, n: int | None = None,
         threshold: float = DEAD_THRESHOLD, run: RunSettings | None = None) -> ScanResult:
    """One pass over a dataset: the top-k images of every unit, and codes and predictions.

    For each unit (layer, channel) the score of image ``i`` is ``max_p A_l(x_i)[c, p]``; the
    `topk` best images are kept with the arg-max position (Girshick et al., R-CNN 2014,
    https://arxiv.org/abs/1311.2524, Fig. 4). With ``directions=D``, the same for D random
    unit vectors ``v`` per layer, score ``max_p <v, A_l(x_i)[:, p]>`` (Szegedy et al.,
    "Intriguing properties of neural networks" 2014, https://arxiv.org/abs/1312.6199, §3).
    The same pass collects per-channel activation statistics (dead filters, sparsity), the
    code of every image (float16 on disk) and the predictions with the items' metadata.

    The pass is a map-reduce (`convlens.engine`): results do not depend on the batch
    size, the order or the number of workers (ties go to the smaller image index). With
    `out`, it checkpoints every ``run.checkpoint_every`` batches into ``out/.convlens-scan``;
    run again after a crash or a kill and it resumes where the last checkpoint was
    (``run.resume``).
    Memory: O(layers × channels × k) plus one batch, whatever the dataset size.

    Args:
        lens: the model; the local engine runs it where it is (move it first for a GPU).
        data: a dataset, or a data spec (``"builtin:fashion-mnist:test"``); the spec is
            recorded so that ``convlens unit-patches`` can cut patches later.
        layers: names, ``"relu"`` (default: every ReLU, post-ReLU maps) or ``"conv"``.
        topk: images kept per unit (0: none). directions: random directions per layer.
        codes: the code layer, ``"auto"`` (the input of the last linear layer), or None.
        predictions: collect the predictions table. stats: the activation statistics.
        out: the scan folder (written, with a manifest). None: a temporary folder that
            lives as long as the result (call ``.save(dir)`` to keep it).
        seed: seeds the random directions.
        indices: scan exactly these items; n: the first `n` items only.
        threshold: share of all-zero maps that makes a channel dead (statistics).
        run: how the pass runs (`convlens.engine.settings.RunSettings`): batch size, workers,
            engine (``"local"`` or ``"ray"``, see `convlens.engine.ray`), dtype (e.g.
            ``"bf16"``: the forward pass under autocast), channels_last, device (where Ray
            tasks run the model), resume, checkpoint_every, the Ray engine's shard_size,
            ray_address and ray_options, progress.

    Returns a `ScanResult` (saved in `out` when given).

    Example::

        res = scan(lens, "builtin:fashion-mnist:test", ["features.4"], topk=9, out="scan/")
        res.topk["features.4"]["index"][3]        # the 9 images unit 3 likes best
    """
    run = as_run(run)
    if run.engine not in ENGINES:
        raise unknown("engine", run.engine, ENGINES)
    if topk < 0 or directions < 0:
        raise ConvlensError("topk and directions must be at least 0")
    if n is not None and n < 1:
        raise ConvlensError(f"n must be at least 1, got {n}")
    dtype = _dtype(run.dtype)
    lens, data = lens_and_data(lens, data)
    spec = getattr(data, "spec", None)
    if spec is not None and not str(spec).startswith("builtin:") and os.path.exists(spec):
        spec = os.path.abspath(spec)  # `convlens unit-patches` may run from another folder
    if data.lens is None:
        data.with_lens(lens)
    names = _resolve_layers(lens, layers)
    code = None
    if codes:
        code = code_layer(lens) if codes == "auto" else codes
        find_layer(model_of(lens), code)  # a name, or "input of NAME"
    if indices is not None:
        order = np.asarray(list(indices), dtype=np.int64)
    else:
        order = np.arange(len(data) if n is None else min(n, len(data)), dtype=np.int64)
    if len(order) and (order.min() < 0 or order.max() >= len(data)):
        raise ConvlensError(f"indices must lie in 0..{len(data) - 1}")

    # where the pass works: out/.convlens-scan, or a temporary folder
    keep = None
    if out is None:
        keep = tempfile.TemporaryDirectory(prefix="convlens-scan-")
        folder = Path(keep.name)
    else:
        folder = Path(out)
    work = folder / WORK
    if not run.resume and work.exists():
        shutil.rmtree(work)

    reducers: list = []
    top = TopK(names, topk) if topk else None
    dirs = Directions(names, directions, max(topk, 1), seed) if directions else None
    st = ActivationStats(names) if stats else None
    cod = (CodesReducer(code, Slots.of(order, len(data)), work / "codes.partial.npy") if code
           else None)
    label_map = align_labels(getattr(data, "classes", None), getattr(lens, "labels", None))
    if predictions:
        warn_if_differ(label_map)
    pred = Predictions(work / "predictions", label_map=label_map) if predictions else None
    reducers = [r for r in (top, dirs, st, cod, pred) if r is not None]

    fingerprint = {"model": fingerprint_model(lens), "data": spec or type(data).__name__,
                   "data_len": len(data), "order": fingerprint_order(order), "layers": names,
                   "topk": topk, "directions": directions, "seed": seed, "codes": code,
                   "predictions": bool(predictions), "stats": bool(stats)}
    # (not the batch size, engine or shards: they do not change the result, so a scan may
    # resume with others)
    checkpoint = Checkpoint(work / "checkpoint.pt", fingerprint) if out is not None else None
    if checkpoint is None or not checkpoint.path.is_file():
        shutil.rmtree(work, ignore_errors=True)  # leftovers of a run killed before a checkpoint
    work.mkdir(parents=True, exist_ok=True)

    desc = f"scan {getattr(lens, 'name', 'model')}"
    if run.engine == "local":
        info = run_local(lens, data, reducers, order, run.batch_size, run.workers, run.progress,
                         desc, checkpoint, run.checkpoint_every, None, dtype, run.channels_last)
    else:
        from ...engine.ray import run_ray
        info = run_ray(lens, data, reducers, order, run.batch_size, run.workers, run.progress,
                       desc, checkpoint, run.shard_size, run.ray_address, run.ray_options,
                       None if run.device is None else str(run.device), dtype, run.channels_last)

    # finalize: a kill from here on means a fresh pass (the working files get consumed)
    if checkpoint is not None:
        checkpoint.remove()
    code_dim = None
    if cod is not None:
        _, index, code_dim = cod.finalize(folder / "codes.npy")
        np.save(folder / "code_index.npy", index)
    if pred is not None:
        pred.finalize(folder / "predictions.parquet")
    fields, shapes = _field_info(lens, names)
    stats_result = None
    if st is not None:
        stats_result = StatsResult.from_reducer(st.to("cpu"), threshold)
        stats_result.skipped = info.skipped
    params = {"layers": names, "topk": topk, "directions": directions, "seed": seed,
              "code_layer": code, "code_dim": code_dim, "predictions": bool(predictions),
              "n": info.images, "skipped": info.skipped,
              "skipped_sources": info.skipped_sources, "data": spec, "data_len": len(data),
              "scanned": len(order), "engine": run.engine, "batch_size": run.batch_size,
              "dtype": str(dtype or torch.float32).removeprefix("torch."),
              "resumed_from": info.resumed_from, "seconds": round(info.seconds, 3),
              "cpu_seconds": round(info.cpu_seconds, 3),
              "images_per_s": round((info.seen - info.resumed_from) / info.seconds, 1)
              if info.seconds > 0 else None,
              "stats_threshold": threshold, "fields": fields, "shapes": shapes,
              "labels": list(getattr(lens, "labels", None) or []),
              "classes": list(getattr(data, "classes", None) or []),
              "label_map": label_map.info()}
    result = ScanResult(names, top.finalize() if top else {}, dirs.finalize() if dirs else {},
                        stats_result, folder, params, keep)
    if out is not None:  # the data; pictures are drawn when the caller saves (the CLI does)
        result.save(folder, lens=lens, pictures=False)
    shutil.rmtree(work, ignore_errors=True)
    return result
