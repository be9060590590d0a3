"""The optimisation core (`convlens.optimize`), `feature_visualization` and `class_model`:
objectives by hand and composed, transforms, parameterisations, a closed-form class model,
seeds, the model left as found (also after an error), errors, saving, the command line."""
from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch
from torch import nn

from conftest import all_hooks, assert_unchanged, snapshot
from conftest import assert_loads_back as assert_round_trip
from convlens import ConvlensError, Lens
from convlens.cli import main
from convlens.optimize import (
    Context,
    FFTImage,
    PixelImage,
    alpha_norm,
    apply_transforms,
    channel,
    class_logit,
    color_matrix,
    deepdream,
    direction,
    jitter,
    l2,
    neuron,
    pad,
    random_rotate,
    random_scale,
    render,
    total_variation,
)
from convlens.techniques.synthesis.featvis import class_model, feature_visualization
from convlens.techniques.synthesis.results import ClassModelResult, FeatureVisResult


def small_cnn(seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(OrderedDict(
        c1=nn.Conv2d(3, 6, 3, padding=1), r1=nn.ReLU(inplace=True), p1=nn.MaxPool2d(2),
        c2=nn.Conv2d(6, 5, 3, padding=1), r2=nn.ReLU(inplace=True), flat=nn.Flatten(),
        fc=nn.Linear(5 * 6 * 6, 4)))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return net


@pytest.fixture
def lens():
    return Lens(small_cnn(), mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(3, 12, 12),
                labels=["a", "b", "c", "d"])


def ctx_of(acts, logits=None, x=None):
    x = torch.zeros(2, 1, 3, 3) if x is None else x
    return Context(acts, logits, x, x)


# -- objectives ------------------------------------------------------------------------------
def test_objectives_by_hand_and_composed():
    a = torch.arange(2 * 3 * 2 * 2, dtype=torch.float64).view(2, 3, 2, 2)
    logits = torch.tensor([[1.0, 5.0], [2.0, -1.0]], dtype=torch.float64)
    ctx = ctx_of({"L": a}, logits)
    # small integers: their sums, and so these means, are exact in any order
    assert torch.equal(channel("L", 1)(ctx), a[:, 1].mean((1, 2)))
    assert torch.equal(channel("L", [2, 0])(ctx), torch.stack([a[0, 2].mean(), a[1, 0].mean()]))
    assert torch.equal(neuron("L", 2, 0, 1)(ctx), a[:, 2, 0, 1])
    assert torch.equal(neuron("L", 0)(ctx), a[:, 0, 1, 1])  # the centre of a 2x2 map
    v = torch.tensor([1.0, -2.0, 0.5])
    want = (a * v.view(1, 3, 1, 1).double()).sum(1).mean((1, 2))
    assert torch.allclose(direction("L", v)(ctx), want)
    assert torch.allclose(deepdream("L")(ctx), a.pow(2).mean((1, 2, 3)))
    assert torch.equal(class_logit(1)(ctx), logits[:, 1])
    obj = 2 * channel("L", 0) - class_logit([0, 1]) + 1.5
    assert obj.layers == ("L",) and obj.logits and obj.batch == 2
    assert torch.allclose(obj(ctx),
                          2 * a[:, 0].mean((1, 2)) - torch.tensor([1.0, -1.0]).double() + 1.5)
    with pytest.raises(ConvlensError, match="different batches"):
        channel("L", [0, 1, 2]) + class_logit([0, 1])


def test_image_priors_by_hand():
    x = torch.tensor([[[[0.0, 1.0], [3.0, -1.0]]]], dtype=torch.float64)
    ctx = Context({}, None, x, x)
    assert float(l2(0.5)(ctx)) == pytest.approx(0.5 * (1 + 9 + 1))
    assert float(alpha_norm(3, scale=2.0)(ctx)) == pytest.approx(8 + 216 + 8)
    # one forward difference pair at the top-left pixel: (1-0)^2 + (3-0)^2
    assert float(total_variation(2)(ctx)) == pytest.approx(10.0)
    assert float(total_variation(1)(ctx)) == pytest.approx(10.0 ** 0.5)


def test_objective_errors_name_the_problem(lens):
    a = torch.zeros(2, 3, 2, 2)
    with pytest.raises(ConvlensError, match="channel 7 is out of range.*3 channels"):
        channel("L", 7)(ctx_of({"L": a}))
    with pytest.raises(ConvlensError, match="position"):
        neuron("L", 0, 5, 5)(ctx_of({"L": a}))
    with pytest.raises(ConvlensError, match="4 components.*3 channels"):
        direction("L", torch.ones(4))(ctx_of({"L": a}))
    with pytest.raises(ConvlensError, match="class 9 is out of range"):
        class_logit(9)(ctx_of({}, torch.zeros(2, 4)))


# -- transforms, parameterisations -----------------------------------------------------------
def test_integer_jitter_moves_pixels_exactly():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(4, 3, 10, 10, generator=g)
    out = apply_transforms(img, [pad("zeros"), jitter(2)], torch.Generator().manual_seed(1))
    shifts = torch.randint(-2, 3, (4, 2), generator=torch.Generator().manual_seed(1))
    for i, (dx, dy) in enumerate(shifts.tolist()):
        # sampling at p + d: the image moves by -d; compare the interior
        want = torch.roll(img[i], shifts=(-dy, -dx), dims=(1, 2))[:, 2:-2, 2:-2]
        assert torch.allclose(out[i][:, 2:-2, 2:-2], want, atol=1e-5)


def test_identity_transforms_and_grey_fill():
    img = torch.rand(2, 3, 8, 8)
    gen = torch.Generator().manual_seed(0)
    same = apply_transforms(img, [random_scale([1.0]), random_rotate([0.0]), jitter(0)], gen)
    assert torch.allclose(same, img, atol=1e-6)
    big = apply_transforms(img, [pad("grey"), random_scale([0.5])], gen)
    assert torch.allclose(big[:, :, 0, 0], torch.full((2, 3), 0.5), atol=1e-6)


def test_parameterisations_stay_in_range_and_colour_matrix():
    f = FFTImage(3, (3, 16, 12), sd=2.0, seed=0)
    u = f().detach()
    assert u.shape == (3, 3, 16, 12) and 0 < float(u.min()) and float(u.max()) < 1
    p = PixelImage(torch.full((1, 1, 2, 2), 5.0), squash="clamp")
    p.project()
    assert float(p().detach().max()) == 1.0
    g = torch.Generator().manual_seed(0)
    mix = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.2, 0.3, 0.9]])
    imgs = torch.einsum("ij,njhw->nihw", mix, torch.randn(50, 3, 8, 8, generator=g))
    m = color_matrix(imgs)
    cov = torch.cov(imgs.permute(1, 0, 2, 3).reshape(3, -1))
    mm = m @ m.T
    assert torch.allclose(mm / mm.max(), cov / cov.max(), atol=1e-4)


# -- class model: a closed form ---------------------------------------------------------------
def test_class_model_of_a_linear_model_is_w_over_2_lambda():
    """S_c(x) = w_c . x: argmax S_c - lam ||x||^2 = w_c / (2 lam), inside a wide range."""
    torch.manual_seed(0)
    fc = nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 3, 3, bias=True))
    lens = Lens(fc, mean=(0.0, 0.0), std=(1.0, 1.0), input_size=(2, 3, 3),
                value_range=(-100.0, 100.0))
    res = class_model(lens, [0, 2], steps=300, l2_weight=0.5, lr=0.2, progress=False)
    w = fc[1].weight.detach()
    want = w[[0, 2]] / (2 * 0.5)
    got = lens.normalize(-100 + 200 * res.images).flatten(1)
    assert torch.allclose(got, want, atol=1e-4)
    assert isinstance(res, ClassModelResult) and res.targets == [0, 2]


def test_class_model_raises_its_class_and_is_seeded(lens):
    a = class_model(lens, steps=30, progress=False, seed=1)
    b = class_model(lens, steps=30, progress=False, seed=1)
    assert torch.equal(a.images, b.images)
    assert a.history[-1] > a.history[0]
    assert a.probs.shape == (4, 4) and float(a.images.min()) >= 0 and float(a.images.max()) <= 1
    assert class_model(lens, "c", steps=2, progress=False).targets == [2]


# -- feature visualisation ---------------------------------------------------------------------
@pytest.mark.parametrize("param", ["fft", "pixel"])
def test_all_channels_in_one_batch_raise_their_channel(lens, param):
    res = feature_visualization(lens, "c2", channels="all", steps=40, param=param,
                                progress=False)
    assert isinstance(res, FeatureVisResult)
    assert res.images.shape == (5, 3, 12, 12) and res.channels == [0, 1, 2, 3, 4]
    assert res.history[-8:].mean() > res.history[:8].mean()
    # each image excites its own channel more than the other images do
    x = lens.normalize(res.images)
    with torch.no_grad():
        acts = lens.model[:4](x).mean((2, 3))  # c2's output
    assert (acts.argmax(0) == torch.arange(5)).float().mean() >= 0.8


def test_bare_module_with_an_input_size(lens):
    res = feature_visualization(lens.model, "c2", channels=[0], steps=2, input_size=(3, 12, 12),
                                progress=False)
    assert res.images.shape == (1, 3, 12, 12)
    assert class_model(lens.model, 1, steps=2, input_size=(3, 12, 12),
                       progress=False).targets == [1]
    with pytest.raises(ConvlensError, match="does not say what input"):
        class_model(lens.model, 1, steps=2, progress=False)


def test_featvis_seeded_and_chunked(lens):
    a = feature_visualization(lens, "c1", channels=[0, 3], steps=10, progress=False, seed=2)
    b = feature_visualization(lens, "c1", channels=[0, 3], steps=10, progress=False, seed=2)
    assert torch.equal(a.images, b.images)
    c = feature_visualization(lens, "c1", channels=[0, 3, 5], steps=10, progress=False,
                              batch_size=2)
    assert c.images.shape[0] == 3 and c.channels == [0, 3, 5]


def test_featvis_of_composed_objectives_and_data_colours(lens):
    obj = channel("c2", 1) + 0.5 * deepdream("r1") - 0.1 * class_logit(0)
    g = torch.Generator().manual_seed(0)
    res = feature_visualization(lens, obj, steps=5, progress=False,
                                decorrelate=color_matrix(torch.rand(4, 3, 6, 6, generator=g)))
    assert res.images.shape == (1, 3, 12, 12) and res.params["decorrelated"]
    res = feature_visualization(lens, "c2", channels=[1], unit="neuron", steps=3,
                                progress=False)
    assert res.objective.startswith("neuron")


# -- the model as found, errors -----------------------------------------------------------------
def test_model_left_as_found_also_after_an_error(lens):
    net = lens.model
    net.train()
    net.fc.weight.grad = torch.ones_like(net.fc.weight)
    net.c1.bias.requires_grad_(False)
    before = snapshot(net)
    feature_visualization(lens, "c2", channels=[0, 1], steps=3, progress=False)
    class_model(lens, steps=3, progress=False)
    assert_unchanged(net, before)
    # an error inside the loop (the objective reads a channel the layer lacks)
    with pytest.raises(ConvlensError, match="channel 40 is out of range"):
        render(lens, channel("c2", 40), PixelImage.random(1, (3, 12, 12)), steps=3,
               progress=False)
    assert_unchanged(net, before)
    assert all_hooks(net) == 0


@pytest.mark.parametrize("call,msg", [
    (lambda L: feature_visualization(L, "c3", progress=False), "did you mean"),
    (lambda L: feature_visualization(L, "c2", channels=[9], progress=False),
     "channel 9 is out of range"),
    (lambda L: feature_visualization(L, "c2", steps=0, progress=False), "steps must be at least 1"),
    (lambda L: feature_visualization(L, "c2", param="fourier", progress=False),
     "unknown parameterisation"),
    (lambda L: feature_visualization(L, neuron("c9", 0), progress=False), "unknown layer"),
    (lambda L: class_model(L, "e", progress=False), "unknown class"),
    (lambda L: class_model(L, 7, progress=False), "out of range"),
    (lambda L: class_model(L, steps=0, progress=False), "steps must be at least 1"),
])
def test_errors_are_one_line(lens, call, msg):
    with pytest.raises(ConvlensError, match=msg) as e:
        call(lens)
    assert "\n" not in str(e.value)
    assert all_hooks(lens.model) == 0


# -- saving, the command line -------------------------------------------------------------------
def test_results_save(lens, tmp_path):
    fv = feature_visualization(lens, "c2", steps=2, progress=False)
    out = fv.save(tmp_path / "fv", lens=lens)
    m = json.loads((out / "manifest.json").read_text())
    assert (m["kind"] == "featvis" and m["info"]["layer"] == "c2"
            and m["info"]["channels"] == [0, 1, 2, 3, 4])
    assert (out / "grid.png").stat().st_size > 1000
    cm = class_model(lens, steps=2, progress=False)
    out = cm.save(tmp_path / "cm", lens=lens)
    assert json.loads((out / "manifest.json").read_text())["kind"] == "class_model"
    assert list(cm.tables()["targets"].name) == ["a", "b", "c", "d"]


def test_cli_featvis_and_class_model(tmp_path, capsys):
    out = tmp_path / "fv"
    assert main(["feature-visualization", "--model", "builtin:fashion-net", "--layer", "features.3",
                 "--channels", "0,5", "--steps", "3", "--param", "pixel", "--out", str(out)]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["kind"] == "featvis" and m["info"]["channels"] == [0, 5]
    assert main(["class-model", "--model", "builtin:fashion-net", "--targets", "0,Coat",
                 "--steps", "3", "--out", str(tmp_path / "cm")]) == 0
    assert "Coat" in capsys.readouterr().out
    for args, msg in [(["feature-visualization", "--model", "builtin:fashion-net",
                        "--layer", "features.33"], "did you mean"),
                      (["feature-visualization", "--model", "builtin:fashion-net",
                        "--layer", "features.3", "--channels", "64"], "out of range"),
                      (["class-model", "--model", "builtin:fashion-net", "--targets", "Cot"],
                       "did you mean")]:
        assert main(args + ["--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("convlens: error:") and msg in err
        assert len(err.strip().splitlines()) == 1


def test_results_load_back(lens, tmp_path):
    fv = feature_visualization(lens, "c2", channels=[0, 3], steps=2, progress=False)
    assert_round_trip(fv, tmp_path / "fv")
    obj = feature_visualization(lens, neuron("c1", 1), steps=2, progress=False)
    assert_round_trip(obj, tmp_path / "obj")
    cm = class_model(lens, [1, 2], steps=2, progress=False)
    assert_round_trip(cm, tmp_path / "cm")
