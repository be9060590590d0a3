"""§9 fooling ConvNets: FGSM and PGD in closed form on hand-weighted linear models and against
torchattacks; Szegedy's smallest change against its closed form; the robustness reducer does
not depend on the batch size, resumes after a kill and runs on Ray; bad input is one line; the
model is left as found."""
from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from conftest import all_hooks, assert_unchanged, kill_after_checkpoint, snapshot
from convlens import ConvlensError, Lens, RunSettings
from convlens.data.base import ImageDataset
from convlens.techniques.adversarial.attacks import fgsm, model_input, pgd, pixels
from convlens.techniques.adversarial.fooling import fool
from convlens.techniques.adversarial.robustness import Robustness, robustness

TESTS = str(Path(__file__).resolve().parent)
QUIET = RunSettings(progress=False)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def linear_lens(w: torch.Tensor, b: torch.Tensor | None = None, mean=(0.5,), std=(0.25,),
                size=(1, 2, 3)) -> Lens:
    """logits = W x + b on the *normalised* input x (flattened)."""
    k, d = w.shape
    net = nn.Sequential(nn.Flatten(), nn.Linear(d, k))
    with torch.no_grad():
        net[1].weight.copy_(w)
        net[1].bias.copy_(torch.zeros(k) if b is None else b)
    return Lens(net, mean=mean, std=std, input_size=size, labels=[f"c{i}" for i in range(k)])


# two classes; d logits/d pixels has the sign of W1 - W0 (std > 0)
W2 = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, -2.0, 0.0, 3.0, -0.5, 0.25]])


class SmallNet(nn.Module):
    """A small conv net with max pooling, dropout and an in-place ReLU (3×16×16, 5 classes)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(8 * 8 * 8, 5))

    def forward(self, x):
        return self.classifier(self.features(x))


def small_lens(seed: int = 0) -> Lens:
    return Lens(SmallNet(seed), mean=MEAN, std=STD, input_size=(3, 16, 16),
                labels=list("abcde"), name="small")


def pixel_batch(n=6, seed=0, size=(3, 16, 16)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, *size), generator=g)


# -- closed forms ------------------------------------------------------------------------------
def test_fgsm_on_a_linear_model_is_the_sign_of_the_weight():
    lens = linear_lens(W2)
    u = torch.tensor([0.5, 0.2, 0.9, 0.99, 0.01, 0.6]).view(1, 1, 2, 3)
    x = lens.normalize(u)
    eps = 0.05
    res = fgsm(lens, x, y=0, eps=eps)
    # J = CE(., 0): dJ/du = p1 (W1 - W0) / std, so the step is eps * sign(W1 - W0)
    want = (u + eps * torch.sign(W2[1] - W2[0]).view(1, 1, 2, 3)).clamp(0, 1)
    assert torch.allclose(res.adversarial, want, atol=1e-6)
    assert torch.allclose(res.x_adv, lens.normalize(want), atol=1e-5)
    assert torch.allclose(res.images, u, atol=1e-6)
    assert float(res.linf) == pytest.approx(eps, abs=1e-6)
    # where the weight is 0 nothing moves; 0.99 + 0.05 is clipped at 1
    assert res.adversarial[0, 0, 0, 2] == pytest.approx(0.9, abs=1e-6)
    assert res.adversarial[0, 0, 1, 0] == pytest.approx(1.0, abs=1e-7)
    assert res.adv_confidence is not None and res.adv_predicted.shape == (1,)


def test_targeted_fgsm_steps_toward_the_class():
    lens = linear_lens(W2)
    u = torch.full((2, 1, 2, 3), 0.5)
    x = lens.normalize(u)
    res = fgsm(lens, x, y=1, eps=0.1, targeted=True)
    # toward class 1: u - eps sign(d CE(., 1)/du) = u + eps sign(W1 - W0)
    want = u + 0.1 * torch.sign(W2[1] - W2[0]).view(1, 1, 2, 3)
    assert torch.allclose(res.adversarial, want, atol=1e-6)
    p_before = torch.softmax(lens(x), 1)[:, 1]
    assert (res.adv_class_prob > p_before).all() and bool(res.targeted)
    with pytest.raises(ConvlensError, match="targeted attack needs y"):
        fgsm(lens, x, eps=0.1, targeted=True)


def test_clipping_with_a_mean_std_lens():
    lens = small_lens()
    u = pixel_batch(8)
    u[:, :, :4] = 0.0  # black and white stripes: any step out of [0, 1] must be clipped
    u[:, :, 4:8] = 1.0
    x = lens.normalize(u)
    for res in (fgsm(lens, x, eps=0.3), pgd(lens, x, eps=0.3, steps=3, random_start=True),
                pgd(lens, x, eps=2.0, steps=3, norm="l2")):
        a = res.adversarial
        assert a.min() >= 0 and a.max() <= 1
        lo, hi = lens.bounds(res.x_adv)
        assert (res.x_adv >= lo - 1e-5).all() and (res.x_adv <= hi + 1e-5).all()
    assert (fgsm(lens, x, eps=0.3).linf <= 0.3 + 1e-6).all()
    assert torch.allclose(pixels(lens, model_input(lens, u)), u, atol=1e-6)


def test_pgd_is_fgsm_for_one_step_and_stays_in_the_ball():
    lens = small_lens()
    x = lens.normalize(pixel_batch(6))
    y = torch.arange(6) % 5
    one = pgd(lens, x, y, eps=0.05, alpha=0.05, steps=1, random_start=False)
    # the same gradient of the same batch and the same step: bit for bit
    assert torch.equal(one.adversarial, fgsm(lens, x, y, eps=0.05).adversarial)
    many = pgd(lens, x, y, eps=0.05, alpha=0.02, steps=8, random_start=True, seed=3)
    assert (many.linf <= 0.05 + 1e-6).all()
    again = pgd(lens, x, y, eps=0.05, alpha=0.02, steps=8, random_start=True, seed=3)
    assert torch.equal(many.adversarial, again.adversarial)  # seeded
    l2 = pgd(lens, x, y, eps=0.5, alpha=0.2, steps=8, norm="l2")
    assert (l2.l2 <= 0.5 + 1e-5).all()
    # the loss grows along the way: PGD does at least as well as FGSM here
    assert many.adv_class_prob.mean() <= fgsm(lens, x, y, eps=0.05).adv_class_prob.mean() + 1e-6


@pytest.mark.slow
def test_fool_reaches_the_closed_form_smallest_change():
    # two classes: p1 >= 0.9  <=>  (W1 - W0) . x + b1 - b0 >= log 9 on the normalised x, so
    # the smallest L2 change in pixels is along w = (W1 - W0) / std, of length
    # (log 9 - margin) / ||w|| (the box is far away at mid-grey)
    lens = linear_lens(W2, mean=(0.5,), std=(0.25,))
    u = torch.full((1, 1, 2, 3), 0.5)
    x = lens.normalize(u)
    w = (W2[1] - W2[0]) / 0.25
    margin = float(((W2[1] - W2[0]) * lens.normalize(u).flatten()).sum())
    best = (math.log(9) - margin) / float(w.norm())
    for method in ("adam", "lbfgs"):
        res = fool(lens, x, target="c1", confidence=0.9, method=method, steps=60, search=10,
                   lr=0.002)
        assert bool(res.extra["reached"][0]) and float(res.adv_class_prob[0]) >= 0.9
        assert int(res.adv_predicted[0]) == 1
        assert float(res.l2[0]) == pytest.approx(best, rel=0.05), method
        r = (res.adversarial - res.images).flatten()
        assert float(torch.nn.functional.cosine_similarity(r, w, dim=0)) > 0.99


def test_fool_searches_a_miss_again_with_a_larger_step():
    """An image that no c brought to the target gets the search once more, with 3x the step:
    here 10 Adam steps of 0.005 cannot reach p >= 0.9 on the linear model, 10 of 0.015 can."""
    from convlens.techniques.adversarial import fooling

    lens = linear_lens(W2, mean=(0.5,), std=(0.25,))
    u = torch.full((1, 1, 2, 3), 0.5)
    first = fooling._Search(u, 1.0, 0.9)
    fooling._adam(lens, u, torch.tensor([1]), first, 10, 1, 0.005)
    assert not bool(first.found[0])  # the first search alone misses
    res = fool(lens, lens.normalize(u), target="c1", confidence=0.9, steps=10, search=1,
               lr=0.005)
    assert bool(res.extra["reached"][0]) and float(res.adv_class_prob[0]) >= 0.9
    assert res.params["retry_lr"] == pytest.approx(0.015)


def test_fool_small_net_every_class_and_no_change_when_already_there():
    lens = small_lens(1)
    with torch.no_grad():  # larger scores, as a trained net has: p >= 0.9 is within reach
        lens.model.classifier[2].weight.mul_(20)
    x = lens.normalize(pixel_batch(2, seed=1))
    xs = x.repeat_interleave(5, 0)
    target = torch.arange(5).repeat(2)
    res = fool(lens, xs, target, confidence=0.9, steps=30, search=4, lr=0.02)
    assert bool(res.extra["reached"].all())
    assert (res.adv_class_prob >= 0.9).all() and torch.equal(res.adv_predicted, target)
    assert (res.adversarial >= 0).all() and (res.adversarial <= 1).all()
    # an image the model already gives p >= 0.5 for needs nothing at confidence 0.5
    with torch.no_grad():
        clean = torch.softmax(lens.eval()(x), 1)
    top = clean.argmax(1)
    same = fool(lens, x, top, confidence=float(clean.max(1).values.min()) * 0.999, steps=5,
                search=1)
    assert float(same.l2.max()) == 0.0 and torch.isnan(same.extra["c"]).all()


# -- torchattacks ----------------------------------------------------------------------------
@pytest.mark.peer
@pytest.mark.parametrize("normalised", [False, True])
def test_fgsm_and_pgd_equal_torchattacks(normalised):
    torchattacks = pytest.importorskip("torchattacks")
    net = SmallNet(2)
    mean, std = (MEAN, STD) if normalised else ((0.0,) * 3, (1.0,) * 3)
    lens = Lens(net, mean=mean, std=std, input_size=(3, 16, 16))

    class Pixels(nn.Module):  # torchattacks feeds pixels in [0, 1]
        def __init__(self):
            super().__init__()
            self.lens = lens

        def forward(self, u):
            return self.lens(self.lens.normalize(u))

    peer = Pixels().eval()
    u = pixel_batch(16, seed=2)
    y = torch.randint(0, 5, (16,), generator=torch.Generator().manual_seed(2))
    x = lens.normalize(u)
    for eps in (2 / 255, 8 / 255, 0.1, 0.3):
        pairs = [
            (fgsm(lens, x, y, eps=eps), torchattacks.FGSM(peer, eps=eps)(u, y)),
            (pgd(lens, x, y, eps=eps, alpha=eps / 4, steps=7, random_start=False),
             torchattacks.PGD(peer, eps=eps, alpha=eps / 4, steps=7, random_start=False)(u, y)),
            (pgd(lens, x, y, eps=eps * 10, alpha=eps * 3, steps=5, random_start=False, norm="l2"),
             torchattacks.PGDL2(peer, eps=eps * 10, alpha=eps * 3, steps=5,
                                random_start=False)(u, y)),
        ]
        t = (y + 1) % 5
        peer_t = torchattacks.FGSM(peer, eps=eps)
        peer_t.set_mode_targeted_by_function(lambda images, labels: (labels + 1) % 5, quiet=True)
        pairs.append((fgsm(lens, x, t, eps=eps, targeted=True), peer_t(u, y)))
        for ours, theirs in pairs:
            assert float((ours.adversarial - theirs).abs().max()) <= 1e-6, (ours.kind, eps)


# -- the model is left as found ------------------------------------------------------------
class Boom(Exception):
    pass


def _calls(lens, x):
    return {
        "fgsm": lambda: fgsm(lens, x, eps=0.05, explain="saliency"),
        "pgd": lambda: pgd(lens, x, 1, eps=0.05, steps=2, explain="guided_backprop"),
        "fool": lambda: fool(lens, x, 2, steps=2, search=2),
        "robustness": lambda: robustness(lens, Pixels(x.shape[0], lens.input_size),
                                         eps=[0, 0.1], attack="pgd", steps=2, run=QUIET),
    }


@pytest.mark.parametrize("name", ["fgsm", "pgd", "fool", "robustness"])
def test_model_left_as_found_also_after_an_error(name):
    lens = small_lens()
    lens.train()  # training mode, a frozen layer and a stale .grad: all must survive
    lens.model.features[0].weight.requires_grad_(False)
    lens.model.classifier[2].weight.grad = torch.ones_like(lens.model.classifier[2].weight)
    before = snapshot(lens)
    x = lens.normalize(pixel_batch(3))
    _calls(lens, x)[name]()
    assert_unchanged(lens, before)

    def boom(module, args, out):
        raise Boom()

    h = lens.model.classifier[2].register_forward_hook(boom)
    with pytest.raises(Boom):
        _calls(lens, x)[name]()
    h.remove()
    assert_unchanged(lens, before)
    assert all_hooks(lens) == 0


def test_bad_inputs_are_one_line_errors_and_leave_the_model():
    lens = small_lens()
    before = snapshot(lens)
    x = lens.normalize(pixel_batch(2))
    bad = [
        (lambda: fgsm(lens, x, eps=-0.1), "eps must lie in"),
        (lambda: fgsm(lens, x, eps=1.5), "eps must lie in"),
        (lambda: pgd(lens, x, eps=float("nan")), "eps must lie in"),
        (lambda: pgd(lens, x, eps=0.1, norm="l3"), "unknown norm"),
        (lambda: pgd(lens, x, eps=0.1, steps=0), "steps must be"),
        (lambda: fgsm(lens, x, y=7, eps=0.1), "class 7 does not exist"),
        (lambda: fgsm(lens, x, y=[0, 1, 2], eps=0.1), "3 classes for 2 images"),
        (lambda: fool(lens, x, target="zebra"), "unknown class 'zebra'"),
        (lambda: fool(lens, x, target=5), "class 5 does not exist"),
        (lambda: fool(lens, x, target=1, confidence=1.0), "confidence must lie in"),
        (lambda: fool(lens, x, target=1, method="cg"), "unknown method"),
        (lambda: fgsm(lens, torch.zeros(2, 3, 20, 20), eps=0.1), "size"),
        (lambda: fgsm(lens, torch.zeros(2, 1, 16, 16), eps=0.1), "channels"),
        (lambda: robustness(lens, Pixels(4, lens.input_size), eps=[0, 2]), "eps must lie in"),
        (lambda: robustness(lens, Pixels(4, lens.input_size), attack="cw"), "unknown attack"),
        (lambda: robustness(lens, Pixels(4, lens.input_size), attack="fgsm", norm="l2"), "FGSM"),
        (lambda: robustness(lens, Pixels(8), indices=[5], run=QUIET), "needs labelled"),
    ]
    for call, match in bad:
        with pytest.raises(ConvlensError, match=match) as e:
            call()
        assert "\n" not in str(e.value)
    # a bare module without labels: the class is checked against its output
    bare = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))
    with pytest.raises(ConvlensError, match="class 9 does not exist"):
        fgsm(bare, torch.rand(2, 3, 16, 16), y=9, eps=0.1)
    assert_unchanged(lens, before)


# -- the robustness reducer ------------------------------------------------------------------
class Pixels(ImageDataset):
    """Random 16×16 RGB images (uint8, seeded per item), labels i % 5, item 5 unlabelled. With
    CONVLENS_TEST_SLOW set, each item takes 30 ms."""

    classes = list("abcde")

    def __init__(self, n: int = 40, size=(3, 16, 16), lens=None):
        super().__init__(lens)
        self.n, self.size = n, size

    def __len__(self):
        return self.n

    def load(self, i):
        if os.environ.get("CONVLENS_TEST_SLOW"):
            time.sleep(0.03)
        rng = np.random.default_rng(i)
        c, h, w = self.size
        img = rng.integers(0, 256, (h, w, c)).astype(np.uint8)
        return (img[:, :, 0] if c == 1 else img), (-1 if i == 5 else i % 5), {}


class Double(nn.Module):
    """Runs a net in float64 on float32 input: every batch size gives the same answers (to
    ~1e-15, far below what could flip a gradient's sign or a prediction)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net.double()

    def forward(self, x):
        return self.net(x.double())


def double_lens() -> Lens:
    return Lens(Double(SmallNet(4)), mean=MEAN, std=STD, input_size=(3, 16, 16),
                labels=list("abcde"), name="small64")


EPS = [0.0, 0.02, 0.1]


def by_hand(lens, data, eps, attack):
    """Accuracy per eps with the public attacks on the whole set at once."""
    data.with_lens(lens)
    items = [data[i] for i in range(len(data))]
    items = [it for it in items if it.label >= 0]
    x = torch.stack([it.image for it in items])
    y = torch.tensor([it.label for it in items])
    acc = []
    for e in eps:
        if attack == "fgsm":
            res = fgsm(lens, x, y, eps=e)
        else:
            res = pgd(lens, x, y, eps=e, steps=3, random_start=False)
        acc.append(float((res.adv_predicted == y).double().mean()))
    return acc


@pytest.mark.slow
@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_robustness_same_numbers_whatever_the_batch_size(attack):
    lens = double_lens()
    kw = {"eps": EPS, "attack": attack, "steps": 3, "random_start": attack == "pgd"}
    a = robustness(lens, Pixels(40), run=QUIET.but(batch_size=40), **kw)
    b = robustness(lens, Pixels(40), run=QUIET.but(batch_size=7), **kw)
    c = robustness(lens, Pixels(40), run=QUIET.but(batch_size=16),
                   indices=list(range(39, -1, -1)), **kw)
    pd.testing.assert_frame_equal(a.table, b.table, rtol=1e-12)
    pd.testing.assert_frame_equal(a.table, c.table, rtol=1e-12)
    assert a.params["images"] == 39 and a.params["unlabelled"] == 1
    assert a.table.eps.tolist() == EPS
    t = a.table
    assert ((t.accuracy + t.error_rate - 1).abs() < 1e-12).all()
    assert t.accuracy.iloc[0] >= t.accuracy.iloc[-1]
    if attack == "fgsm":
        assert t.accuracy.tolist() == pytest.approx(by_hand(lens, Pixels(40), EPS, "fgsm"),
                                                    abs=1e-12)
    else:  # without random start: the public pgd on the whole set at once
        d = robustness(lens, Pixels(40), run=QUIET.but(batch_size=9),
                       **(kw | {"random_start": False}))
        assert d.table.accuracy.tolist() == pytest.approx(by_hand(lens, Pixels(40), EPS, "pgd"),
                                                          abs=1e-12)


def test_robustness_merge_and_state():
    lens = double_lens()
    r = Robustness(EPS)
    r.attach(lens)
    data = Pixels(12, lens=lens)
    from convlens.data import Loader
    parts = []
    for batch in Loader(data, batch_size=5):
        part = r.spawn()
        part.attach(lens)
        with torch.no_grad():
            part.update(batch, {}, lens(batch.images))
        parts.append(part)
    whole = parts[0]
    for p in parts[1:]:
        whole.merge(p)
    state = whole.state_dict()
    fresh = Robustness(EPS)
    fresh.load_state_dict(state)
    pd.testing.assert_frame_equal(fresh.finalize(), whole.finalize())
    import pickle
    assert pickle.loads(pickle.dumps(whole))._lens is None  # the model travels apart
    with pytest.raises(ConvlensError, match="runs the model"):
        Robustness(EPS).update(next(iter(Loader(data, batch_size=2))), {}, torch.zeros(2, 5))


SCRIPT = """
import os, sys, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, {tests!r})
os.environ["CONVLENS_TEST_SLOW"] = "1"
from test_adversarial import double_lens, Pixels, EPS
from convlens import RunSettings
from convlens.techniques.adversarial.robustness import robustness
robustness(double_lens(), Pixels(60), eps=EPS, attack="pgd", steps=2, out={out!r},
           run=RunSettings(batch_size=4, checkpoint_every=1, progress=False))
"""


@pytest.mark.slow
def test_robustness_resumes_after_sigkill(tmp_path):
    out = tmp_path / "rob"
    code = kill_after_checkpoint(SCRIPT.format(tests=TESTS, out=str(out)),
                                 out / ".convlens-robustness" / "checkpoint.pt")
    assert code == -signal.SIGKILL
    assert not (out / "manifest.json").exists()
    kw = {"eps": EPS, "attack": "pgd", "steps": 2}
    resumed = robustness(double_lens(), Pixels(60), out=out, run=QUIET.but(batch_size=7), **kw)
    assert 0 < resumed.params["resumed_from"] < 60
    whole = robustness(double_lens(), Pixels(60), run=QUIET.but(batch_size=60), **kw)
    pd.testing.assert_frame_equal(resumed.table, whole.table, rtol=1e-12)
    assert (out / "manifest.json").is_file() and not (out / ".convlens-robustness").exists()
    with pytest.raises(ConvlensError, match="different"):  # another run's checkpoint: refused
        from convlens.engine import Checkpoint, PassInfo
        Checkpoint(out / ".convlens-robustness" / "checkpoint.pt", {"eps": [1]}).save(
            4, [], PassInfo())
        robustness(double_lens(), Pixels(60), out=out, run=QUIET, **kw)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_robustness_on_ray_matches_local(local_ray):
    kw = {"eps": EPS, "attack": "pgd", "steps": 2}
    local = robustness(double_lens(), Pixels(30), run=QUIET.but(batch_size=6), **kw)
    remote = robustness(double_lens(), Pixels(30),
                        run=QUIET.but(batch_size=6, engine="ray", shard_size=12), **kw)
    pd.testing.assert_frame_equal(local.table, remote.table, rtol=1e-12)


# -- saving and the command line ---------------------------------------------------------------
@pytest.mark.slow
def test_results_save_pictures_and_tables(tmp_path):
    from convlens.results import SavedResult

    lens = small_lens()
    x = lens.normalize(pixel_batch(3))
    res = fgsm(lens, x, eps=0.1, explain="saliency")
    res.save(tmp_path / "fgsm")
    saved = SavedResult(tmp_path / "fgsm")
    assert saved.kind == "fgsm" and {"gallery", "saliency"} <= set(saved.manifest["pictures"])
    assert saved.array("adversarial").shape == (3, 3, 16, 16)
    assert saved.about and saved.info["params"]["eps"] == 0.1
    assert [p["picture"] for f in saved.figures for p in f["panels"]] == ["gallery", "saliency"]
    t = saved.table("examples")
    assert list(t.columns[:4]) == ["image", "label", "predicted", "confidence"]
    rob = robustness(lens, Pixels(10), eps=[0, 0.1], examples=2, run=QUIET)
    rob.save(tmp_path / "rob")
    saved = SavedResult(tmp_path / "rob")
    assert saved.kind == "robustness"
    assert ({"accuracy_vs_eps", "example_gallery", "example_saliency"}
            <= set(saved.manifest["pictures"]))
    assert saved.table("robustness").eps.tolist() == [0, 0.1]


@pytest.mark.slow
def test_cli_fool_and_robustness(tmp_path, capsys):
    from convlens.cli import main

    rc = main(["fool", "--model", "builtin:tiny", "--data", "builtin:fashion-mnist:test",
               "--n", "2", "--target", "3", "--steps", "10", "--search", "2",
               "--confidence", "0.5", "--out", str(tmp_path / "fool")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "L2" in out and "Linf" in out and (tmp_path / "fool" / "gallery.png").is_file()
    rc = main(["robustness", "--model", "builtin:fashion-net", "--data",
               "builtin:fashion-mnist:test", "--n", "20", "--eps", "0,0.05", "--attack", "pgd",
               "--steps", "2",
               "--examples", "2", "--batch-size", "8", "--out", str(tmp_path / "adv")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "20 images" in out and "0.05" in out
    assert (tmp_path / "adv" / "accuracy_vs_eps.png").is_file()
    assert (tmp_path / "adv" / "example_gallery.png").is_file()
    assert main(["robustness", "--model", "builtin:fashion-net", "--data",
                 "builtin:fashion-mnist:test", "--eps", "0,1.5",
                 "--out", str(tmp_path / "bad")]) == 2
    assert main(["fool", "--model", "builtin:tiny", "--data", "builtin:fashion-mnist:test",
                 "--target", "11", "--out", str(tmp_path / "bad")]) == 2
    # an untrained model whose labels (0..9) are not the data's: accuracy means nothing
    assert main(["robustness", "--model", "builtin:tiny", "--data", "builtin:fashion-mnist:test",
                 "--n", "8", "--out", str(tmp_path / "bad")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 3 and all(line.startswith("convlens: error:") for line in err), err
    assert "accuracy" in err[2]


# -- loading back ------------------------------------------------------------------------------
def _round_trip(res, tmp_path):
    """Save, load with load_result, save again: the same manifest entries and arrays."""
    from convlens.results import SavedResult, load_result

    first = res.save(tmp_path / "a", pictures=False)
    back = load_result(first)
    assert type(back) is type(res)
    second = back.save(tmp_path / "b", pictures=False)
    a, b = SavedResult(first), SavedResult(second)
    for key in ("arrays", "tables", "info", "fields", "kind", "result"):
        assert a.manifest[key] == b.manifest[key], key
    for name in a.manifest["arrays"]:
        x, y = a.array(name), b.array(name)
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), name
    for name in a.manifest["tables"]:
        pd.testing.assert_frame_equal(a.table(name), b.table(name))
    return back


def test_adversarial_examples_load_back(tmp_path):
    lens = small_lens()
    x = lens.normalize(pixel_batch(3))
    res = fgsm(lens, x, eps=0.1, explain="saliency")
    back = _round_trip(res, tmp_path / "fgsm")
    assert back.kind == "fgsm" and torch.equal(back.adversarial, res.adversarial)
    assert back.labels == res.labels and back.params == res.params
    assert back.per_image() == [[f"input_{i}", f"adversarial_{i}", f"change_{i}"]
                                for i in range(3)]
    fooled = fool(lens, x[:2], target=1, steps=3, search=1)
    back = _round_trip(fooled, tmp_path / "fool")
    assert set(back.extra) == {"reached", "c"}
    assert torch.equal(back.extra["reached"], fooled.extra["reached"])
    assert torch.equal(back.success, fooled.success)


def test_robustness_result_loads_back(tmp_path):
    lens = small_lens()
    rob = robustness(lens, Pixels(10), eps=[0, 0.1], examples=2, run=QUIET)
    back = _round_trip(rob, tmp_path / "rob")
    pd.testing.assert_frame_equal(back.table, rob.table)
    assert back.params == rob.params and back.examples is not None
    assert torch.equal(back.examples.adversarial, rob.examples.adversarial)
    plain = robustness(lens, Pixels(6), eps=[0, 0.1], run=QUIET)
    assert _round_trip(plain, tmp_path / "plain").examples is None
