"""Class models (Simonyan, Vedaldi & Zisserman 2014, §2) and feature visualisation (Olah,
Mordvintsev & Schubert, Distill 2017; DeepDream): images optimised to excite the network.

* `class_model`: ``I* = argmax_I S_c(I) - lambda ||I||^2`` with ``S_c`` the class score
  before softmax and ``I`` the zero-centred image (the model's normalised input), started
  from the zero image (the mean image) and found by gradient ascent; pixels are kept in the
  valid range. Optional additions from Yosinski et al. (2015): jitter and a Gaussian blur of
  the image every few steps.
* `feature_visualization`: any objective of `convlens.optimize` (`channel`, `neuron`,
  `direction`, `deepdream`, `class_logit`, their sums and scalings), optimised with Olah et
  al.'s recipe: a 1/f-scaled Fourier parameterisation in decorrelated colour, random jitter,
  scale and rotation at every step, Adam. ``channels="all"`` optimises every channel of a
  layer as one batch (one image per channel).

Every run is seeded: the same seed gives the same image on the CPU. The model is left as
found (see `convlens.optimize.render`).

Example::

    fv = feature_visualization(lens, "features.7", channels="all", steps=256)
    cm = class_model(lens)                   # one image per class
    cm.probs.diagonal()                      # p(c | I*_c)
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ...errors import ConvlensError, unknown
from ...hooks import model_of
from ...lens import as_lens
from ...optimize import (  # noqa: F401  (re-exported: users build objectives from here)
    FFTImage,
    Objective,
    PixelImage,
    Schedule,
    Transform,
    alpha_norm,
    channel,
    class_logit,
    color_matrix,
    deepdream,
    direction,
    jitter,
    l2,
    match,
    neuron,
    pad,
    random_rotate,
    random_scale,
    render,
    standard_transforms,
    total_variation,
)
from .results import ClassModelResult, FeatureVisResult

PARAMS = ("fft", "pixel")
UNITS = ("channel", "neuron")


# ------------------------------------------------------------------------------------------
# feature visualisation
# ------------------------------------------------------------------------------------------
def _lens(model, input_size):
    """A `Lens` as it is; a bare module with `input_size` (pixels in [0, 1], no normalisation)."""
    if input_size is not None and not hasattr(model, "input_size"):
        return as_lens(model, torch.zeros(tuple(int(v) for v in input_size)))
    return as_lens(model)


def _layer_channels(lens, layer: str) -> int:
    """Number of channels of `layer`'s output (one dry run, cached by the lens)."""
    lens.layer(layer)
    info = next((i for i in lens.layers(fields=False) if i.name == layer), None)
    if info is None or info.shape is None:
        raise ConvlensError(f"the output shape of layer {layer!r} is unknown; give the "
                            "channels as a list")
    return int((info.grid or info.shape)[0])  # a transformer's tokens: channels on the grid


def _color(lens, data, decorrelate, n: int = 512):
    """The colour matrix for a decorrelated parameterisation (measured on the first `n` items
    of `data`), or None."""
    c = lens.input_size[0]
    if decorrelate is False or decorrelate is None or c == 1:
        return None
    if isinstance(decorrelate, torch.Tensor):
        return decorrelate
    if data is None:
        return None  # nothing to measure colour statistics on: plain RGB
    from ... import optimize
    from ...data import Loader, as_dataset

    ds = as_dataset(data, lens)
    batch = next(iter(Loader(ds, batch_size=min(n, len(ds)), indices=range(min(n, len(ds))))))
    return color_matrix(optimize.to_unit(lens, batch.images).clamp(0, 1))


def feature_visualization(lens, objective: Objective | str,
                          channels: Sequence[int] | str | None = None, steps: int = 256,
                          param: str = "fft", decorrelate=True, data=None,
                          transforms: Sequence[Transform] | str | None = "standard",
                          lr: float = 0.05, init_sd: float = 0.5, seed: int = 0,
                          batch_size: int | None = None, unit: str = "channel",
                          input_size: Sequence[int] | None = None, progress: bool = True
                          ) -> FeatureVisResult:
    """Images that maximise an objective (Olah et al., "Feature Visualization", Distill 2017).

    ``I* = argmax_I objective(I)`` with the image parameterised (``param="fft"``: a 1/f-scaled
    spectrum, in decorrelated colour when the colour statistics are known; ``"pixel"``:
    pixels through a sigmoid), randomly jittered, scaled and rotated before every step
    (`standard_transforms`), optimised with Adam.

    Args:
        lens: a `Lens` or an ``nn.Module``.
        objective: an `Objective` (``channel(layer, c)``, ``neuron``, ``direction``,
            ``deepdream``, ``class_logit``, sums and scalings), or a layer name with `channels`.
        channels: with a layer name: a list of channels, or ``"all"`` (the default): every
            channel of the layer, one image each, as one batch.
        steps: optimisation steps (Olah et al.: 512; 256 is plenty for small nets).
        param: ``"fft"`` or ``"pixel"``.  decorrelate: True (the colour matrix of `data`,
            if given), False, or a ``(C, C)`` matrix (`color_matrix`).
        data: a dataset or spec to measure colour statistics on (optional).
        transforms: ``"standard"``, a list of transforms, or None/[] for none.
        lr: Adam's rate.  seed: initial image and transforms.
        init_sd: std of the initial noise (before the sigmoid). Lucid starts from 0.01, an
            almost flat grey image; a net whose first ReLUs are all off on a flat image (both
            built-in nets) has no gradient there, so the default starts from visible noise.
        batch_size: images per batch when there are many channels (default: all at once).
        unit: with a layer name: ``"channel"`` (mean over positions, the default) or
            ``"neuron"`` (the centre position of each channel).
        input_size: ``(C, H, W)`` for a bare ``nn.Module`` (a `Lens` knows its own).
        progress: a progress bar on stderr.

    Example::

        fv = feature_visualization(lens, "features.7", channels=[0, 5, 9])
        fv = feature_visualization(lens, channel("features.7", 3) + 0.5 * deepdream("features.4"))
    """
    lens = _lens(lens, input_size)
    if param not in PARAMS:
        raise unknown("parameterisation", param, PARAMS)
    if int(steps) < 1:
        raise ConvlensError(f"steps must be at least 1, got {steps}")
    layer, chans = None, None
    if isinstance(objective, str):
        layer = objective
        lens.layer(layer)  # an unknown name: one line with close matches
        n = _layer_channels(lens, layer)
        if channels is None or channels == "all":
            chans = list(range(n))
        elif isinstance(channels, str):
            raise ConvlensError(f"channels must be a list of ints or 'all', got {channels!r}")
        else:
            chans = [int(c) for c in channels]
            bad = [c for c in chans if not 0 <= c < n]
            if bad:
                raise ConvlensError(f"channel {bad[0]} is out of range: layer {layer!r} has "
                                    f"{n} channels (0..{n - 1})")
        if not chans:
            raise ConvlensError("no channels to visualise")
        if unit not in UNITS:
            raise unknown("unit", unit, UNITS)
    elif not isinstance(objective, Objective):
        raise ConvlensError(f"objective must be a layer name or a convlens objective "
                            f"(channel(...), neuron(...), ...), got {type(objective).__name__}")
    elif channels is not None:
        raise ConvlensError("channels go with a layer name, not with an objective")

    c, h, w = lens.input_size
    color = _color(lens, data, decorrelate) if param == "fft" else None
    tlist = (standard_transforms(min(h, w)) if transforms == "standard"
             else list(transforms or []))
    p0 = next(iter(model_of(lens).parameters()), None)
    device = p0.device if p0 is not None else None

    def one(obj: Objective, b: int, chunk_seed: int, desc: str):
        if param == "fft":
            prm = FFTImage(b, (c, h, w), sd=init_sd, color=color, seed=chunk_seed,
                           device=device)
        else:
            prm = PixelImage.random(b, (c, h, w), sd=init_sd, seed=chunk_seed, squash="sigmoid",
                                    device=device)
        return render(lens, obj, prm, tlist, steps=steps, optimizer="adam", lr=lr,
                      seed=chunk_seed, progress=progress, desc=desc)

    outs = []
    if chans is not None:
        size = batch_size or len(chans)
        for k in range(0, len(chans), size):
            part = chans[k:k + size]
            # each chunk its own seed (seed + its first index)
            obj = channel(layer, part) if unit == "channel" else neuron(layer, part)
            outs.append(one(obj, len(part), seed + k,
                            f"featvis {layer} {k + 1}-{k + len(part)}/{len(chans)}"))
        name = f"{unit}({layer}, ...)"
    else:
        outs.append(one(objective, objective.batch or 1, seed, "featvis"))
        name = objective.name
    images = torch.cat([o.images for o in outs])
    values = torch.cat([o.values for o in outs])
    logits = [o.logits for o in outs]
    pred = torch.cat([g.argmax(1) for g in logits]) if all(
        g is not None and g.dim() == 2 for g in logits) else None
    history = torch.stack([o.history for o in outs]).mean(0)
    params = {"steps": int(steps), "param": param, "decorrelated": color is not None,
              "init_sd": init_sd,
              "transforms": [(t.kind, list(t.values), t.fill) for t in tlist], "lr": lr,
              "optimizer": "adam", "seed": int(seed), "batch_size": batch_size,
              "seconds": round(sum(o.seconds for o in outs), 2)}
    return FeatureVisResult(images, values, name, layer, chans, pred,
                            getattr(lens, "labels", None), history, params)


# ------------------------------------------------------------------------------------------
# class models
# ------------------------------------------------------------------------------------------
def _blur(sigma: float, every: int):
    """A post-step Gaussian blur of the pixel image every `every` steps (Yosinski et al. 2015)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k1 = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k1 = k1 / k1.sum()

    def post(prm: PixelImage, step: int) -> None:
        if (step + 1) % every:
            return
        p = prm.p
        ch = p.shape[1]
        k = k1.to(p.device, p.dtype)
        pp = torch.nn.functional.pad(p, (radius, radius, radius, radius), mode="replicate")
        pp = torch.nn.functional.conv2d(pp, k.view(1, 1, 1, -1).repeat(ch, 1, 1, 1), groups=ch)
        pp = torch.nn.functional.conv2d(pp, k.view(1, 1, -1, 1).repeat(ch, 1, 1, 1), groups=ch)
        p.copy_(pp)
    return post


def class_model(lens, targets: int | str | Sequence[int | str] | None = None, steps: int = 200,
                l2_weight: float = 3e-3, lr: float = 0.1, momentum: float = 0.9,
                jitter_px: int = 0, blur_sigma: float = 0.0, blur_every: int = 4,
                init_sd: float = 0.5, seed: int = 0, input_size: Sequence[int] | None = None,
                progress: bool = True, batch_size: int = 32) -> ClassModelResult:
    """Class model visualisation (Simonyan, Vedaldi & Zisserman 2014, §2,
    https://arxiv.org/abs/1312.6034): ``I*_c = argmax_I S_c(I) - lambda ||I||_2^2``.

    ``S_c`` is the class score before softmax; ``I`` the zero-centred image, i.e. the model's
    normalised input (zero is the mean image). The paper starts from the zero image; here it
    is the zero image plus Gaussian noise of std `init_sd` (normalised units, seeded),
    because a flat image can switch off every ReLU of the first layer and then has no
    gradient at all (true of both built-in nets). Gradient ascent with momentum; after every
    step the pixels are projected onto the valid range. Optional (Yosinski et al. 2015, not in
    the paper): `jitter_px` random shifts before each step, a Gaussian blur of std `blur_sigma`
    pixels every `blur_every` steps. Classes are optimised together, `batch_size` at a time.

    Args:
        lens: a `Lens` or an ``nn.Module``.
        targets: a class (index or label name), a list of them, or None for every class.
        steps, lr, momentum: the ascent.  l2_weight: lambda.
        init_sd: the start's noise.  seed: the start's noise and the jitter.
        input_size: ``(C, H, W)`` for a bare ``nn.Module`` (a `Lens` knows its own).
        progress: a progress bar.  batch_size: classes optimised together (an ImageNet
            model's 1,000 classes go 32 at a time, so memory stays bounded).

    Example::

        cm = class_model(lens, ["star", "ring"])
        cm.p_class        # p(c | I*_c)
    """
    lens = _lens(lens, input_size)
    if int(steps) < 1:
        raise ConvlensError(f"steps must be at least 1, got {steps}")
    k = lens.num_classes
    if k is None:
        with torch.no_grad():
            from ...hooks import preserved
            with preserved(model_of(lens)):
                model_of(lens).eval()
                k = int(lens(lens.example_input()).shape[1])
    classes = list(range(k)) if targets is None else (
        [targets] if isinstance(targets, (int, str)) else list(targets))
    resolved = []
    for t in classes:
        if isinstance(t, str):
            if t.isdigit():
                t = int(t)
            elif lens.labels and t in lens.labels:
                t = lens.labels.index(t)
            else:
                raise unknown("class", t, lens.labels or [])
        if not 0 <= int(t) < k:
            raise ConvlensError(f"class {t} is out of range: the model has {k} classes "
                                f"(0..{k - 1})")
        resolved.append(int(t))
    if not resolved:
        raise ConvlensError("no classes to visualise")
    if len(resolved) > max(1, int(batch_size)):  # in chunks: memory grows with the batch
        parts = [class_model(lens, resolved[i:i + batch_size], steps, l2_weight, lr, momentum,
                             jitter_px, blur_sigma, blur_every, init_sd, seed, input_size,
                             progress, batch_size) for i in range(0, len(resolved), batch_size)]
        first = parts[0]
        return ClassModelResult(torch.cat([r.images for r in parts]), resolved,
                                torch.cat([r.scores for r in parts]),
                                torch.cat([r.probs for r in parts]), first.labels,
                                first.history, first.params)
    c, h, w = lens.input_size
    lo, hi = lens.value_range
    span = hi - lo
    mean = torch.tensor(lens.mean)
    std = torch.tensor(lens.std)
    # p is the normalised image x (x = 0 is the mean image), plus a little seeded noise: in
    # a net whose first ReLUs are all off on a flat image the zero image has zero gradient
    p0 = next(iter(model_of(lens).parameters()), None)
    device = p0.device if p0 is not None else None
    g = torch.Generator().manual_seed(int(seed))
    init = (torch.randn((len(resolved), c, h, w), generator=g) * init_sd).to(device)
    prm = PixelImage(init, offset=(mean - lo) / span, scale=std / span, squash="clamp")
    prm.project()
    obj = class_logit(resolved) - l2(l2_weight)
    tl = [pad("grey"), jitter(jitter_px)] if jitter_px else []
    post = _blur(blur_sigma, blur_every) if blur_sigma > 0 else None
    out = render(lens, obj, prm, tl, steps=steps, optimizer="momentum", lr=lr,
                 momentum=momentum, post_step=post, seed=seed, progress=progress,
                 desc="class model")
    logits = out.logits
    scores = logits[torch.arange(len(resolved)), torch.tensor(resolved)]
    params = {"steps": int(steps), "l2_weight": l2_weight, "lr": lr, "momentum": momentum,
              "init_sd": init_sd,
              "jitter_px": jitter_px, "blur_sigma": blur_sigma, "blur_every": blur_every,
              "seed": int(seed), "seconds": round(out.seconds, 2)}
    return ClassModelResult(out.images, resolved, scores, logits.softmax(1),
                            getattr(lens, "labels", None), out.history, params)
