"""Does a map point at what the model uses? Scores that perturb the image in the map's order
(METHODS.md, "Faithfulness").

=========================  ======================================================  ==========
function                   what moves                                               better
=========================  ======================================================  ==========
`deletion`                 most relevant positions to a baseline, in equal steps   lower
`insertion`                original positions into a blurred image, same order     higher
`road`                     a share p of positions imputed from their neighbours    MoRF lower,
                                                                                    LeRF higher
`average_drop_increase`    the image times the map scaled to [0, 1]                 drop lower,
                                                                                    increase
                                                                                    higher
`infidelity`               Gaussian noise: does ``I . map`` predict the change?    lower
`max_sensitivity`          uniform noise: how much does the map itself change?     lower
=========================  ======================================================  ==========

Conventions shared by every function:

* ``x (N, C, H, W)`` is a *normalised* batch, as everywhere in convlens (``lens(x)`` are the
  class scores). Perturbations happen where each paper puts them, said in each docstring;
  noise scales are given in **pixel units** (raw pixels scaled to [0, 1] by the lens's
  ``value_range``) and converted to the normalised space per channel (divided by ``std``).
  A bare ``nn.Module`` has mean 0 and std 1: its inputs are used as they are.
* ``maps (N, H, W)`` give one value per position, at the input's size (a smaller CAM must be
  upsampled first: a size mismatch is an error). ``(N, 1, H, W)`` is accepted, and
  ``(N, C, H, W)`` is summed over channels (signed, as the ROAD authors' ``rescale_channel``
  does; take ``.abs()`` first for Simonyan's |gradient| convention).
* ``targets``: one class index per image ``(N,)`` or one for all; None is each image's
  predicted class on ``x`` (what RISE and ROAD evaluate). "Probability" is the softmax of
  the class scores.
* Orderings: one stable ``argsort`` per image, descending; ties go to the earlier position in
  row-major order.
* The model runs in eval mode under ``torch.inference_mode`` (except the attribution calls of
  `max_sensitivity`); its training flags, ``requires_grad``, parameters and ``.grad`` are as
  before afterwards, also after an error. ``batch_size`` counts forward-pass rows (perturbed
  images of any image and step together). Results are on the CPU.

Example::

    sal = convlens.saliency(lens, x).map               # (N, H, W)
    d = deletion(lens, x, sal, steps=28)
    d.score, d.probability.shape                        # (N,), (N, 29)
"""
from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ...errors import ConvlensError
from ...hooks import model_of, preserved
from ...lens import ChannelsLast, as_batch, as_lens
from .substrates import noisy_linear_imputation, rise_blur


@dataclass
class Curves:
    """The target's softmax probability as positions are removed or revealed.

    ``fractions (S,)``: share of positions changed at each point; ``probability (N, S)``;
    ``correct (N, S)`` bool: the predicted class is the target (ROAD's accuracy is its mean
    over images); ``score (N,)``: area under ``probability`` over ``fractions``
    (trapezoid; deletion, insertion) or its mean over the fractions (ROAD); ``targets (N,)``.
    """

    fractions: torch.Tensor
    probability: torch.Tensor
    correct: torch.Tensor
    score: torch.Tensor
    targets: torch.Tensor

    @property
    def accuracy(self) -> torch.Tensor:
        """``(S,)`` share of images still classified as their target at each point."""
        return self.correct.float().mean(0)


@dataclass
class DropIncrease:
    """Average drop and increase in confidence (Grad-CAM++ §5.1), in percent, and their parts:
    ``original (N,)`` = Y, ``masked (N,)`` = O (the target's probability), ``drop (N,)`` =
    ``max(0, Y - O) / Y``, ``increased (N,)`` = ``O > Y``."""

    average_drop: float
    increase_in_confidence: float
    original: torch.Tensor
    masked: torch.Tensor
    drop: torch.Tensor
    increased: torch.Tensor
    targets: torch.Tensor


# -- shared checks and passes ----------------------------------------------------------------
def position_maps(maps, x: torch.Tensor) -> torch.Tensor:
    """`maps` as ``(N, H, W)`` float on the CPU, checked against ``x (N, C, H, W)``."""
    if not isinstance(maps, torch.Tensor):
        maps = torch.as_tensor(maps)
    m = maps.detach().cpu().float()
    if m.dim() == 4:
        m = m.sum(1)
    if m.dim() == 2 and x.shape[0] == 1:
        m = m[None]
    if m.dim() != 3 or tuple(m.shape) != (x.shape[0], *x.shape[2:]):
        raise ConvlensError(f"maps must be (N, H, W) = {(x.shape[0], *x.shape[2:])} for images "
                            f"{tuple(x.shape)}, got {tuple(maps.shape)} (upsample a layer's "
                            "map to the input first)")
    if not torch.isfinite(m).all():
        raise ConvlensError("maps hold NaN or infinite values")
    return m


def _images(lens, x):
    lens = as_lens(lens, x)
    return lens, as_batch(lens, x)


def _check_batch(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConvlensError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


@contextlib.contextmanager
def _evaluating(lens):
    """Eval mode, no autograd; flags restored afterwards (also after an error)."""
    with preserved(model_of(lens)) as model, torch.inference_mode():
        model.eval()
        yield


def _normal(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Copies made outside inference mode: tensors a caller may use with autograd."""
    return tuple(t.clone() for t in tensors)


def _targets(lens, x: torch.Tensor, targets) -> torch.Tensor:
    """One class index per image; None: the predicted class (call inside `_evaluating`)."""
    n = x.shape[0]
    if targets is None:
        return lens(x).argmax(1).cpu()
    t = torch.as_tensor(targets)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ConvlensError(f"targets must be class indices, got {t.dtype}")
    t = t.long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ConvlensError(f"targets must give one class per image ({n}), got {t.numel()}")
    k = getattr(lens, "num_classes", None)
    if k is None:  # a bare module: its output says
        k = lens(x[:1]).shape[1]
    if t.min() < 0 or t.max() >= k:
        raise ConvlensError(f"targets must be classes 0..{k - 1}, got {t.tolist()}")
    return t.clone()


def _probabilities(lens, rows: Callable[[int, int], torch.Tensor], n_rows: int,
                   targets: torch.Tensor, batch_size: int, logit: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `rows(a, b)` (the perturbed images of rows a..b) through the model in chunks
    (channels-last on the CPU: `convlens.lens.ChannelsLast`):
    ``(probability of each row's target, whether it is the predicted class)``, on the CPU
    (with `logit`: the target's class score instead of its probability)."""
    probs, hits = [], []
    layout = None
    for a in range(0, n_rows, batch_size):
        b = min(n_rows, a + batch_size)
        inputs = rows(a, b)
        layout = layout or ChannelsLast(inputs)  # faster convolutions on the CPU
        scores = layout.run(lens, inputs)
        t = targets[a:b].to(scores.device)
        value = scores if logit else scores.float().softmax(1)
        probs.append(value.gather(1, t[:, None])[:, 0].cpu())
        hits.append((scores.argmax(1) == t).cpu())
    if layout is not None and layout.why:
        warnings.warn(layout.notes()[0], stacklevel=3)
    return torch.cat(probs), torch.cat(hits)


def _pixel_scale(lens, x: torch.Tensor) -> torch.Tensor:
    """``(C,)``: one unit of [0, 1] pixels in the normalised space of each channel."""
    lo, hi = getattr(lens, "value_range", (0.0, 1.0))
    std = torch.tensor(getattr(lens, "std", (1.0,) * x.shape[1]), dtype=torch.float64)
    return (hi - lo) / std


def _ranks(maps: torch.Tensor) -> torch.Tensor:
    """``(N, H*W)`` rank of each position, 0 the most relevant (stable: earlier first)."""
    order = torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1]).expand_as(order).contiguous())
    return ranks


def _check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConvlensError(f"steps must be a positive integer, got {steps!r}")
    return steps


# -- deletion and insertion --------------------------------------------------------------------
def _game(lens, x, maps, targets, steps, batch_size, start_of, finish_of) -> Curves:
    lens, x = _images(lens, x)
    maps = position_maps(maps, x)
    steps, batch_size = _check_steps(steps), _check_batch(batch_size)
    n, c, h, w = x.shape
    hw = h * w
    if steps > hw:
        raise ConvlensError(f"steps ({steps}) must be at most the number of positions ({hw})")
    counts = torch.tensor([s * hw // steps for s in range(steps + 1)])
    ranks = _ranks(maps).to(x.device)
    with _evaluating(lens):
        t = _targets(lens, x, targets)
        start, finish = start_of(x), finish_of(x)
        s1 = steps + 1
        k = counts.to(x.device)

        def rows(a: int, b: int) -> torch.Tensor:
            r = torch.arange(a, b, device=x.device)
            i, s = r // s1, r % s1
            changed = (ranks[i] < k[s][:, None]).view(-1, 1, h, w)
            return torch.where(changed, finish[i], start[i])

        prob, hit = _probabilities(lens, rows, n * s1, t.repeat_interleave(s1), batch_size)
    prob, hit, t = _normal(prob, hit, t)
    fractions = counts.double() / hw
    prob, hit = prob.view(n, s1), hit.view(n, s1)
    return Curves(fractions, prob, hit, torch.trapezoid(prob.double(), fractions, dim=1), t)


def deletion(lens, x: torch.Tensor, maps: torch.Tensor, targets=None, steps: int = 28,
             baseline: float | torch.Tensor = 0.0, batch_size: int = 64) -> Curves:
    """Deletion (Petsiuk, Das & Saenko 2018, RISE §4, https://arxiv.org/abs/1806.07421):
    the positions (all channels together) are set to a baseline in the map's order, most
    relevant first, in `steps` equal steps; the curve is the target's probability,
    ``p_s = softmax(f(x_s))_c`` with ``x_s`` the image with its ``floor(s * H * W / steps)``
    top positions deleted, ``s = 0..steps``; the score is its area,
    ``AUC = trapezoid(p_s) over fractions in [0, 1]``. Lower is better.

    `baseline`: what a deleted pixel becomes, in the *normalised* space (0: the data mean,
    RISE's ``torch.zeros_like`` substrate on normalised images); a float or a tensor that
    broadcasts to ``x``. RISE used 224 px images and ``step = 224 * 8`` pixels: 28 steps.

    Example::

        d = deletion(lens, x, maps, steps=28)
        d.score.mean(), d.probability[0]             # AUC over images, image 0's curve
    """
    base = torch.as_tensor(baseline)
    if base.dtype == torch.bool or base.is_complex():
        raise ConvlensError(f"baseline must be a number or a float tensor, got {base.dtype}")
    return _game(lens, x, maps, targets, steps, batch_size, lambda x: x,
                 lambda x: torch.broadcast_to(base.to(x), x.shape))


def insertion(lens, x: torch.Tensor, maps: torch.Tensor, targets=None, steps: int = 28,
              blur_size: int = 11, blur_sigma: float = 5.0, batch_size: int = 64) -> Curves:
    """Insertion (Petsiuk, Das & Saenko 2018, RISE §4, https://arxiv.org/abs/1806.07421):
    start from a blurred copy of the image and put the original pixels back, most relevant
    first, in `steps` equal steps; ``p_s = softmax(f(x_s))_c`` with ``x_s`` the blurred image
    with its ``floor(s * H * W / steps)`` top positions original, ``s = 0..steps``;
    ``AUC = trapezoid(p_s) over fractions in [0, 1]``. Higher is better.

    The blur is the authors': a ``blur_size`` square kernel, a unit impulse smoothed by a
    Gaussian of ``blur_sigma`` pixels (`substrates.rise_kernel`; theirs: 11 and 5), applied to
    each channel of the normalised image with zero padding.

    Example::

        ins = insertion(lens, x, maps)
        ins.score.mean()                               # higher: the map finds the evidence
    """
    if isinstance(blur_size, bool) or not isinstance(blur_size, int) or blur_size < 1 \
            or blur_size % 2 == 0:
        raise ConvlensError(f"blur_size must be an odd positive integer, got {blur_size!r}")
    if not blur_sigma > 0:
        raise ConvlensError(f"blur_sigma must be positive, got {blur_sigma!r}")
    return _game(lens, x, maps, targets, steps, batch_size,
                 lambda x: rise_blur(x, blur_size, blur_sigma), lambda x: x)


# -- ROAD --------------------------------------------------------------------------------------
def _check_fractions(fractions) -> torch.Tensor:
    f = torch.as_tensor(fractions, dtype=torch.float64).reshape(-1)
    if f.numel() == 0 or not bool(((f > 0) & (f < 1)).all()):
        raise ConvlensError(f"fractions must lie strictly between 0 and 1, got {f.tolist()}")
    return f


def road_removed(maps: torch.Tensor, fractions: Sequence[float], order: str = "morf"
                 ) -> torch.Tensor:
    """``(N, F, H, W)`` bool: the positions ROAD removes for each image and fraction.

    MoRF removes the ``k = floor(p * H * W)`` most relevant positions, LeRF the `k` least
    relevant (both: `p` is the share removed)."""
    if order not in ("morf", "lerf"):
        raise ConvlensError(f"order must be 'morf' or 'lerf', got {order!r}")
    f = _check_fractions(fractions)
    n, h, w = maps.shape
    ranks = _ranks(maps)
    # floor(p * HW) as the authors' int(HW * p), robust to p*HW landing a hair below an integer
    k = torch.tensor([math.floor(float(p) * h * w + 1e-9) for p in f])
    if order == "morf":
        gone = ranks[:, None, :] < k[None, :, None]
    else:
        gone = ranks[:, None, :] >= (h * w - k)[None, :, None]
    return gone.view(n, len(f), h, w)


def road(lens, x: torch.Tensor, maps: torch.Tensor, targets=None,
         fractions: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
         order: str = "morf", noise: float = 0.01, seed: int = 0, batch_size: int = 64,
         imputation: str = "linear") -> Curves:
    """ROAD, RemOve And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci 2022, "A Consistent
    and Efficient Evaluation Strategy for Attribution Methods", ICML,
    https://arxiv.org/abs/2202.00449): remove a share `p` of the positions, most relevant
    first (``order="morf"``, lower is better) or least relevant first (``"lerf"``, higher is
    better), and impute them by noisy linear imputation: each removed pixel is the weighted
    mean of its 8 neighbours (1/6 direct, 1/12 diagonal; neighbours outside the image left
    out and the weights renormalised), all removed pixels solved together as one sparse
    linear system per image (channels share it), plus Gaussian noise.
    ``curve(p) = softmax(f(impute(x, removed_p)))_c``; the score is its mean over `fractions`
    (the area under the curve for evenly spaced fractions, up to the ends).

    The authors impute raw pixels in [0, 1] and normalise afterwards; the imputation is
    affine-equivariant (weights sum to 1), so imputing the normalised image gives the same
    values, and the noise, ``noise = 0.01`` as theirs (and Quantus's), is in [0, 1] pixel
    units: std ``noise / std_c`` in normalised channel c. `seed` fixes it (a generator of its
    own; ``noise=0`` is deterministic). Also returned: ``correct``, whether the target is
    still the predicted class: the paper's accuracy curves are ``result.accuracy``.

    ``imputation="zero"`` is the fixed-value imputation the paper compares against (its §3):
    removed positions become 0 in the normalised space (the data mean), without noise; the
    paper's claim is that MoRF and LeRF rank methods consistently under noisy linear
    imputation and not under such filling (`FaithfulnessResult.road_consistency`).

    Example::

        morf = road(lens, x, maps, order="morf")
        morf.probability.mean(0), morf.accuracy        # (F,) curves over images
    """
    lens, x = _images(lens, x)
    maps = position_maps(maps, x)
    batch_size = _check_batch(batch_size)
    if not noise >= 0:
        raise ConvlensError(f"noise must be 0 or more, got {noise!r}")
    if imputation not in ("linear", "zero"):
        raise ConvlensError(f"imputation must be 'linear' or 'zero', got {imputation!r}")
    f = _check_fractions(fractions)
    gone = road_removed(maps, f, order)
    n, nf = gone.shape[:2]
    scale = _pixel_scale(lens, x) * noise
    gen = torch.Generator().manual_seed(seed)
    with _evaluating(lens):
        t = _targets(lens, x, targets)

        def rows(a: int, b: int) -> torch.Tensor:
            if imputation == "zero":
                r = torch.arange(a, b)
                return torch.where(gone[r // nf, r % nf][:, None].to(x.device), 0.0,
                                   x[r // nf])
            # image-major, fraction-minor: the noise drawn does not depend on batch_size
            return torch.stack([noisy_linear_imputation(x[r // nf], gone[r // nf, r % nf],
                                                        scale, gen) for r in range(a, b)])

        prob, hit = _probabilities(lens, rows, n * nf, t.repeat_interleave(nf), batch_size)
    prob, hit, t = _normal(prob, hit, t)
    prob, hit = prob.view(n, nf), hit.view(n, nf)
    return Curves(f, prob, hit, prob.double().mean(1), t)


# -- average drop / increase in confidence ------------------------------------------------------
def average_drop_increase(lens, x: torch.Tensor, maps: torch.Tensor, targets=None,
                          space: str = "pixels", batch_size: int = 64) -> DropIncrease:
    """Average drop and increase in confidence (Chattopadhay et al. 2018, Grad-CAM++, §5.1,
    https://arxiv.org/abs/1710.11063): ``E = x * m`` with ``m`` the map scaled to [0, 1]
    (``(M - min) / (max - min)`` per image; a constant map keeps the image, ``m = 1``);
    ``average drop = 100 / N * sum_i max(0, Y_i - O_i) / Y_i`` (lower is better),
    ``increase in confidence = 100 / N * sum_i [O_i > Y_i]`` (higher is better), with ``Y_i``
    and ``O_i`` the target's softmax probability on the image and on ``E``.

    ``space="pixels"`` multiplies the raw image (the paper's ``L^c o I``: dimmed towards
    black, the bottom of ``value_range``); ``"input"`` multiplies the normalised ``x``
    (towards the data mean, as pytorch-grad-cam does).

    Example::

        r = average_drop_increase(lens, x, cams)
        r.average_drop, r.increase_in_confidence      # percent
    """
    if space not in ("pixels", "input"):
        raise ConvlensError(f"space must be 'pixels' or 'input', got {space!r}")
    lens, x = _images(lens, x)
    maps = position_maps(maps, x)
    batch_size = _check_batch(batch_size)
    lo = maps.flatten(1).amin(1)[:, None, None]
    span = maps.flatten(1).amax(1)[:, None, None] - lo
    m = torch.where(span > 0, (maps - lo) / torch.where(span > 0, span, 1), 1.0)
    m = m[:, None].to(x)
    if space == "pixels":  # (raw - low) * m + low: the raw image dimmed towards its black
        low = lens.value_range[0]
        masked = lens.normalize((lens.denormalize(x) - low) * m + low)
    else:
        masked = x * m
    both = torch.cat([x, masked])
    n = x.shape[0]
    with _evaluating(lens):
        t = _targets(lens, x, targets)
        prob, _ = _probabilities(lens, lambda a, b: both[a:b], 2 * n, torch.cat([t, t]),
                                 batch_size)
    prob, t = _normal(prob, t)
    y, o = prob[:n].double(), prob[n:].double()
    drop = (y - o).clamp_min(0) / y
    inc = o > y
    return DropIncrease(float(100 * drop.mean()), float(100 * inc.double().mean()), y, o, drop,
                        inc, t)


# -- bootstrap ---------------------------------------------------------------------------------
def bootstrap_ci(values, n_boot: int = 2000, level: float = 0.95, seed: int = 0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Percentile bootstrap interval of the mean over images (Efron 1979): resample the `N`
    rows of ``values (N, ...)`` with replacement `n_boot` times, take each resample's mean, and
    return the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles (linear interpolation),
    each of shape ``values.shape[1:]``. A numpy generator seeded with `seed` draws the rows.

    Example::

        lo, hi = bootstrap_ci(deletion(lens, x, maps).score)   # 95 % interval of the mean AUC
    """
    import numpy as np

    v = torch.as_tensor(values).detach().cpu().double()
    if v.dim() == 0 or v.shape[0] < 1:
        raise ConvlensError("bootstrap_ci needs values for at least one image")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ConvlensError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0 < level < 1:
        raise ConvlensError(f"level must lie strictly between 0 and 1, got {level!r}")
    rng = np.random.default_rng(seed)
    arr = v.numpy()
    idx = rng.integers(0, arr.shape[0], size=(n_boot, arr.shape[0]))
    means = arr[idx].mean(axis=1)
    q = np.quantile(means, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return torch.from_numpy(np.asarray(q[0])), torch.from_numpy(np.asarray(q[1]))
