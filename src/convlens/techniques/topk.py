"""The dataset pass: images that maximally activate each unit, and codes and predictions.

METHODS.md §2 (Girshick et al., R-CNN 2014, Fig. 4; Szegedy et al. 2014, §3), and the
collection of CNN codes (§3) and predictions with item attributes (§8) in the same pass.
`scan` builds the reducers of `convlens.scan.reducers`, runs them with the local or the Ray
engine, checkpoints as it goes and writes a scan folder (`convlens.scan.result`).
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConvlensError, unknown
from ..hooks import capture, model_of, preserved
from ..scan.engine import Checkpoint, fingerprint_model, fingerprint_order, run_local
from ..scan.reducers import (ActivationStats, Codes, Directions, Predictions, Slots, TopK)
from ..scan.result import ScanResult
from .activations import DEAD_THRESHOLD, default_layers

WORK = ".convlens-scan"  # working folder inside `out`: checkpoint, partial codes, parts
ENGINES = ("local", "ray")
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def code_layer(lens) -> str:
    """The layer whose output is the network's code: the input of the last linear layer.

    Walks back from the last `nn.Linear` (in module order) to the nearest leaf module whose
    output has ``in_features`` values per image (preferring a ReLU or pooling over a
    dropout/flatten/identity that passes the same values on), and checks on a random input
    that this output, flattened, is what the linear layer gets. Fashion-net: ``classifier.6``
    (fc7 after its ReLU); torchvision ResNets: ``avgpool``.
    """
    model = model_of(lens)
    mods = [(n, m) for n, m in model.named_modules() if n]
    linear = [i for i, (_, m) in enumerate(mods) if isinstance(m, nn.Linear)]
    if not linear:
        raise ConvlensError("the model has no linear layer, so no default code layer: give "
                            "codes=LAYER (--codes LAYER), or codes=None")
    last_name, last = mods[linear[-1]]
    shapes = {i.name: i.shape for i in lens.layers()}
    passthrough = (nn.Dropout, nn.Identity, nn.Flatten)
    fallback = None
    for name, m in reversed(mods[:linear[-1]]):
        shape = shapes.get(name)
        if list(m.children()) or shape is None or math.prod(shape) != last.in_features:
            continue
        if isinstance(m, passthrough):
            fallback = fallback or name
            continue
        if _feeds(lens, name, last_name, last):
            return name
    if fallback and _feeds(lens, fallback, last_name, last):
        return fallback
    raise ConvlensError(f"cannot tell which layer feeds the last linear layer {last_name!r}: "
                        "give codes=LAYER (--codes LAYER)")


def _feeds(lens, name: str, linear_name: str, linear: nn.Linear) -> bool:
    """Whether ``linear(output of name)`` is the linear layer's output on a random input."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((2, *lens.input_size), generator=gen).to(lens.example_input().device)
    with preserved(lens), torch.no_grad():
        lens.eval()
        with capture(lens, [name, linear_name]) as cap:
            lens(x)
        a, out = cap[name].flatten(1), cap[linear_name]
        return a.shape[1] == linear.in_features and torch.allclose(
            linear(a), out, rtol=1e-4, atol=1e-4 * float(out.abs().max()) + 1e-6)


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
    infos = {i.name: i for i in lens.layers()}
    fields, shapes = {}, {}
    for n in layers:
        info = infos.get(n)
        shapes[n] = None if info is None or info.shape is None else list(info.shape)
        f = None if info is None else info.field
        fields[n] = None if f is None else {
            "size": list(f.size), "stride": None if f.stride is None else list(f.stride),
            "center": None if f.center is None else list(f.center), "is_global": f.is_global}
    return fields, shapes


def _dtype(dtype) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise unknown("dtype", str(dtype), DTYPES)
    return DTYPES[dtype]


def scan(lens, data, layers: str | Sequence[str] | None = None, topk: int = 9,
         directions: int = 0, codes: str | None = "auto", predictions: bool = True,
         stats: bool = True, out: str | os.PathLike | None = None, batch_size: int = 64,
         workers: int = 0, engine: str = "local", resume: bool = True,
         checkpoint_every: int = 50, seed: int = 0, indices: Sequence[int] | None = None,
         limit: int | None = None, progress: bool = True, dtype=None,
         channels_last: bool = False, device=None, threshold: float = DEAD_THRESHOLD,
         shard_size: int | None = None, ray_address: str | None = None,
         ray_options: dict[str, Any] | None = None) -> ScanResult:
    """One pass over a dataset: the top-k images of every unit, and codes and predictions.

    For each unit (layer, channel) the score of image ``i`` is ``max_p A_l(x_i)[c, p]``; the
    `topk` best images are kept with the arg-max position (Girshick et al., R-CNN 2014,
    https://arxiv.org/abs/1311.2524, Fig. 4). With ``directions=D``, the same for D random
    unit vectors ``v`` per layer, score ``max_p <v, A_l(x_i)[:, p]>`` (Szegedy et al.,
    "Intriguing properties of neural networks" 2014, https://arxiv.org/abs/1312.6199, §3).
    The same pass collects per-channel activation statistics (dead filters, sparsity), the
    code of every image (float16 on disk) and the predictions with the items' metadata.

    The pass is a map-reduce (`convlens.scan.reducers`): results do not depend on the batch
    size, the order or the number of workers (ties go to the smaller image index). With
    `out`, it checkpoints every `checkpoint_every` batches into ``out/.convlens-scan``; run
    again after a crash or a kill and it resumes where the last checkpoint was (``resume``).
    Memory: O(layers × channels × k) plus one batch, whatever the dataset size.

    Args:
        lens: the model; the local engine runs it where it is (move it first for a GPU).
        data: a dataset, or a data spec (``"builtin:fashion-mnist:test"``); the spec is
            recorded so that ``convlens units`` can cut patches later.
        layers: names, ``"relu"`` (default: every ReLU, post-ReLU maps) or ``"conv"``.
        topk: images kept per unit (0: none). directions: random directions per layer.
        codes: the code layer, ``"auto"`` (the input of the last linear layer), or None.
        predictions: collect the predictions table. stats: the activation statistics.
        out: the scan folder (written, with a manifest). None: a temporary folder that
            lives as long as the result (call ``.save(dir)`` to keep it).
        batch_size, workers: for the data loader. indices / limit: scan only those items.
        engine: ``"local"`` or ``"ray"`` (see `convlens.scan.ray_engine`).
        dtype: e.g. ``"bf16"``: the forward pass under autocast. channels_last: NHWC input.
        device: where the Ray tasks run the model (default: a GPU if the task got one).
        threshold: share of all-zero maps that makes a channel dead (statistics).
        shard_size, ray_address, ray_options: for the Ray engine.

    Returns a `ScanResult` (saved in `out` when given).

    Example::

        res = scan(lens, "builtin:fashion-mnist:test", ["features.4"], topk=9, out="scan/")
        res.topk["features.4"]["index"][3]        # the 9 images unit 3 likes best
    """
    if engine not in ENGINES:
        raise unknown("engine", engine, ENGINES)
    if topk < 0 or directions < 0:
        raise ConvlensError("topk and directions must be at least 0")
    dtype = _dtype(dtype)
    spec = None
    if isinstance(data, (str, os.PathLike)):
        from ..data import load_data
        spec = os.fspath(data)
        data = load_data(spec, lens=lens)
    else:
        spec = getattr(data, "spec", None)
    if spec is not None and not str(spec).startswith("builtin:") and os.path.exists(spec):
        spec = os.path.abspath(spec)  # `convlens units` may run from another folder
    if data.lens is None:
        data.with_lens(lens)
    names = _resolve_layers(lens, layers)
    code = None
    if codes:
        code = code_layer(lens) if codes == "auto" else codes
        lens.layer(code)
    if indices is not None:
        order = np.asarray(list(indices), dtype=np.int64)
    else:
        order = np.arange(len(data) if limit is None else min(limit, len(data)), dtype=np.int64)
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
    if not resume and work.exists():
        shutil.rmtree(work)

    reducers: list = []
    top = TopK(names, topk) if topk else None
    dirs = Directions(names, directions, max(topk, 1), seed) if directions else None
    st = ActivationStats(names) if stats else None
    cod = Codes(code, Slots.of(order, len(data)), work / "codes.partial.npy") if code else None
    pred = Predictions(work / "predictions") if predictions else None
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
    if engine == "local":
        info = run_local(lens, data, reducers, order, batch_size, workers, progress, desc,
                         checkpoint, checkpoint_every, None, dtype, channels_last)
    else:
        from ..scan.ray_engine import run_ray
        info = run_ray(lens, data, reducers, order, batch_size, workers, progress, desc,
                       checkpoint, shard_size, ray_address, ray_options,
                       None if device is None else str(device), dtype, channels_last)

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
        stats_result = st.finalize(threshold)
        stats_result.skipped = info.skipped
    meta = {"layers": names, "topk": topk, "directions": directions, "seed": seed,
            "code_layer": code, "code_dim": code_dim, "predictions": bool(predictions),
            "images": info.images, "skipped": info.skipped,
            "skipped_sources": info.skipped_sources, "data": spec, "data_len": len(data),
            "scanned": len(order), "engine": engine, "batch_size": batch_size,
            "dtype": str(dtype or torch.float32).removeprefix("torch."),
            "resumed_from": info.resumed_from, "seconds": round(info.seconds, 3),
            "cpu_seconds": round(info.cpu_seconds, 3),
            "images_per_s": round((info.seen - info.resumed_from) / info.seconds, 1)
            if info.seconds > 0 else None,
            "stats_threshold": threshold, "fields": fields, "shapes": shapes,
            "labels": list(getattr(lens, "labels", None) or [])}
    result = ScanResult(names, top.finalize() if top else {}, dirs.finalize() if dirs else {},
                        stats_result, folder, meta, keep)
    if out is not None:  # the data; pictures are drawn when the caller saves (the CLI does)
        result.save(folder, lens=lens, pictures=False)
    shutil.rmtree(work, ignore_errors=True)
    return result
