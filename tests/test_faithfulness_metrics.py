"""Faithfulness metrics (techniques/faithfulness): closed forms on linear models worked out by
hand, a slow literal reference for the batched curves, ROAD's imputation by hand, and the model
left as found."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from conftest import assert_unchanged, snapshot
from convlens import Lens
from convlens.errors import ConvlensError
from convlens.techniques.faithfulness.metrics import (
    average_drop_increase,
    bootstrap_ci,
    deletion,
    insertion,
    road,
    road_removed,
)
from convlens.techniques.faithfulness.robustness import infidelity, max_sensitivity
from convlens.techniques.faithfulness.substrates import (
    NEIGHBOURS,
    linear_imputation,
    noisy_linear_imputation,
    rise_blur,
    rise_kernel,
)

pytestmark = pytest.mark.usefixtures("one_thread")


class Linear(nn.Module):
    """``logits_k = sum_{c,y,x} W[k, c, y, x] x[c, y, x] + b_k``."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor | None = None):
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = nn.Parameter(torch.zeros(w.shape[0]) if b is None else b.clone())

    def forward(self, x):
        return torch.einsum("nchw,kchw->nk", x, self.w) + self.b


class Tiny(nn.Module):
    """conv -> batch norm -> ReLU -> dropout -> pool -> linear: 3 classes; batch norm and
    dropout make train mode visible."""

    def __init__(self, c: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(c, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(16, 3)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.1, 0.1)
            self.bn.running_var.uniform_(0.5, 1.5)

    def forward(self, x):
        h = self.drop(torch.relu(self.bn(self.conv(x))))
        return self.fc(nn.functional.adaptive_avg_pool2d(h, 2).flatten(1))


def sig(v: float) -> float:
    return 1 / (1 + math.exp(-v))


# -- deletion and insertion: closed forms --------------------------------------------------------
def test_deletion_by_hand():
    """2 classes, W_0 = [[1, 2], [3, 4]], W_1 = 0, x = 1: the logit difference is the sum of
    W_0 over kept positions. The map ranks positions 0, 1, 2, 3; steps=2 deletes 2 at a time:
    d = 10, 7, 0 -> p = sigmoid(d); AUC over fractions 0, 1/2, 1."""
    w = torch.zeros(2, 1, 2, 2)
    w[0, 0] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    net = Linear(w)
    x = torch.ones(1, 1, 2, 2)
    m = torch.tensor([[[4.0, 3.0], [2.0, 1.0]]])
    d = deletion(net, x, m, targets=0, steps=2)
    want = [sig(10), sig(7), 0.5]
    assert d.fractions.tolist() == [0.0, 0.5, 1.0]
    assert torch.allclose(d.probability[0].double(), torch.tensor(want, dtype=torch.float64),
                          atol=1e-6)
    auc = 0.25 * (want[0] + want[1]) + 0.25 * (want[1] + want[2])
    assert d.score[0].item() == pytest.approx(auc, abs=1e-6)
    # a baseline other than the mean: deleted pixels become 1, nothing changes
    same = deletion(net, x, m, targets=0, steps=2, baseline=1.0)
    assert torch.allclose(same.probability, torch.full((1, 3), sig(10)))


def test_rise_kernel_is_the_sampled_gaussian_when_it_fits():
    """scipy's filter truncates at 4 sigma: with sigma 1 and size 9 nothing folds back and the
    kernel is ``g g^T`` with ``g_j = exp(-j^2 / 2) / sum_j exp(-j^2 / 2)``, j = -4..4."""
    g = torch.tensor([math.exp(-j * j / 2) for j in range(-4, 5)], dtype=torch.float64)
    g = g / g.sum()
    assert torch.allclose(rise_kernel(9, 1.0), torch.outer(g, g), atol=1e-12)
    assert rise_kernel(11, 5.0).sum().item() == pytest.approx(1.0, abs=1e-12)


def test_insertion_by_hand():
    """A 9x9 image with 2 at the centre, 0 elsewhere, blurred with the 9x9 kernel of sigma 1:
    the centre becomes 2 k_c, ``k_c = 1 / (sum_j exp(-j^2 / 2))^2``. The logit difference reads
    the centre only; the map ranks the centre first, so after the first of 9 steps the centre
    is 2 again: p = sigmoid(2 k_c), then sigmoid(2) eight more times."""
    w = torch.zeros(2, 1, 9, 9)
    w[0, 0, 4, 4] = 1.0
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 2.0
    m = -torch.arange(81.0).view(1, 9, 9)
    m[0, 4, 4] = 100.0
    kc = 1 / sum(math.exp(-j * j / 2) for j in range(-4, 5)) ** 2
    ins = insertion(Linear(w), x, m, targets=0, steps=9, blur_size=9, blur_sigma=1.0)
    want = [sig(2 * kc)] + [sig(2)] * 9
    assert torch.allclose(ins.probability[0].double(), torch.tensor(want, dtype=torch.float64),
                          atol=1e-6)
    auc = ((want[0] + want[1]) / 2 + 8 * sig(2)) / 9
    assert ins.score[0].item() == pytest.approx(auc, abs=1e-6)


def linear2(seed: int = 0, shape=(3, 8, 8)) -> tuple[Linear, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn((2, *shape), generator=g)
    x = torch.randn((1, *shape), generator=g)
    return Linear(w), x


def test_input_times_gradient_deletes_steepest_of_all_orderings():
    """With 2 classes, p_0 = sigmoid(sum_positions a_p) with a_p = sum_channels (W_0 - W_1) x:
    input x gradient of the logit difference, summed over channels. Deleting (to 0) the k
    positions of largest a_p leaves the smallest possible sum, so its curve is the lowest of
    all 24 orderings of 4 positions, point by point (sigmoid is monotone)."""
    net, x = linear2(1, (3, 2, 2))
    a = ((net.w[0] - net.w[1]).detach() * x[0]).sum(0)[None]
    best = deletion(net, x, a, targets=0, steps=4).probability[0]
    curves = []
    for perm in itertools.permutations(range(4)):
        rank_map = torch.zeros(4)
        rank_map[list(perm)] = torch.tensor([4.0, 3.0, 2.0, 1.0])
        curves.append(deletion(net, x, rank_map.view(1, 2, 2), targets=0, steps=4)
                      .probability[0])
    curves = torch.stack(curves)
    assert (best[None] <= curves + 1e-7).all()
    assert torch.allclose(curves.min(0).values, best)
    assert (curves.amax(0) - best).max() > 0.05   # the orderings do differ


def test_input_times_gradient_beats_random_maps():
    """On 3x8x8 the same map has a lower deletion AUC than each of 20 random maps, and a curve
    no higher at any step. Only deletion is claimed: insertion starts from a blur, and the
    blur's contribution is not what input x gradient measures."""
    net, x = linear2(2)
    a = ((net.w[0] - net.w[1]).detach() * x[0]).sum(0)[None]
    best = deletion(net, x, a, targets=0, steps=16)
    g = torch.Generator().manual_seed(3)
    rand = torch.rand((20, 8, 8), generator=g)
    other = deletion(net, x.expand(20, -1, -1, -1), rand, targets=0, steps=16)
    assert (best.score < other.score).all()
    assert (best.probability <= other.probability + 1e-7).all()


# -- the slow literal reference -----------------------------------------------------------------
def literal_game(net, x, maps, targets, steps, start, finish):
    """Per image and step: copy, change the first k positions of the order one by one, run."""
    n, c, h, w = x.shape
    hw = h * w
    out = torch.zeros(n, steps + 1, dtype=torch.float64)
    net.eval()
    with torch.no_grad():
        for i in range(n):
            flat = maps[i].flatten().tolist()
            order = sorted(range(hw), key=lambda p: (-flat[p], p))
            for s in range(steps + 1):
                img = start[i].clone()
                for p in order[: s * hw // steps]:
                    img[:, p // w, p % w] = finish[i][:, p // w, p % w]
                out[i, s] = net(img[None]).softmax(1)[0, targets[i]].item()
    return out


#: the paper's weights written out: 1/6 for the 4 direct, 1/12 for the 4 diagonal neighbours
WEIGHTS = [(dy, dx, 1 / 6 if dy == 0 or dx == 0 else 1 / 12)
           for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def test_neighbour_weights_are_the_papers():
    assert sorted(NEIGHBOURS) == sorted(WEIGHTS)


def literal_impute(img: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """Dense, pixel by pixel: row j of the system says removed pixel j equals the weighted mean
    of its in-image neighbours (removed ones unknown)."""
    c, h, w = img.shape
    pos = [(y, x) for y in range(h) for x in range(w) if removed[y, x]]
    index = {p: j for j, p in enumerate(pos)}
    a = np.zeros((len(pos), len(pos)))
    b = np.zeros((len(pos), c))
    for j, (y, x) in enumerate(pos):
        for dy, dx, wt in WEIGHTS:
            ny, nx = y + dy, x + dx
            if 0 <= ny < h and 0 <= nx < w:
                a[j, j] += wt
                if (ny, nx) in index:
                    a[j, index[(ny, nx)]] -= wt
                else:
                    b[j] += wt * img[:, ny, nx].double().numpy()
    out = img.clone().double()
    sol = np.linalg.solve(a, b) if pos else np.zeros((0, c))
    for j, (y, x) in enumerate(pos):
        out[:, y, x] = torch.from_numpy(sol[j])
    return out


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(1)
    x = torch.randn(3, 3, 8, 8)
    maps = torch.rand(3, 8, 8)
    return Tiny(), x, maps


def test_deletion_and_insertion_equal_the_literal_loop(tiny):
    net, x, maps = tiny
    t = torch.tensor([0, 2, 1])
    d = deletion(net, x, maps, targets=t, steps=7, batch_size=5)  # chunks cross images
    ref = literal_game(net, x, maps, t, 7, x, torch.zeros_like(x))
    assert torch.allclose(d.probability.double(), ref, atol=1e-6)
    ins = insertion(net, x, maps, targets=t, steps=7, batch_size=5)
    ref = literal_game(net, x, maps, t, 7, rise_blur(x), x)
    assert torch.allclose(ins.probability.double(), ref, atol=1e-6)
    # uneven steps: 64 positions in 7 steps of 9 or 10
    assert d.fractions.tolist() == [s * 64 // 7 / 64 for s in range(8)]


def test_road_equals_the_literal_loop(tiny):
    """Noise 0: each curve point from the dense, pixel-by-pixel solve. With noise: the same
    draws (image-major, fraction-minor, one (C, k) normal block per row on removed pixels in
    row-major order), std noise / std_c."""
    net, x, maps = tiny
    lens = Lens(net, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0), input_size=(3, 8, 8))
    fr = [0.2, 0.5, 0.9]
    for order in ("morf", "lerf"):
        for noise in (0.0, 0.05):
            r = road(lens, x, maps, targets=[1, 1, 0], fractions=fr, order=order, noise=noise,
                     seed=7, batch_size=4)
            gen = torch.Generator().manual_seed(7)
            gone = road_removed(maps, fr, order)
            ref = torch.zeros(3, 3, dtype=torch.float64)
            for i in range(3):
                for f in range(3):
                    img = literal_impute(x[i], gone[i, f])
                    if noise:
                        k = int(gone[i, f].sum())
                        eps = torch.randn((3, k), generator=gen, dtype=torch.float64)
                        std = noise / torch.tensor([0.5, 0.25, 2.0], dtype=torch.float64)
                        img[:, gone[i, f]] += eps * std[:, None]
                    with torch.no_grad():
                        net.eval()
                        ref[i, f] = lens(img[None].float()).softmax(1)[0, [1, 1, 0][i]].item()
            assert torch.allclose(r.probability.double(), ref, atol=1e-6), (order, noise)
            assert r.score.tolist() == pytest.approx(r.probability.double().mean(1).tolist())


def test_road_zero_filling_is_the_mean_image_without_noise(tiny):
    """ROAD's fixed-value control: removed positions are 0 in the normalised space, no noise
    (the seed does not matter), the same removed sets as the imputed variant."""
    net, x, maps = tiny
    fr = [0.25, 0.75]
    for order in ("morf", "lerf"):
        r = road(net, x, maps, targets=[2, 0, 1], fractions=fr, order=order, noise=0.5,
                 imputation="zero", seed=3, batch_size=4)
        gone = road_removed(maps, fr, order)
        with torch.no_grad():
            net.eval()
            ref = torch.stack([net(torch.where(gone[:, f, None], 0.0, x)).softmax(1)
                               [torch.arange(3), torch.tensor([2, 0, 1])] for f in range(2)], 1)
        assert torch.allclose(r.probability, ref, atol=1e-6), order
        again = road(net, x, maps, targets=[2, 0, 1], fractions=fr, order=order,
                     imputation="zero", seed=4)
        assert torch.equal(r.probability, again.probability)


def test_batch_size_does_not_change_the_curves(tiny):
    net, x, maps = tiny
    for f in (deletion, insertion):
        a, b = f(net, x, maps, steps=5, batch_size=1), f(net, x, maps, steps=5, batch_size=64)
        assert torch.allclose(a.probability, b.probability, atol=1e-6)
    a = road(net, x, maps, fractions=[0.3, 0.6], noise=0.02, batch_size=1)
    b = road(net, x, maps, fractions=[0.3, 0.6], noise=0.02, batch_size=64)
    assert torch.allclose(a.probability, b.probability, atol=1e-6)


# -- ROAD's imputation by hand -------------------------------------------------------------------
def test_one_removed_pixel_is_its_neighbours_weighted_mean():
    img = torch.arange(25.0).view(1, 5, 5) ** 1.5
    gone = torch.zeros(5, 5, dtype=torch.bool)
    gone[2, 2] = True
    v = img[0]
    inner = (v[1, 2] + v[3, 2] + v[2, 1] + v[2, 3]) / 6 + (v[1, 1] + v[1, 3] + v[3, 1]
                                                            + v[3, 3]) / 12
    assert linear_imputation(img, gone)[0, 2, 2].item() == pytest.approx(inner.item(), rel=1e-6)
    gone[:] = False
    gone[0, 0] = True   # a corner: 3 neighbours, weights 1/6, 1/6, 1/12 renormalised by 5/12
    corner = (v[0, 1] / 6 + v[1, 0] / 6 + v[1, 1] / 12) / (5 / 12)
    out = linear_imputation(img, gone)
    assert out[0, 0, 0].item() == pytest.approx(corner.item(), rel=1e-6)
    assert torch.equal(out[0][~gone], img[0][~gone])


def test_removed_pixels_satisfy_the_system_and_noise_zero_is_deterministic():
    """A blob of removed pixels (neighbours of each other) in a 2-channel 6x7 image: every
    removed value equals the weighted mean of its in-image neighbours, imputed ones
    included."""
    g = torch.Generator().manual_seed(0)
    img = torch.randn((2, 6, 7), generator=g, dtype=torch.float64)
    gone = torch.zeros(6, 7, dtype=torch.bool)
    gone[1:4, 2:5] = True
    gone[5, 6] = gone[0, 0] = True
    out = linear_imputation(img, gone)
    for y, x in gone.nonzero().tolist():
        num, den = torch.zeros(2, dtype=torch.float64), 0.0
        for dy, dx, wt in WEIGHTS:
            if 0 <= y + dy < 6 and 0 <= x + dx < 7:
                num += wt * out[:, y + dy, x + dx]
                den += wt
        assert torch.allclose(out[:, y, x], num / den, atol=1e-12)
    assert torch.allclose(out, literal_impute(img, gone), atol=1e-12)
    none = noisy_linear_imputation(img, gone, torch.zeros(2))
    assert torch.equal(none, out)


def test_road_noise_has_the_stated_scale_and_seed():
    g = torch.Generator().manual_seed(0)
    img = torch.randn((2, 64, 64), generator=g)
    gone = torch.rand((64, 64), generator=g) < 0.9
    std = torch.tensor([0.01 / 0.5, 0.01 / 2.0])
    clean = linear_imputation(img, gone)
    noisy = noisy_linear_imputation(img, gone, std, torch.Generator().manual_seed(1))
    diff = (noisy - clean)[:, gone]
    for c in range(2):
        assert diff[c].std().item() == pytest.approx(std[c].item(), rel=0.05)
    assert torch.equal((noisy - clean)[:, ~gone], torch.zeros(2, int((~gone).sum())))
    again = noisy_linear_imputation(img, gone, std, torch.Generator().manual_seed(1))
    assert torch.equal(noisy, again)


def test_road_removes_the_stated_positions():
    m = torch.tensor([[[0.4, 0.1], [0.3, 0.2]]])
    morf = road_removed(m, [0.25, 0.5, 0.75], "morf")[0]
    lerf = road_removed(m, [0.25, 0.5, 0.75], "lerf")[0]
    assert morf[0].tolist() == [[True, False], [False, False]]
    assert morf[1].tolist() == [[True, False], [True, False]]
    assert lerf[0].tolist() == [[False, True], [False, False]]
    assert lerf[2].tolist() == [[False, True], [True, True]]


# -- average drop and increase in confidence ---------------------------------------------------
def test_average_drop_and_increase_by_hand():
    """W_0 = 1, W_1 = 0 on 1x2x2. Image 1: x = 1, map 0..3 -> m = 0, 1/3, 2/3, 1: E sums to 2,
    Y = s(4), O = s(2), drop (s(4) - s(2)) / s(4). Image 2: x = -1, map [3, 0, 0, 0] ->
    m = [1, 0, 0, 0]: E sums to -1, Y = s(-4) < O = s(-1): an increase, drop 0."""
    w = torch.zeros(2, 1, 2, 2)
    w[0] = 1.0
    net = Linear(w)
    x = torch.cat([torch.ones(1, 1, 2, 2), -torch.ones(1, 1, 2, 2)])
    maps = torch.stack([torch.arange(4.0).view(2, 2), torch.tensor([[3.0, 0], [0, 0]])])
    r = average_drop_increase(net, x, maps, targets=0, space="input")
    d1 = (sig(4) - sig(2)) / sig(4)
    assert r.average_drop == pytest.approx(100 * d1 / 2, rel=1e-6)
    assert r.increase_in_confidence == 50.0
    assert r.increased.tolist() == [False, True]
    # the paper's space: the raw image times m. mean 0.5, std 0.5: x = 1 is raw 1, x = -1 raw 0
    lens = Lens(net, mean=(0.5,), std=(0.5,), input_size=(1, 2, 2))
    r = average_drop_increase(lens, x, maps, targets=0)
    # image 1: raw E = m, normalised 2m - 1 -> sum = 2*2 - 4 = 0: O = s(0) = 0.5
    # image 2: raw 0 stays 0 -> E = x: O = Y, no drop, no increase
    assert r.masked.tolist() == pytest.approx([0.5, sig(-4)], rel=1e-6)
    assert r.average_drop == pytest.approx(100 * (sig(4) - 0.5) / sig(4) / 2, rel=1e-6)
    assert r.increase_in_confidence == 0.0


# -- infidelity and max-sensitivity ---------------------------------------------------------------
def linear3():
    g = torch.Generator().manual_seed(5)
    return Linear(torch.randn((3, 3, 8, 8), generator=g), torch.randn(3, generator=g)), \
        torch.randn((2, 3, 8, 8), generator=g)


def test_the_exact_attribution_of_a_linear_logit_has_zero_infidelity():
    """``I . W_c = f_c(x) - f_c(x - I)`` for every I: 0 up to float32 rounding; the wrong
    class's weights, or twice the right ones, are far from 0 unless normalised."""
    net, x = linear3()
    t = torch.tensor([0, 2])
    w = net.w.detach()[t]
    assert (infidelity(net, x, w, targets=t, n_samples=32) < 1e-8).all()
    wrong = net.w.detach()[torch.tensor([1, 1])]
    assert (infidelity(net, x, wrong, targets=t, n_samples=32) > 1e-2).all()
    assert (infidelity(net, x, 2 * w, targets=t, n_samples=32) > 1e-2).all()
    assert (infidelity(net, x, 2 * w, targets=t, n_samples=32, normalise=True) < 1e-8).all()


def test_infidelity_noise_scale_and_seed():
    """For the zero attribution the infidelity is E[(W_c . I)^2] = sigma_n^2 ||W_c||^2 (sigma in
    pixel units over std), here with std 0.5 and 4000 samples: within 10 %."""
    net, x = linear3()
    lens = Lens(net, mean=(0.0,) * 3, std=(0.5,) * 3, input_size=(3, 8, 8))
    zero = torch.zeros(2, 3, 8, 8)
    v = infidelity(lens, x, zero, targets=[0, 1], sigma=0.1, n_samples=4000, batch_size=1000)
    want = (0.1 / 0.5) ** 2 * (net.w.detach()[:2] ** 2).flatten(1).sum(1).double()
    assert torch.allclose(v, want, rtol=0.1)
    a = infidelity(lens, x, zero, targets=[0, 1], n_samples=5, seed=3, batch_size=3)
    b = infidelity(lens, x, zero, targets=[0, 1], n_samples=5, seed=3, batch_size=64)
    assert torch.allclose(a, b, rtol=1e-6)


def gradient_explain(lens, x, t):
    x = x.clone().requires_grad_(True)
    out = lens(x).gather(1, torch.as_tensor(t)[:, None]).sum()
    return torch.autograd.grad(out, x)[0]


def test_max_sensitivity_closed_forms():
    """A constant map does not move: 0. The gradient of a linear model is constant too: 0.
    Input x gradient moves by d * W: ``||d W|| / ||x W|| <= r ||W|| / ||x W||``."""
    net, x = linear3()
    ones = max_sensitivity(net, x, lambda lens, xb, t: torch.ones(len(xb), 8, 8))
    assert ones.tolist() == [0.0, 0.0]
    assert max_sensitivity(net, x, gradient_explain, normalise=False).abs().max() < 1e-6
    ixg = max_sensitivity(net, x, lambda lens, xb, t: xb * gradient_explain(lens, xb, t),
                          targets=[0, 1], radius=0.05, n_samples=8)
    w = net.w.detach()[:2]
    bound = 0.05 * w.flatten(1).norm(dim=1) / (x * w).flatten(1).norm(dim=1)
    assert (ixg > 0).all() and (ixg <= bound.double() + 1e-6).all()


# -- the model as found ---------------------------------------------------------------------------
def calls(x, maps):
    yield lambda net: deletion(net, x, maps, steps=3)
    yield lambda net: insertion(net, x, maps, steps=3)
    yield lambda net: road(net, x, maps, fractions=[0.5])
    yield lambda net: average_drop_increase(net, x, maps)
    yield lambda net: infidelity(net, x, maps, n_samples=3)
    yield lambda net: max_sensitivity(net, x, gradient_explain, n_samples=2)


def test_the_model_is_left_as_found_and_runs_in_eval_mode(tiny):
    net, x, maps = tiny
    x, maps = x[:2], maps[:2]
    net.train()
    net.fc.weight.grad = torch.full_like(net.fc.weight, 0.5)
    net.conv.weight.requires_grad_(False)
    before = snapshot(net)
    results = [f(net) for f in calls(x, maps)]
    assert_unchanged(net, before)
    net.eval()
    again = [f(net) for f in calls(x, maps)]
    net.train()
    # the same numbers in train mode: the metrics ran in eval mode (dropout off)
    assert torch.equal(results[0].probability, again[0].probability)
    assert torch.equal(results[2].probability, again[2].probability)
    assert torch.equal(results[4], again[4])


def test_the_model_is_left_as_found_after_an_error(tiny):
    net, x, maps = tiny
    net.train()
    before = snapshot(net)
    with pytest.raises(ConvlensError, match="classes 0..2"):
        deletion(net, x, maps, targets=[0, 1, 7])

    def broken(lens, xb, t):
        gradient_explain(lens, xb, t)
        lens(xb).sum().backward()   # leaves .grad behind, then fails
        raise RuntimeError("explain failed")

    with pytest.raises(RuntimeError, match="explain failed"):
        max_sensitivity(net, x, broken)
    assert_unchanged(net, before)


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, match", [
    (lambda n, x, m: deletion(n, x, m[:, :4]), "maps must be"),
    (lambda n, x, m: deletion(n, x, m[:2]), "maps must be"),
    (lambda n, x, m: deletion(n, x, m, steps=0), "steps"),
    (lambda n, x, m: deletion(n, x, m, steps=65), "steps"),
    (lambda n, x, m: deletion(n, x, m * float("nan")), "NaN"),
    (lambda n, x, m: deletion(n, x, m, batch_size=0), "batch_size"),
    (lambda n, x, m: deletion(n, x, m, targets=[0, 1]), "one class per image"),
    (lambda n, x, m: insertion(n, x, m, blur_size=4), "odd"),
    (lambda n, x, m: road(n, x, m, fractions=[0.5, 1.0]), "between 0 and 1"),
    (lambda n, x, m: road(n, x, m, fractions=[0.0]), "between 0 and 1"),
    (lambda n, x, m: road(n, x, m, order="up"), "morf"),
    (lambda n, x, m: road(n, x, m, noise=-1), "noise"),
    (lambda n, x, m: road(n, x, m, imputation="mean"), "imputation"),
    (lambda n, x, m: average_drop_increase(n, x, m, space="raw"), "space"),
    (lambda n, x, m: infidelity(n, x, m[:, :3]), "attributions"),
    (lambda n, x, m: infidelity(n, x, m, output="softmax"), "output"),
    (lambda n, x, m: max_sensitivity(n, x, lambda lens, xb, t: torch.ones(1, 8, 8)),
     "one map per image"),
    (lambda n, x, m: bootstrap_ci(torch.ones(3), level=1.5), "level"),
])
def test_bad_input_is_a_clear_error(tiny, call, match):
    net, x, maps = tiny
    with pytest.raises(ConvlensError, match=match):
        call(net, x, maps)


# -- bootstrap ---------------------------------------------------------------------------------
def test_bootstrap_interval():
    """Fixed seed: the same interval; a constant gives a point; for 400 normal values the 95 %
    interval is mean +- 1.96 sd / sqrt(N) to within 10 % of its width; columns separately."""
    g = np.random.default_rng(1)
    v = torch.from_numpy(g.normal(2.0, 1.0, 400))
    lo, hi = bootstrap_ci(v, n_boot=4000)
    assert (lo, hi) == bootstrap_ci(v, n_boot=4000)
    half = 1.96 * v.std().item() / 20
    assert lo.item() == pytest.approx(v.mean().item() - half, abs=0.1 * half)
    assert hi.item() == pytest.approx(v.mean().item() + half, abs=0.1 * half)
    lo, hi = bootstrap_ci(torch.full((5,), 3.0))
    assert lo.item() == hi.item() == 3.0
    lo, hi = bootstrap_ci(torch.stack([v, 10 + v], 1), n_boot=500)
    assert lo.shape == (2,) and (lo < hi).all() and lo[1] > 11
