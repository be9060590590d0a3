"""The faithfulness metrics against Quantus 0.6.0 and Captum on the same model, images, maps
and perturbations (the peers' randomness replaced by ours through their perturbation hooks).
Where a peer's definition differs from the paper, the test says how and compares the part
that is the same."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_faithfulness_metrics import Tiny

from convlens import Lens
from convlens.techniques.faithfulness.metrics import deletion, insertion, road, road_removed
from convlens.techniques.faithfulness.robustness import infidelity, max_sensitivity
from convlens.techniques.faithfulness.substrates import linear_imputation, rise_blur

pytestmark = [pytest.mark.peer, pytest.mark.usefixtures("one_thread")]

quantus = pytest.importorskip("quantus")
captum_metrics = pytest.importorskip("captum.metrics")
RTOL = 1e-5


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def setup(c: int = 3, h: int = 6, w: int = 8, n: int = 3, seed: int = 0):
    net = Tiny(c).eval()
    g = torch.Generator().manual_seed(seed)
    return net, torch.randn((n, c, h, w), generator=g), torch.rand((n, h, w), generator=g)


def close(a, b, rtol=RTOL):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-7)


# -- deletion / insertion vs Quantus PixelFlipping ---------------------------------------------
def test_deletion_equals_quantus_pixel_flipping():
    """Quantus's PixelFlipping repeats a position map over the channels and removes *channel
    values* ``features_in_step`` at a time; with a step that is a multiple of C (24 = 3 x 8 on
    a 6x8 image: 8 whole positions, 6 steps) and baseline 0 it is RISE's deletion. Its curve
    leaves out the unperturbed start, and its AUC is ``np.trapz(dx=1)`` over steps, not over
    the fraction axis: the curves are compared."""
    net, x, m = setup()
    y = np.array([0, 1, 2])
    pf = quantus.PixelFlipping(features_in_step=24, perturb_baseline=0.0, normalise=False,
                               abs=False, disable_warnings=True)
    q = pf(model=net, x_batch=x.numpy(), y_batch=y, a_batch=m[:, None].numpy(), device="cpu",
           softmax=True)
    d = deletion(net, x, m, targets=y, steps=6)
    close(d.probability[:, 1:], q)


def rise_gkern(klen: int, nsig: float) -> torch.Tensor:
    """RISE's ``evaluation.gkern`` (eclique/RISE), written as the authors did."""
    from scipy.ndimage import gaussian_filter

    inp = np.zeros((klen, klen))
    inp[klen // 2, klen // 2] = 1
    k = gaussian_filter(inp, nsig)
    kern = np.zeros((3, 3, klen, klen))
    kern[0, 0] = k
    kern[1, 1] = k
    kern[2, 2] = k
    return torch.from_numpy(kern.astype("float32"))


def test_insertion_equals_quantus_pixel_flipping_from_the_blur():
    """Insertion is deletion run from the blurred image with the original as what replaces:
    Quantus's PixelFlipping on the blurred batch with a replacement function that copies the
    original's values. The blur is RISE's ``conv2d(x, gkern(11, 5), padding=5)``."""
    net, x, m = setup()
    y = np.array([2, 1, 0])
    blurred = F.conv2d(x, rise_gkern(11, 5), padding=11 // 2)
    assert torch.allclose(rise_blur(x), blurred, atol=1e-6)
    orig = x.numpy().reshape(3, -1)

    def put_back(arr, indices, **kwargs):
        out = arr.copy()
        rows = np.arange(arr.shape[0])[:, None]
        out[rows, indices] = orig[rows, indices]
        return out

    pf = quantus.PixelFlipping(features_in_step=24, perturb_func=put_back, normalise=False,
                               abs=False, disable_warnings=True)
    q = pf(model=net, x_batch=blurred.numpy(), y_batch=y, a_batch=m[:, None].numpy(),
           device="cpu", softmax=True)
    ins = insertion(net, x, m, targets=y, steps=6)
    close(ins.probability[:, 1:], q)
    with torch.no_grad():
        start = net(blurred).softmax(1)[torch.arange(3), torch.as_tensor(y)]
    close(ins.probability[:, 0], start)


# -- ROAD vs Quantus ROAD and its imputer --------------------------------------------------------
def test_imputation_equals_quantus_noisy_linear_imputation():
    """Quantus's ``noisy_linear_imputation`` (the authors' code) with noise 0, RGB 6x8."""
    from quantus.functions.perturb_func import noisy_linear_imputation as q_impute

    _, x, m = setup()
    gone = road_removed(m, [0.1, 0.5, 0.9], "morf")
    for i in range(3):
        for f in range(3):
            idx = np.flatnonzero(gone[i, f].numpy().reshape(-1))
            q = q_impute(arr=x[i].numpy(), indices=idx, noise=0.0)
            close(linear_imputation(x[i], gone[i, f]), q)


def test_road_probability_equals_a_loop_over_quantus_imputer():
    """ROAD's probability curve (MoRF and LeRF, noise 0) against the model run on each image
    imputed by Quantus's function, one at a time."""
    from quantus.functions.perturb_func import noisy_linear_imputation as q_impute

    net, x, m = setup(seed=1)
    fr = [0.1, 0.3, 0.5, 0.7, 0.9]
    for order in ("morf", "lerf"):
        r = road(net, x, m, targets=[0, 1, 2], fractions=fr, order=order, noise=0.0)
        gone = road_removed(m, fr, order)
        want = np.zeros((3, len(fr)))
        for i in range(3):
            for f in range(len(fr)):
                idx = np.flatnonzero(gone[i, f].numpy().reshape(-1))
                img = torch.from_numpy(q_impute(arr=x[i].numpy(), indices=idx, noise=0.0))
                with torch.no_grad():
                    want[i, f] = net(img[None].float()).softmax(1)[0, i].item()
        close(r.probability, want)


def test_road_accuracy_equals_quantus_road_on_grey_images():
    """Quantus's ROAD is MoRF only, scores accuracy (argmax == label), uses fractions in
    percent and works on one-channel images only: with an RGB batch and a position map it
    indexes the map repeated over channels (3 H W values) into an H W image and fails
    (IndexError, checked below). On grey images, noise 0, its accuracy per percentage is
    ours."""
    net, x, m = setup(c=1, h=8, w=8, n=6, seed=2)
    with torch.no_grad():
        y = net(x).argmax(1).numpy()
    y[::2] = (y[::2] + 1) % 3   # some images wrong from the start
    pct = [10, 30, 50, 70, 90]
    rq = quantus.ROAD(noise=0.0, percentages=pct, normalise=False, disable_warnings=True)
    q = rq(model=net, x_batch=x.numpy(), y_batch=y, a_batch=m[:, None].numpy(), device="cpu")
    ours = road(net, x, m, targets=y, fractions=[p / 100 for p in pct], noise=0.0)
    close(ours.accuracy, [q[p] for p in pct])
    net3, x3, m3 = setup()
    with pytest.raises(IndexError):
        quantus.ROAD(noise=0.0, percentages=[50], disable_warnings=True)(
            model=net3, x_batch=x3.numpy(), y_batch=np.zeros(3, int),
            a_batch=m3[:, None].numpy(), device="cpu")


# -- infidelity vs Captum and Quantus ---------------------------------------------------------
def our_noise(n, c, h, w, samples, sigma, seed=0, uniform=False):
    """The perturbations `infidelity` / `max_sensitivity` draw (bare module: pixel unit 1)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        if uniform:
            out.append((torch.rand((samples, c, h, w), generator=gen) * 2 - 1) * sigma)
        else:
            out.append(torch.randn((samples, c, h, w), generator=gen) * sigma)
    return torch.cat(out)       # row i * samples + s, as Captum's repeat_interleave


def test_infidelity_equals_captum():
    """Captum's ``infidelity`` with our perturbations: the definition (normalize=False) and the
    optimally scaled one (normalize=True, the authors' code), on the logits."""
    from captum.metrics import infidelity as c_infidelity

    net, x, _ = setup()
    g = torch.Generator().manual_seed(9)
    attr = torch.randn(x.shape, generator=g)
    pert = our_noise(3, 3, 6, 8, 16, 0.1)
    t = torch.tensor([0, 2, 1])
    for norm in (False, True):
        want = c_infidelity(net, lambda inp: (pert, inp - pert), x, attr, target=t,
                            n_perturb_samples=16, normalize=norm)
        got = infidelity(net, x, attr, targets=t, sigma=0.1, n_samples=16, normalise=norm)
        close(got, want)


def test_infidelity_equals_quantus_with_gaussian_perturbations():
    """Quantus's Infidelity defaults to *replacing* patches by a baseline, cumulatively, with
    the MSE over patches: not Yeh's Gaussian perturbations. With one patch as large as the
    image and a perturbation function that returns ``x - I_k`` (our k-th draw), its mean over
    samples of ``(I . Phi - (f(x) - f(x - I)))^2`` (logits: softmax=False) is ours."""
    net, x, _ = setup(h=8, w=8)
    g = torch.Generator().manual_seed(4)
    attr = torch.randn(x.shape, generator=g)
    pert = our_noise(3, 3, 8, 8, 12, 0.1).view(3, 12, -1)
    calls = iter(range(12))

    def minus_noise(arr, indices, **kwargs):
        return x.numpy().reshape(3, -1) - pert[:, next(calls)].numpy()

    qi = quantus.Infidelity(perturb_patch_sizes=[8], n_perturb_samples=12,
                            perturb_func=minus_noise, normalise=False, abs=False,
                            disable_warnings=True)
    y = np.array([1, 0, 2])
    q = qi(model=net, x_batch=x.numpy(), y_batch=y, a_batch=attr.numpy(), device="cpu",
           softmax=False)
    got = infidelity(net, x, attr, targets=y, sigma=0.1, n_samples=12)
    close(got, q)


# -- max-sensitivity vs Captum and Quantus ------------------------------------------------------
def grad_explain(lens, x, t):
    with torch.enable_grad():   # Captum calls the explanation under no_grad
        x = x.clone().requires_grad_(True)
        out = lens(x).gather(1, torch.as_tensor(t).long()[:, None]).sum()
        return torch.autograd.grad(out, x)[0]


def test_max_sensitivity_equals_captum():
    """Captum 0.9's ``sensitivity_max`` divides by the norm of the unperturbed explanation
    (Frobenius, a zero norm counting as 1): ours with ``normalise=True``; without it the
    numbers differ (the paper's undivided definition)."""
    from captum.metrics import sensitivity_max

    net, x, _ = setup()
    lens = Lens(net, mean=(0.0,) * 3, std=(1.0,) * 3, input_size=(3, 6, 8))
    t = torch.tensor([0, 1, 2])
    pert = our_noise(3, 3, 6, 8, 6, 0.05, uniform=True)
    def explain(inp, target):  # Captum passes the inputs as a tuple and wants one back
        return (grad_explain(lens, inp[0] if isinstance(inp, tuple) else inp, target),)

    want = sensitivity_max(explain, x,
                           perturb_func=lambda inp, r: inp + pert, perturb_radius=0.05,
                           n_perturb_samples=6, target=t)
    got = max_sensitivity(lens, x, grad_explain, targets=t, radius=0.05, n_samples=6)
    close(got, want)
    raw = max_sensitivity(lens, x, grad_explain, targets=t, radius=0.05, n_samples=6,
                          normalise=False)
    assert not np.allclose(raw.numpy(), want.numpy(), rtol=1e-3)


def test_max_sensitivity_equals_quantus():
    """Quantus's MaxSensitivity (difference, Frobenius norms, divided by ``||Phi(x)||``) with a
    perturbation function that returns ``x + d_k`` (our k-th draw; its default is uniform
    noise in [-0.2, 0.2] and 200 samples)."""
    net, x, _ = setup()
    lens = Lens(net, mean=(0.0,) * 3, std=(1.0,) * 3, input_size=(3, 6, 8))
    pert = our_noise(3, 3, 6, 8, 5, 0.2, uniform=True).view(3, 5, -1)
    calls = iter(range(5))

    def plus_noise(arr, indices, **kwargs):
        return x.numpy().reshape(3, -1) + pert[:, next(calls)].numpy()

    def explain(model, inputs, targets, **kwargs):
        return grad_explain(lens, torch.from_numpy(inputs), torch.from_numpy(targets)).numpy()

    y = np.array([2, 0, 1])
    a = grad_explain(lens, x, torch.from_numpy(y)).numpy()
    qm = quantus.MaxSensitivity(nr_samples=5, perturb_func=plus_noise, normalise=False,
                                abs=False, disable_warnings=True)
    q = qm(model=net, x_batch=x.numpy(), y_batch=y, a_batch=a, explain_func=explain,
           device="cpu")
    got = max_sensitivity(lens, x, grad_explain, targets=y, radius=0.2, n_samples=5)
    close(got, q)
