"""CNN codes (METHODS.md §3): the vector the classifier reads, for every image.

Karpathy's CNN codes are AlexNet's fc7 after its ReLU, the 4096-d input of the classifier.
Here the code layer is found from the model: `code_layer` names the module whose output, once
flattened, is the input of the last ``nn.Linear`` (``classifier.6`` in the built-in nets,
``avgpool`` in torchvision's ResNets), and `last_linear` names that linear layer.

Two ways to collect codes: `cnn_codes` runs a model over (a sample of) a dataset and returns
`Codes` in memory, with predictions and thumbnails (for `convlens tsne-grid --model`);
`CodesReducer` is the reducer of the dataset pass that streams codes of any number of images
to an on-disk float16 array (for `scan`).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ...data import Loader, load_data
from ...data.images import dataset_thumbnails
from ...engine import Reducer, Slots
from ...engine.settings import RunSettings, as_run
from ...errors import ConvlensError
from ...hooks import INPUT_OF, POOLED, capture, model_of, preserved
from ...lens import as_batch, lens_and_data
from ...results import SavedResult

Thumbs = Callable[[np.ndarray], np.ndarray]


def code_layer(lens) -> str:
    """The layer whose output is the network's code: the input of the last linear layer.

    Walks back from the last `nn.Linear` (in module order) to the nearest leaf module whose
    output has ``in_features`` values per image (preferring a ReLU or pooling over a
    dropout/flatten/identity that passes the same values on), and checks on a random input
    that this output, flattened, is what the linear layer gets. Fashion-net: ``classifier.6``
    (fc7 after its ReLU); torchvision ResNets: ``avgpool``. Where no module's output is it
    (functional code in between: DenseNet, ShuffleNet, ViT), ``"input of NAME"``: what the
    linear layer NAME receives, recorded by a forward pre-hook. With no linear layer at all
    (SqueezeNet, whose classifier is a 1x1 conv), ``"pooled input of NAME"``: the input of the
    last conv averaged over positions (``pooled input of classifier.1``, 512 values).
    """
    model = model_of(lens)
    mods = [(n, m) for n, m in model.named_modules() if n]
    linear = [i for i, (_, m) in enumerate(mods) if isinstance(m, nn.Linear)]
    if not linear:
        return _conv_code(lens, mods)
    last_name, last = mods[linear[-1]]
    shapes = {i.name: i.shape for i in lens.layers(fields=False)}
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
    # functional code feeds it (DenseNet's F.relu and pooling, ViT's class token): the code
    # is what the linear layer receives
    return f"{INPUT_OF}{last_name}"


def _conv_code(lens, mods) -> str:
    """No linear layer (SqueezeNet): the classifier is the last convolution that runs, and the
    code is its input averaged over positions, one value per channel it reads."""
    ran = {i.name for i in lens.layers(fields=False) if i.shape is not None}
    convs = [n for n, m in mods if isinstance(m, nn.Conv2d) and n in ran]
    if not convs:
        raise ConvlensError("the model has neither a linear layer nor a convolution, so no "
                            "default code layer: give codes=LAYER (--code-layer LAYER), or "
                            "codes=None")
    return f"{POOLED}{INPUT_OF}{convs[-1]}"


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


@dataclass
class Codes:
    """CNN codes of a set of images, with what is known about each image.

    ``codes`` ``(N, D)`` float32; ``index`` ``(N,)`` dataset indices; ``label`` ``(N,)`` the
    true class (-1: none); ``predicted`` ``(N,)`` the model's class; ``p_pred`` ``(N,)``
    softmax probability of the prediction; ``thumbnails`` ``(N, h, w)`` or ``(N, h, w, 3)``
    uint8; ``classes`` the data's class names (what ``label`` means), ``labels`` the model's
    (what ``predicted`` means); ``meta`` the items' metadata.
    """

    codes: np.ndarray
    index: np.ndarray
    label: np.ndarray
    predicted: np.ndarray | None = None
    p_pred: np.ndarray | None = None
    thumbnails: np.ndarray | Thumbs | None = None
    classes: list[str] | None = None
    layer: str = ""
    meta: pd.DataFrame | None = None
    labels: list[str] | None = None


def last_linear(lens) -> str:
    """The name of the model's last ``nn.Linear``: its input is the CNN code."""
    linears = [n for n, m in model_of(lens).named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConvlensError("the model has no nn.Linear, so there is no code to take "
                            "automatically: name a layer with --layer NAME")
    return linears[-1]


def cnn_codes(lens, data, n: int | None = None, layer: str = "auto", seed: int = 0,
              thumb: int = 32, indices=None, run: RunSettings | None = None) -> Codes:
    """Run `data` through `lens` and keep each image's code, prediction and a thumbnail.

    Args:
        lens: a `Lens`.
        data: a convlens dataset (preprocessed for `lens`).
        n: how many images; a seeded random sample of the dataset when smaller than it
            (``None`` or 0: all).
        indices: exactly these dataset items instead (then `n` is ignored).
        layer: ``"auto"``: `code_layer`, what the last ``nn.Linear`` reads (the code after its
            ReLU); or a module name (or ``"input of NAME"``) whose output, flattened, is the
            code.
        thumb: thumbnails larger than this are scaled down to it (antialiased).
        run: how the pass runs (batch size, workers, progress; `RunSettings`).

    Returns `Codes`; ``codes`` is ``(N, D)`` float32.
    """
    run = as_run(run)
    lens, data = lens_and_data(lens, data)
    if data.lens is None:
        data.with_lens(lens)
    total = len(data)
    if indices is not None:
        indices = [int(i) for i in indices]
    elif n and n < total:
        indices = np.sort(np.random.default_rng(seed).choice(total, n, replace=False)).tolist()
    name = code_layer(lens) if layer == "auto" else layer
    codes, index, label, pred, p_pred, thumbs = [], [], [], [], [], []
    with torch.no_grad(), preserved(lens):
        lens.eval()
        with capture(lens, name) as got:
            for batch in Loader(data, batch_size=run.batch_size, workers=run.workers,
                                progress=run.progress, desc="codes", indices=indices):
                logits = lens(as_batch(lens, batch.images))
                codes.append(got[name].flatten(1).float().cpu().numpy())
                prob = logits.float().softmax(1)
                pp, pk = prob.max(1)
                index.append(batch.indices.numpy())
                label.append(batch.labels.numpy())
                pred.append(pk.numpy())
                p_pred.append(pp.numpy())
                img = lens.to_unit(batch.images).float()
                if max(img.shape[-2:]) > thumb:
                    h, w = img.shape[-2:]
                    s = thumb / max(h, w)
                    img = F.interpolate(img, size=(max(1, round(h * s)), max(1, round(w * s))),
                                        mode="bilinear", antialias=True, align_corners=False)
                img = (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
                thumbs.append(img[..., 0] if img.shape[-1] == 1 else img)
    if not codes:
        raise ConvlensError("no readable images in the data")
    return Codes(np.concatenate(codes), np.concatenate(index), np.concatenate(label),
                 np.concatenate(pred), np.concatenate(p_pred), np.concatenate(thumbs),
                 classes=getattr(data, "classes", None), labels=lens.labels,
                 layer=name)




def codes_from_scan(scan, n: int | None = None, seed: int = 0, data=None,
                    thumb: int | None = None, max_pixels: int | None = None,
                    sample: bool = False) -> Codes:
    """The codes a saved scan holds, with labels, predictions, metadata and thumbnails (no
    model is run): the input of `convlens.techniques.tsne.tsne_grid`.

    Args:
        scan: a scan folder (or `SavedResult`).
        n: this many codes, the first `n` in dataset order (None or 0: all); with `sample`,
            a random sample of `n` seeded by `seed`.
        data: the data spec to read thumbnails from (default: the spec the scan saved).
        thumb: thumbnail side (default: the model's input side, at most 32).
    """
    saved = scan if isinstance(scan, SavedResult) else SavedResult(scan)
    arrays, tables = saved.manifest.get("arrays", {}), saved.manifest.get("tables", {})
    if "codes" not in arrays or "code_index" not in arrays:
        raise ConvlensError(f"{saved.folder} holds a {saved.kind!r} result without codes: run "
                            "`convlens scan` (it saves codes.npy and code_index.npy)")
    codes = saved.array("codes", mmap=True)
    index = saved.array("code_index").astype(np.int64)
    if len(codes) != len(index):
        raise ConvlensError(f"{saved.folder}: {len(codes)} codes but {len(index)} indices")
    rows = np.arange(len(index))
    if n and n < len(index):
        rows = (np.sort(np.random.default_rng(seed).choice(len(index), n, replace=False))
                if sample else np.arange(n))
    x = np.asarray(codes[rows], dtype=np.float32)
    index = index[rows]
    kwargs: dict = {}
    if "predictions" in tables:
        p = saved.table("predictions").drop_duplicates("index").set_index("index")
        p = p.reindex(index)
        if "label" in p:
            kwargs["label"] = p["label"].fillna(-1).astype(np.int64).to_numpy()
        if "pred" in p:
            kwargs["predicted"] = p["pred"].fillna(-1).astype(np.int64).to_numpy()
        extra = [c for c in p.columns if c not in ("label", "pred", "correct")  # no lists
                 and not p[c].map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any()]
        kwargs["meta"] = pd.DataFrame({c: p[c].to_numpy() for c in extra})
    model = saved.manifest.get("model") or {}
    kwargs["classes"] = saved.info.get("classes") or None  # the data's names (older scans: none)
    kwargs["model_labels"] = model.get("labels")
    size = thumb or min(32, max((model.get("input_size") or [0, 32, 32])[1:]))
    if "thumbnails" in arrays:  # saved with the scan: one per code row
        kwargs["images"] = saved.array("thumbnails", mmap=True)[rows]
    else:
        spec = data or saved.info.get("data")
        if spec:
            ds = (load_data(spec, max_pixels=max_pixels) if isinstance(spec, (str, os.PathLike))
                  else spec)
            kwargs["images"] = dataset_thumbnails(ds, index, size)
        else:
            import warnings
            warnings.warn("the scan names no data spec and has no thumbnails: the scatter shows "
                          "dots only and no grid is drawn; give --data SPEC for pictures")
    return Codes(x, index, kwargs.get("label", np.full(len(index), -1, np.int64)),
                 kwargs.get("predicted"), None, kwargs.get("images"), kwargs.get("classes"),
                 saved.info.get("code_layer") or "", kwargs.get("meta"),
                 kwargs.get("model_labels"))


# ------------------------------------------------------------------------------------------
# the reducer of the dataset pass: codes of any number of images, on disk
# ------------------------------------------------------------------------------------------
class CodesReducer(Reducer):
    """The code vector of every image: the output of `layer`, flattened, as float16.

    Karpathy's CNN codes (METHODS.md §3): by default the input of the last linear layer, after
    its ReLU. With a `path`, rows go straight into an on-disk ``(slots, D)`` float16 array
    (`np.lib.format.open_memmap`) at the row of their dataset index, so a million images
    need no memory; without one (a Ray worker) they are kept until merged.
    """

    def __init__(self, layer: str, slots: Slots, path: str | os.PathLike | None = None):
        self.layer = layer
        self.layers = [layer]
        self.slots = slots
        self.path = None if path is None else Path(path)
        self.dim: int | None = None
        self.written = torch.zeros(slots.size if path is not None else 0, dtype=torch.bool)
        self._array: np.ndarray | None = None
        self._rows: list[tuple[np.ndarray, np.ndarray]] = []  # in-memory mode

    def summarize(self, layer, act):
        return act.detach().flatten(1).to(torch.float16)  # a copy: safe from later in-place ops

    def _open(self, dim: int, mode: str = "w+") -> np.ndarray:
        if self._array is None:
            self.dim = dim
            self._array = np.lib.format.open_memmap(self.path, mode=mode, dtype=np.float16,
                                                    shape=(self.slots.size, dim))
        return self._array

    def _write(self, index: np.ndarray, rows: np.ndarray) -> None:
        if self.path is None:
            self.dim = rows.shape[1]
            self._rows.append((index, rows))
            return
        arr = self._open(rows.shape[1])
        slots = self.slots(index)
        arr[slots] = rows
        self.written[torch.from_numpy(slots)] = True

    def update(self, batch, acts, logits=None) -> None:
        a = acts[self.layer]
        if a.dim() != 2 or a.dtype != torch.float16:  # a raw activation, not our summary
            a = self.summarize(self.layer, a)
        self._write(batch.indices.numpy(), a.cpu().numpy())

    def merge(self, other: "CodesReducer") -> "CodesReducer":
        for index, rows in other._rows:
            self._write(index, rows)
        return self

    def spawn(self) -> "CodesReducer":
        return CodesReducer(self.layer, Slots(None, 0), None)

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_array"] = None  # a memmap does not travel; reopened from `path` when needed
        return d

    def state_dict(self):
        if self._array is not None:
            self._array.flush()
        return {"layer": self.layer, "dim": -1 if self.dim is None else self.dim,
                "written": self.written.clone()}

    def load_state_dict(self, state):
        self.layer = state["layer"]
        self.written = state["written"].clone()
        dim = int(state["dim"])
        if dim >= 0 and self.path is not None and self.path.is_file():
            self._array = None
            self._open(dim, mode="r+")

    def finalize(self, codes_path: str | os.PathLike) -> tuple[str, np.ndarray, int]:
        """Write the final ``(N, D)`` float16 array of the images seen (in dataset order) to
        `codes_path`; returns ``(path, index (N,) int64, D)``. Copies in chunks: bounded memory."""
        codes_path = Path(codes_path)
        written = self.written.numpy()
        slots = np.flatnonzero(written)
        index = self.slots.indices(slots)
        dim = self.dim or 0
        if self._array is None:
            np.save(codes_path, np.zeros((0, dim), np.float16))
            return str(codes_path), index, dim
        self._array.flush()
        if len(slots) == self.slots.size:  # nothing skipped: the working array is the result
            self._array = None
            os.replace(self.path, codes_path)
            return str(codes_path), index, dim
        out = np.lib.format.open_memmap(codes_path, mode="w+", dtype=np.float16,
                                        shape=(len(slots), dim))
        step = max(1, (64 << 20) // max(1, 2 * dim))
        for s in range(0, len(slots), step):
            out[s:s + step] = self._array[slots[s:s + step]]
        out.flush()
        del out
        self._array = None
        os.remove(self.path)
        return str(codes_path), index, dim
