"""`Lens`: a classifier together with its preprocessing and class labels."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from .errors import ConvlensError
from .hooks import find_module, model_of, preserved
from .receptive import Field, dry_run, gradient_fields
from .results import Result


@dataclass(frozen=True)
class LayerInfo:
    """One named module: its type, output shape (without batch) and receptive field; `shape`
    None: the eval forward pass does not run it (an auxiliary head, say); `per_image` False: its
    output is not one map per image (a table computed once for the whole batch)."""

    name: str
    type: str
    shape: tuple[int, ...] | None
    field: Field | None
    per_image: bool = True
    #: the output as maps on the image grid, ``(C, h, w)``: the shape of a conv's map, a
    #: transformer's tokens without class tokens (``197x768`` -> ``768x14x14``), a Swin
    #: block's ``h x w x C`` permuted; None: no map of the image (a vector, a window partition)
    grid: tuple[int, int, int] | None = None

    def row(self) -> dict:
        """A flat dict for tables (CSV, JSON, the report)."""
        d = {"name": self.name, "type": self.type,
             "shape": None if self.shape is None else "x".join(map(str, self.shape))}
        if self.grid is not None and self.shape is not None and tuple(self.grid) != self.shape:
            d["shape"] += " -> " + "x".join(map(str, self.grid))
        if self.field is None:
            d.update(rf_size=None, rf_stride=None, rf_center=None, rf_global=None,
                     rf_bound=None, rf_source=None)
        else:
            d.update(self.field.describe())
            if self.field.is_global:
                d["rf_size"] = "global"
        return d


class Lens(nn.Module):
    """A model plus what it takes to feed it: preprocessing (mean, std, input size, raw pixel
    range) and class labels.

    ``x`` everywhere in convlens is a *normalised* batch ``(N, C, H, W)``:
    ``x = (raw - mean) / std`` where ``raw`` is in ``value_range`` (e.g. ``(0, 1)``).

    Args:
        model: any `nn.Module` mapping ``(N, C, H, W)`` to class scores ``(N, K)`` (before softmax).
        mean, std: per input channel, in raw pixel units.
        input_size: ``(C, H, W)`` the model expects.
        labels: class names (``K`` of them); default ``"0" .. "K-1"``.
        value_range: range of raw pixels that `mean`/`std` refer to.
        weights: where the weights came from, in words (shown in manifests and the report).
        output: which part of the model's output is the class scores, when its forward returns
            more than a tensor: a key or attribute name (``"logits"``), an index, or a function
            of the output. Default (None): a tensor as it is; an object or a dict with
            ``logits`` (Hugging Face classifiers, GoogLeNet's outputs in training mode) its
            logits; a tuple or list its first tensor. `select_output` applies it.

    Example::

        lens = Lens(net, mean=(0.5,), std=(0.5,), input_size=(1, 28, 28), labels=names)
        lens.layers()[0].field.size
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float],
                 input_size: Sequence[int], labels: Sequence[str] | None = None,
                 value_range: tuple[float, float] = (0.0, 1.0), name: str | None = None,
                 weights: str | None = None, output=None):
        super().__init__()
        self.model = model
        self.output = output
        self.input_size = tuple(int(v) for v in input_size)
        if len(self.input_size) != 3:
            raise ConvlensError(f"input_size must be (C, H, W), got {tuple(input_size)}")
        c = self.input_size[0]
        self.mean = _per_channel(mean, c, "mean")
        self.std = _per_channel(std, c, "std")
        if any(s <= 0 for s in self.std):
            raise ConvlensError(f"std must be positive, got {self.std}")
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.labels = list(labels) if labels is not None else None
        self.name = name or type(model).__name__
        #: where the weights came from, for people: "random weights, seed 0", a file, ...
        self.weights = weights
        self._dry: dict | None = None     # name -> (shape, arithmetic field, per_image, grid)
        self._fields: dict = {}           # name -> field from input gradients (found on demand)
        self._infos: list[LayerInfo] | None = None  # the table as last built
        self._cam_layers: dict = {}        # input size -> Grad-CAM's default layer

    # -- the network -------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The class scores ``(N, K)``: the model's output through `select_output`."""
        return select_output(self.model(x), self.output)

    def layer(self, name: str) -> nn.Module:
        """The module called `name`; an unknown name raises an error naming close matches."""
        return find_module(self.model, name)

    def layer_names(self) -> list[str]:
        return [n for n, _ in self.model.named_modules() if n]

    def layers(self, fields: bool | Sequence[str] = True) -> list[LayerInfo]:
        """Every named module: name, type, output shape and receptive field (one dry run), kept
        for the lens's life. The field comes from the conv/pool arithmetic, and where that has
        no answer for a map of the image (tokens, permutes, upsampling, ...) from the support
        of input gradients (`convlens.receptive.gradient`, on a copy of the model).

        The gradient fields cost seconds to a minute on a large transformer, so they are found
        only where asked: `fields` True (every layer), a list of layer names (those), or False
        (none: shapes only; a field the arithmetic leaves unknown is then None). What was
        found is kept."""
        if self._dry is None:
            try:
                with preserved(self.model):
                    self.model.eval()
                    self._dry = dry_run(self.model, self.example_input(2), self.layer_names())
            except ConvlensError as e:  # scripted modules take no hooks: names and types only
                if "hooks" not in str(e):
                    raise
                self._dry = {}
        wanted = None if fields is True else set(fields or ())
        need = [n for n, (shape, f, per_image, grid) in self._dry.items()
                if per_image and grid is not None and n not in self._fields
                and (f is None or (f.is_global and grid[1] * grid[2] > 1))
                and (wanted is None or n in wanted)]
        if need:
            self._fields.update(self._gradient_fields(need))
        if need or self._infos is None:  # the table changes only when fields were found
            found = {n: (v[0], self._fields.get(n, v[1]), *v[2:]) for n, v in self._dry.items()}
            self._infos = [LayerInfo(n, getattr(m, "original_name", type(m).__name__),
                                     *found.get(n, (None, None, True, None)))
                           for n, m in self.model.named_modules() if n]
        return self._infos

    def _gradient_fields(self, need: list[str]) -> dict:
        """The field from input gradients of each layer in `need` (maps of the image whose
        field the arithmetic left unknown, or global on a grid of more than one cell); None
        for each where the gradient method fails (warned once)."""
        try:
            fields = gradient_fields(self.model, self.example_input(1), need)
        except Exception as e:  # noqa: BLE001  a model the surrogate cannot copy or run
            warnings.warn(f"receptive fields from input gradients failed ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:160] if str(e) else ''}); "
                          f"{len(need)} layers keep an unknown field", RuntimeWarning,
                          stacklevel=3)
            return {n: self._dry[n][1] for n in need}
        return {n: fields.get(n, self._dry[n][1]) for n in need}

    def example_input(self, n: int = 1) -> torch.Tensor:
        """A batch of mean images (zeros after normalisation) of the model's input size."""
        p = next(iter(self.model.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
        dtype = p.dtype if p is not None and p.dtype.is_floating_point else torch.float32
        return torch.zeros((n, *self.input_size), device=device, dtype=dtype)

    @property
    def num_classes(self) -> int | None:
        return len(self.labels) if self.labels is not None else None

    def label(self, k: int) -> str:
        """Name of class `k`."""
        if self.labels is None or not 0 <= k < len(self.labels):
            return str(k)
        return self.labels[k]

    # -- pixels ------------------------------------------------------------------------
    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1, 1, 1) if x.dim() == 4 else (-1, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return mean, std

    def normalize(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw pixels (in `value_range`) to model input: ``(raw - mean) / std``."""
        mean, std = self._stats(raw)
        return (raw - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model input back to raw pixels: ``x * std + mean``."""
        mean, std = self._stats(x)
        return x * std + mean

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Model input to pixels in [0, 1] for display (clipped)."""
        lo, hi = self.value_range
        return ((self.denormalize(x) - lo) / (hi - lo)).clamp(0, 1)

    def bounds(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel lowest and highest valid model input (the raw range, normalised)."""
        lo, hi = self.value_range
        mean, std = self._stats(like)
        return (lo - mean) / std, (hi - mean) / std

    def preprocess(self, image: Image.Image | np.ndarray) -> torch.Tensor:
        """A PIL image (any mode) to a normalised ``(C, H, W)`` tensor of the input size.

        The shorter side is resized to the input size and the centre cropped (the torchvision
        convention, which keeps the aspect ratio); images already of the input size pass as they
        are. Alpha is dropped, 16-bit images are scaled to 8 bits, and the image is converted to
        grey or RGB as the model's channel count asks.
        """
        from .data.images import fit_geometry, to_channels  # local: data imports lens

        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        c, h, w = self.input_size
        image = to_channels(image, c)
        if image.size != (w, h):  # masks follow the same geometry: data.preprocess_mask
            size, box = fit_geometry(image.width, image.height, w, h)
            image = image.resize(size, Image.BILINEAR).crop(box)
        arr = np.asarray(image, dtype=np.float32) / 255.0
        if arr.ndim == 2:
            arr = arr[:, :, None]
        t = torch.from_numpy(arr.transpose(2, 0, 1).copy())
        lo, hi = self.value_range
        return self.normalize(t * (hi - lo) + lo)

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, mean={self.mean}, std={self.std}, "
                f"value_range={self.value_range}, classes={self.num_classes}")


def as_lens(model, example: torch.Tensor | None = None) -> "Lens":
    """`model` as a `Lens`: a `Lens` as it is; a bare ``nn.Module`` wrapped with no
    normalisation (mean 0, std 1: inputs are used as given) and the input size of `example`
    (an image ``(C, H, W)`` or a batch); anything else is an error.

    Every technique calls this first, so each accepts a `Lens` or an ``nn.Module``.
    """
    if example is not None and not isinstance(example, torch.Tensor):
        raise _not_images(example)
    if isinstance(model, Lens):
        return model
    if not isinstance(model, nn.Module):
        raise ConvlensError(f"expected a convlens.Lens or a torch nn.Module as the model, got "
                            f"{type(model).__name__} (load one with convlens.load_model(SPEC))")
    if example is None or not hasattr(example, "shape") or len(example.shape) < 3:
        raise ConvlensError(f"a bare {type(model).__name__} does not say what input it takes: "
                            "wrap it as convlens.Lens(model, mean, std, input_size=(C, H, W))")
    c = int(example.shape[-3])
    return Lens(model, mean=(0.0,) * c, std=(1.0,) * c, input_size=tuple(example.shape[-3:]))


def lens_and_data(model, data, max_pixels: int | None = None):
    """``(lens, dataset)`` for a technique that reads data: `data` is a spec string or a
    dataset, preprocessed for the model; a bare ``nn.Module`` takes the size of the data's
    first readable item, with no normalisation (see `as_lens`)."""
    from .data import Item, as_dataset

    if isinstance(model, Lens):
        return model, as_dataset(data, model, max_pixels)
    ds = as_dataset(data, None, max_pixels)
    first = next((it for it in (ds[i] for i in range(min(len(ds), 100))) if isinstance(it, Item)),
                 None)
    if first is None:
        raise ConvlensError("no readable item among the first 100 of the data")
    lens = as_lens(model, first.image)
    if ds.lens is None:
        ds.with_lens(lens)
    return lens, ds


class ChannelsLast:
    """Runs the many perturbed copies of a batch (masked, ablated, deleted pixels) channels-
    last on the CPU, where oneDNN's convolutions are faster on that layout (one thread:
    resnet18 at 224 px 1.25x, stamps-net at 96 px 1.5x); the outputs agree to float rounding.
    A model that refuses the layout (a ``.view`` of a feature map) gets the default one from
    then on, and `notes` says so.

    Example::

        layout = ChannelsLast(x)
        scores = layout.run(lambda inp: lens(inp), perturbed)
    """

    def __init__(self, x: torch.Tensor):
        self.on = x.dim() == 4 and x.device.type == "cpu"
        self.why: str | None = None

    def run(self, fn, inputs: torch.Tensor):
        """``fn(inputs)``, the inputs channels-last where that is on."""
        if self.on and inputs.dim() == 4:
            try:
                return fn(inputs.contiguous(memory_format=torch.channels_last))
            except RuntimeError as e:
                self.on, self.why = False, str(e).splitlines()[0][:200]
        return fn(inputs)

    def notes(self) -> list[str]:
        if self.why is None:
            return []
        return ["the perturbed images ran in the default memory layout: the model refused "
                f"channels-last input ({self.why})"]


def as_batch(lens: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`x` checked and made ready for the model: ``(N, C, H, W)`` (a single ``(C, H, W)`` image
    gets a batch axis), on the model's device and float dtype, detached from any graph."""
    if not isinstance(x, torch.Tensor):
        raise _not_images(x)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ConvlensError(f"x must be (N, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    size = getattr(lens, "input_size", None)
    if size is not None and x.shape[1] != size[0]:
        raise ConvlensError(f"x has {x.shape[1]} channels; the model takes {size[0]}")
    p = next(iter(getattr(lens, "model", lens).parameters()), None)
    if p is not None:
        x = x.to(p.device)
        if p.dtype.is_floating_point:
            x = x.to(p.dtype)
    return x.detach()


def _not_images(x) -> ConvlensError:
    return ConvlensError(
        f"this view explains images: give x, a tensor (N, C, H, W) of normalised images, not "
        f"{type(x).__name__}; for items of a dataset take them first, e.g. "
        "torch.stack([data[i].image for i in range(4)])")


def _per_channel(v, c: int, what: str) -> tuple[float, ...]:
    v = (float(v),) if isinstance(v, (int, float)) else tuple(float(a) for a in v)
    if len(v) == 1:
        v = v * c
    if len(v) != c:
        raise ConvlensError(f"{what} has {len(v)} values but the input has {c} channels")
    return v


@dataclass
class LayersResult(Result):
    """The layer table of a model, saved for the report: one row per named module (name, type,
    output shape, receptive field as display strings). Made from ``lens.layers()`` (a list of
    `LayerInfo`) or from the table itself (as it is loaded back)."""

    layers: Any          # a pandas DataFrame (a list of LayerInfo becomes one)

    kind = "layers"
    about = ("Every named module of the model with its output shape and receptive field: the "
             "size of the input patch one output position sees, the stride between positions, "
             "and the input pixel at the centre of position (0, 0). '35 (+global)': a local "
             "field of 35 pixels, and the position also depends on the whole image (a "
             "squeeze-excitation gate, global attention); 'global': it sees the image only "
             "through a global pooling; '>=224': wider than the input shows; '<=52': cells see "
             "different windows (windowed attention), each within such a box.")

    def __post_init__(self):
        if isinstance(self.layers, (list, tuple)):
            import pandas as pd
            self.layers = pd.DataFrame([text_row(i) for i in self.layers])

    def tables(self):
        return {"layers": self.layers}

    def info(self):
        return {"layers": len(self.layers)}


def text_row(info: LayerInfo) -> dict:
    """`LayerInfo.row` with the receptive field as display strings (None where unknown): the
    size as `Field.label` writes it (``35``, ``35 (+global)``, ``global``, ``>=224``, ``<=52``)."""
    r = info.row()
    c = r["rf_center"]
    r["rf_size"] = None if info.field is None else info.field.label()
    r["rf_stride"] = None if r["rf_stride"] is None else str(r["rf_stride"])
    r["rf_center"] = None if c is None else f"({c[0]:g}, {c[1]:g})"
    return r


def format_layers(infos: list[LayerInfo]) -> str:
    """The layer table as aligned text."""
    head = ["name", "type", "output", "rf size", "rf stride", "rf center (y, x)"]
    rows = []
    for info in infos:
        r = text_row(info)
        rows.append([r["name"], r["type"], r["shape"] or "?", r["rf_size"] or "?",
                     r["rf_stride"] or "-", r["rf_center"] or "-"])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip() for r in [head] + rows]
    return "\n".join(lines)


def default_layers(lens, spatial_only: bool = False) -> list[str]:
    """Every ReLU module (post-ReLU maps), or every conv if the model has no ReLU modules; only
    modules the eval forward pass runs (not an auxiliary head) and whose output is one map per
    image (not a table shared by the batch), with `spatial_only` only maps of more than one
    cell on the image grid (not a squeeze-excitation gate's pooled 1 x 1)."""
    mods = list(model_of(lens).named_modules())
    infos = ({i.name: i for i in lens.layers(fields=False)}
             if hasattr(lens, "layers") else None)
    if infos is not None and all(i.shape is None for i in infos.values()):
        infos = None  # no dry run (a TorchScript model takes no hooks): nothing to tell

    def usable(name: str) -> bool:
        if infos is None:  # a bare module: no dry run to tell
            return True
        info = infos.get(name)
        return (info is not None and info.shape is not None and info.per_image
                and (not spatial_only
                     or (info.grid is not None and info.grid[1] * info.grid[2] > 1)))

    relus = [n for n, m in mods if isinstance(m, nn.ReLU) and usable(n)]
    return relus or [n for n, m in mods if isinstance(m, nn.Conv2d) and usable(n)]


def select_output(out, how=None) -> torch.Tensor:
    """The class scores in a model's output (see `Lens`'s `output`): `how` a key, attribute,
    index or function; None picks a tensor as it is, else ``logits`` (attribute or key), else
    the first tensor of a tuple or list."""
    if callable(how):
        return select_output(how(out))
    if how is not None:
        if isinstance(how, str) and not isinstance(out, dict) and hasattr(out, how):
            return select_output(getattr(out, how))
        try:
            return select_output(out[how])
        except (KeyError, IndexError, TypeError):
            raise ConvlensError(f"the model's output ({type(out).__name__}) has no {how!r}: "
                                "give output= the key, attribute or index of its class "
                                "scores") from None
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict) and isinstance(out.get("logits"), torch.Tensor):
        return out["logits"]
    if isinstance(getattr(out, "logits", None), torch.Tensor):
        return out.logits
    if isinstance(out, (tuple, list)):
        first = next((o for o in out if isinstance(o, torch.Tensor)), None)
        if first is not None:
            return first
    raise ConvlensError(f"cannot tell the class scores in the model's output "
                        f"({type(out).__name__}): give Lens(..., output=KEY) (a key, attribute, "
                        "index or function)")
