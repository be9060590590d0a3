"""The CAM family (BENCHMARKS.md, "The CAM family against pytorch-grad-cam and torch-cam";
benchmarks/bench_cams.py): Grad-CAM, Score-CAM and Ablation-CAM against pytorch-grad-cam and
torch-cam.

What is compared is the map at the layer's resolution, before any upsampling and scaling
(convlens's ``result.cam``; pytorch-grad-cam's `get_cam_image` through the ReLU it applies;
torch-cam's map with ``normalized=False``), as the relative L2 difference
``||ours - theirs|| / ||theirs||``, the figure BENCHMARKS.md gives ("map vs convlens").
Each side's timed call is its whole method (pytorch-grad-cam also upsamples and scales its
maps; convlens also builds its full result).

Models: torchvision ResNets with random weights (seed 0) at ``layer4``, random normalised
images, target ``i * 97 % 1000`` for image i. Smoke mode runs Score- and Ablation-CAM on
builtin:shapes-net (shipped weights, 64 px; ``features.11``: 64 channels, 8 x 8) so that
their one forward pass per channel takes milliseconds.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import io

import numpy as np
import torch

import convlens
from convlens.hooks import capture

from .base import Context, Row, Skipped, peer

FAMILY = "cams"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
EQUAL = "relative L2 difference of the layer maps"
#: timed rounds of the masked-copy rows: a CPU call of Score-CAM at 224 px takes ~20 s
ROUNDS = {"smoke": None, "cpu": 1, "gpu": None}


def rel(a, b) -> float:
    """``||a - b|| / ||b||`` in float64 (0 where both are 0)."""
    a = torch.as_tensor(a).detach().double().cpu()
    b = torch.as_tensor(b).detach().double().cpu()
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    den = float(b.norm())
    num = float((a - b).norm())
    return num / den if den > 0 else num


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


@contextlib.contextmanager
def _ieee_fp32():
    """fp32 convolutions without TF32 (cuDNN's default on a GPU; nothing changes on the
    CPU): Score- and Ablation-CAM weigh channels by differences of nearly equal class scores
    (Ablation-CAM: ``(y - y_k) / y`` over 512-2048 channels), which TF32's 10-bit mantissa,
    rounded differently in two libraries' batches, would swamp. The legacy flag: torch 2.9+
    refuses to read it once conv and RNN were set apart through the new ``fp32_precision``."""
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = saved


def _strict(fn):
    def call():
        with _ieee_fp32():
            return fn()
    return call


def pgc_cam(cls, model, layer_module, x, t, **attrs) -> torch.Tensor:
    """A pytorch-grad-cam method's full call; returns its map before its upsampling and
    scaling (what its `get_cam_image` gives, through the ReLU it applies)."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = cls(model=model, target_layers=[layer_module])
    for k, v in attrs.items():
        setattr(cam, k, v)
    got = []
    inner = cam.get_cam_image
    cam.get_cam_image = lambda *a, **k: got.append(inner(*a, **k)) or got[-1]
    try:  # its Score- and Ablation-CAM draw tqdm progress bars on stderr: not shown
        with contextlib.redirect_stderr(io.StringIO()):
            cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in t])
    finally:
        cam.activations_and_grads.release()
        model.zero_grad(set_to_none=True)  # its backward fills the weights' .grad
    return torch.from_numpy(np.maximum(got[0], 0))


def tc_cam(cls, model, layer: str, x, t, **kw) -> torch.Tensor:
    """A torch-cam method's full call: its map with ``normalized=False``."""
    with cls(model, target_layer=layer, input_shape=tuple(x.shape[1:]), **kw) as ex:
        out = model(x)
        return ex(class_idx=[int(c) for c in t], scores=out, normalized=False)[0].detach()


def _resnet(arch: str, size: int, ctx: Context):
    import torchvision

    with torch.random.fork_rng(devices=[]):  # seeded weights, the global state untouched
        torch.default_generator.manual_seed(0)  # the CPU generator only
        model = getattr(torchvision.models, arch)(weights=None).eval()
    if ctx.gpu:  # cuDNN's fast layout
        model = model.to(ctx.device, memory_format=torch.channels_last)
    return convlens.Lens(model, MEAN, STD, (3, size, size)), "layer4"


def _images(n: int, size: int, ctx: Context) -> torch.Tensor:
    x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    x = x.to(ctx.device)
    return x.contiguous(memory_format=torch.channels_last) if ctx.gpu else x


def rows(ctx: Context) -> list[Row | Skipped]:
    pgc = peer("pytorch_grad_cam", FAMILY, "Grad-CAM, Score-CAM, Ablation-CAM vs "
               "pytorch-grad-cam")
    tcm = peer("torchcam.methods", FAMILY, "Score-CAM vs torch-cam ScoreCAM")

    def pgc_skip(name: str) -> Skipped | None:
        if isinstance(pgc, Skipped):
            return Skipped(FAMILY, name, pgc.reason)
        if ctx.precision == "bf16":
            return Skipped(FAMILY, name, "pytorch-grad-cam converts the layer's bf16 "
                           "activations to numpy, which has no bfloat16 (a TypeError under "
                           "bf16 autocast)")
        return None

    return _grad_cam_rows(ctx, pgc, pgc_skip) + _perturbation_rows(ctx, pgc, tcm, pgc_skip)


def _grad_cam_rows(ctx: Context, pgc, pgc_skip) -> list[Row | Skipped]:
    """Grad-CAM: one batch, one forward and one backward pass."""
    name = "Grad-CAM vs pytorch-grad-cam GradCAM"
    skip = pgc_skip(name)
    if skip:
        return [skip]
    arch = ctx.pick("resnet18", "resnet18", "resnet50")
    size = ctx.pick(64, 224, 224)
    batch = ctx.pick(2, 8, 256)
    lens, layer = _resnet(arch, size, ctx)
    x = _images(batch, size, ctx)
    t = torch.arange(batch) * 97 % 1000
    # the same forward pass and the same gradient at the layer (through avgpool and fc only):
    # the maps agree to float rounding (on a GPU the convolutions run in TF32, alike on both)
    return [Row(
        FAMILY, name, f"{arch} (random weights), batch {batch}, {size} px, {layer}",
        batch, "images",
        lambda: convlens.grad_cam(lens, x, t.tolist(), layer=layer).cam,
        lambda: pgc_cam(pgc.GradCAM, lens.model, lens.layer(layer), x, t),
        f"pytorch-grad-cam {_version('grad-cam')} GradCAM", rel, 1e-3 if ctx.gpu else 1e-4,
        EQUAL)]


def _perturbation_rows(ctx: Context, pgc, tcm, pgc_skip) -> list[Row | Skipped]:
    """Score-CAM and Ablation-CAM: one forward pass per channel of the layer."""
    out: list[Row | Skipped] = []
    bf16 = ctx.precision == "bf16"
    if ctx.mode == "smoke":
        lens = convlens.load_model("builtin:shapes-net")
        layer, n, size, per_pass = "features.11", 2, 64, 64
        x = _images(n, size, ctx)
        t = torch.tensor([1, 2])
        what = "builtin:shapes-net (shipped weights)"
    else:
        arch = ctx.pick(None, "resnet18", "resnet50")
        size = 224
        n = ctx.pick(None, 1, 1)  # BENCHMARKS.md: 2 (the per-image cost is the same)
        per_pass = ctx.pick(None, 32, 256)
        lens, layer = _resnet(arch, size, ctx)
        x = _images(n, size, ctx)
        t = torch.arange(n) * 97 % 1000
        what = f"{arch} (random weights)"
    with torch.no_grad(), capture(lens, layer) as cap:  # the layer's channel count
        lens(x[:1])
        channels = cap[layer].shape[1]
    workload = (f"{what}, {n} image(s), {size} px, {layer} ({channels} channels), "
                f"{per_pass} masked or ablated copies per pass")
    pgc_name = f"pytorch-grad-cam {_version('grad-cam')}"
    strict = _strict if ctx.gpu and not bf16 else (lambda fn: fn)
    strict_note = (" fp32 without TF32 on both sides (cuDNN's TF32 default would swamp the "
                   "score differences the weights are made of)." if ctx.gpu and not bf16
                   else "")
    ours_score = strict(lambda: convlens.score_cam(lens, x, t.tolist(), layer=layer,
                                                   batch_size=per_pass).cam)

    name = "Score-CAM vs pytorch-grad-cam ScoreCAM"
    skip = pgc_skip(name)
    if skip:
        out.append(skip)
    else:
        out.append(Row(
            FAMILY, name, workload, n, "images", ours_score,
            strict(lambda: pgc_cam(pgc.ScoreCAM, lens.model, lens.layer(layer), x, t,
                                   batch_size=per_pass)),
            f"{pgc_name} ScoreCAM", rel, ctx.pick(0.3, 0.1, 0.2), EQUAL, rounds=ROUNDS[ctx.mode],
            note="a documented difference, not an error: pytorch-grad-cam upsamples the "
                 "masks with align_corners=True, the paper and convlens with "
                 "align_corners=False, so masks and weights differ "
                 "(tests/test_cams_peers.py checks each against the paper's formula with its "
                 "choice). Measured: 2.8e-2 on resnet18 at 224 px (BENCHMARKS.md, the cpu "
                 "rows; allowed 0.1), 0.13 on shapes-net (smoke; allowed 0.3); resnet50 "
                 "(gpu) not measured yet, allowed 0.2." + strict_note))

    name = "Score-CAM vs torch-cam ScoreCAM"
    if isinstance(tcm, Skipped):
        out.append(Skipped(FAMILY, name, tcm.reason))
    else:
        tol = ctx.pick(0.15, 5e-3, 2e-2)
        out.append(Row(
            FAMILY, name, workload, n, "images", ours_score,
            strict(lambda: tc_cam(tcm.ScoreCAM, lens.model, layer, x, t,
                                  batch_size=per_pass)),
            f"torch-cam {_version('torchcam')} ScoreCAM", rel,
            max(tol, 0.1) if bf16 else tol, EQUAL, rounds=ROUNDS[ctx.mode],
            note="a documented difference, not an error: torch-cam scales each channel's "
                 "map to [0, 1] at the layer's resolution and upsamples after, the paper "
                 "upsamples first; bilinear upsampling by an even factor does not reach the "
                 "grid's extremes, so the masks differ slightly (equal on a 2 x 2 layer, "
                 "tests/test_cams_peers.py). Measured: 4.5e-4 on resnet18 at 224 px "
                 "(BENCHMARKS.md, the cpu rows; allowed 5e-3), 4.9e-2 on shapes-net (smoke; "
                 "allowed 0.15); resnet50 (gpu) not measured yet, allowed 2e-2; bf16 (masked "
                 "images and scores rounded to 8 bits in two orders of operations): 0.1."
                 + strict_note))

    name = "Ablation-CAM vs pytorch-grad-cam AblationCAM"
    skip = pgc_skip(name)
    if skip:
        out.append(skip)
    else:
        # the same definition; the weights (y - y_k) / y are differences of nearly equal
        # scores, so float32 rounding in two libraries leaves them ~1e-4 apart at most
        # (tests/test_cams_peers.py; BENCHMARKS.md: 5.7e-7 on resnet18 at 224 px)
        out.append(Row(
            FAMILY, name, workload, n, "images",
            strict(lambda: convlens.ablation_cam(lens, x, t.tolist(), layer=layer,
                                                 batch_size=per_pass).cam),
            strict(lambda: pgc_cam(pgc.AblationCAM, lens.model, lens.layer(layer), x, t,
                                   batch_size=per_pass)),
            f"{pgc_name} AblationCAM", rel, 1e-3, EQUAL, rounds=ROUNDS[ctx.mode],
            note="the same definition: float32 rounding of (y - y_k) / y, differences of "
                 "nearly equal scores (about 1e-4 at most, tests/test_cams_peers.py)."
                 + strict_note))
    return out
