"""FGSM and PGD against torchattacks (BENCHMARKS.md "Adversarial examples", issue 19;
`benchmarks/bench_adversarial.py`).

Workload (as BENCHMARKS.md): fashion-net on the first 256 Fashion-MNIST test images and
shapes-net on the first 64 builtin:shapes test images (shipped weights), their true labels,
ε = 8/255; PGD: 10 steps of α = 2/255 from the image (no random start). On a GPU: torchvision
ResNet-50 (random weights) on 128 seeded noise images at 224 px with random labels. Both
libraries get normalised images and the model's mean/std (torchattacks through
``set_normalization_used``), so both un-normalise, attack in pixel space and normalise again;
convlens runs with ``evaluate=False``: the adversarial images only, the work torchattacks does
(the full result adds one forward pass for the answers on x_adv).

Outputs: convlens sums the cross-entropy over the batch where torchattacks averages it. With a
power-of-two batch the two gradients differ by an exact factor and so have the same sign, except
where torchattacks' averaged gradient underflows in float32: on images the model is extremely
sure of (BENCHMARKS.md: 3 of 64 shapes-net images under PGD, none under FGSM). The PGD rows
leave out the images on which the clean model gives every other class p < 1e-20 (13 of the 64
shapes-net images, the 3 among them; none of fashion-net's 256), and say how many; the FGSM
rows compare every image. Measure: on a CPU in float32 the max pixel difference (tolerance
1e-6, measured 0); under bf16 autocast or on a GPU the share of pixels that differ (tolerance
0.1 in bf16, 0.05 in float32 with TF32 convolutions), see `model_rows`.
"""
from __future__ import annotations

import functools

import torch

from .base import Context, Row, Skipped, peer

FAMILY = "adversarial"
EPS, ALPHA, STEPS = 8 / 255, 2 / 255, 10
SATURATED = 1e-20  # every other class below this p: the averaged float32 gradient underflows

# name: (model spec, data spec or None for noise images, batch for smoke / cpu / gpu)
MODELS = {
    "fashion-net": ("builtin:fashion-net", "builtin:fashion-mnist:test", (32, 256, None)),
    "shapes-net": ("builtin:shapes-net", "builtin:shapes:test", (16, 64, None)),
    "resnet50": ("torchvision:resnet50", None, (None, None, 128)),
}


@functools.lru_cache(maxsize=None)
def load(name: str, batch: int, device: str):
    """(lens, normalised images, labels, words), on `device`; cached across precisions."""
    import convlens
    from convlens.data import Loader

    spec, data, _ = MODELS[name]
    lens = convlens.load_model(spec).eval()
    if data is not None:
        b = next(iter(Loader(convlens.load_data(data, lens=lens), batch_size=batch)))
        x, y = b.images, b.labels
        words = f"the first {batch} {data.split(':')[1]} test images, shipped weights"
    else:  # seeded noise in [0, 1] and random labels for a random-weight net
        g = torch.Generator().manual_seed(0)
        x = lens.normalize(torch.rand((batch, *lens.input_size), generator=g))
        y = torch.randint(0, lens.num_classes or 1000, (batch,), generator=g)
        words = f"{batch} seeded noise images, random labels, random weights"
    if len(x) & (len(x) - 1):
        raise ValueError(f"batch {len(x)}: a power of two keeps the mean's gradient exact")
    return lens.to(device), x.to(device), y.to(device), words


def rows(ctx: Context) -> list[Row | Skipped]:
    names = ctx.pick(smoke=["fashion-net", "shapes-net"], cpu=["fashion-net", "shapes-net"],
                     gpu=["resnet50"])
    out: list[Row | Skipped] = []
    for name in names:
        out += model_rows(ctx, name)
    return out


def model_rows(ctx: Context, name: str) -> list[Row | Skipped]:
    from convlens.techniques.adversarial.attacks import fgsm, pgd, pixels

    batch = ctx.pick(*MODELS[name][2])
    ta = peer("torchattacks", FAMILY, f"{name}: FGSM / PGD vs torchattacks")
    if isinstance(ta, Skipped):
        return [ta]
    lens, x, y, words = load(name, batch, str(ctx.device))
    with torch.no_grad():  # images the averaged gradient cannot follow (float32, this device)
        logp = torch.log_softmax(lens(x).double(), 1)
    others = logp.scatter(1, y[:, None], -float("inf")).amax(1)
    keep = (others >= torch.log(torch.tensor(SATURATED, dtype=torch.float64))).cpu()

    # On a CPU in float32 the images are equal (BENCHMARKS.md): the max pixel difference.
    # Under bf16 autocast (and TF32 or atomics on a GPU) rounding flips the sign of gradients
    # that are zero to rounding (0.2 % of shapes-net's pixels per step in bf16 on the CPU), a
    # flipped pixel moves by up to 2 eps and PGD's paths then drift apart: the max difference
    # is all or nothing there, so count the pixels that differ instead (a wrong sign or step
    # would move most of them)
    share = ctx.gpu or ctx.precision == "bf16"

    def difference(keep: torch.Tensor):
        def diff(ours, theirs) -> float:
            a = pixels(lens, ours.to(ctx.device)).detach().cpu()[keep]
            b = pixels(lens, theirs.to(ctx.device)).detach().cpu()[keep]
            if a.shape != b.shape:
                raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
            d = (a.double() - b.double()).abs()
            if not d.numel():
                return 0.0
            return float((d > 1e-6).double().mean()) if share else float(d.max())
        return diff

    if share:
        equal = "share of pixels differing by > 1e-6 (pixel units)"
        tol = 0.1 if ctx.precision == "bf16" else 0.05
    else:
        equal = "max |pixel difference| (pixels in [0, 1])"
        tol = 1e-6
    left_out = int((~keep).sum())
    note = "convlens with evaluate=False (the images only, as torchattacks)"
    if share:
        note += ("; a share of pixels, not the max difference: rounding (bf16, TF32) flips "
                 "the sign of near-zero gradients and PGD's paths drift apart (0.6-2.3 % of "
                 "shapes-net's pixels under bf16 autocast on a CPU, batches 64 and 16)")
    pgd_note = note + ("; " + (f"{left_out} of {len(keep)} images left out of the comparison: "
                               f"the model gives every other class p < {SATURATED:g} there, "
                               "where torchattacks' averaged float32 gradient may underflow "
                               "(see the module's docstring)" if left_out
                               else "every image compared"))

    def peer_attack(atk):
        atk.set_normalization_used(lens.mean, lens.std)
        return lambda: atk(x, y)

    model = MODELS[name][0].split(":")[1]
    what = f"{model}, {words}, batch {len(x)}, eps 8/255"
    version = ta.__version__
    return [
        Row(FAMILY, f"{name}: FGSM", what, len(x), "images",
            lambda: fgsm(lens, x, y, EPS, evaluate=False).x_adv,
            peer_attack(ta.FGSM(lens, eps=EPS)), f"torchattacks {version} FGSM",
            difference(torch.ones_like(keep)), tol, equal, None, note + "; every image compared"),
        Row(FAMILY, f"{name}: PGD, 10 steps", what + ", alpha 2/255, no random start",
            len(x), "images",
            lambda: pgd(lens, x, y, EPS, ALPHA, STEPS, random_start=False,
                        evaluate=False).x_adv,
            peer_attack(ta.PGD(lens, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=False)),
            f"torchattacks {version} PGD", difference(keep), tol, equal, 1.0, pgd_note),
    ]
