"""Data gradient and friends: closed forms, a literal float64 reference, every ReLU spelling,
Captum on torchvision nets (peer), no hooks left and the model unchanged, CLI."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import _get_current_function_mode_stack

from conftest import all_hooks, assert_loads_back, assert_unchanged, snapshot
from convlens import ConvlensError, Lens
from convlens.cli import main
from convlens.hooks import ReluRuleWarning, relu_rule
from convlens.techniques.gradients.cam import default_cam_layer, grad_cam, guided_grad_cam
from convlens.techniques.gradients.gradients import deconvnet, guided_backprop, saliency
from convlens.techniques.gradients.localisation import energy_in_mask, pointing_game
from convlens.techniques.gradients.sanity import cascading_randomization
from convlens.techniques.gradients.smoothing import METHODS, integrated_gradients, smoothgrad

pytestmark = pytest.mark.usefixtures("one_thread")

MAP_METHODS = ["saliency", "deconvnet", "guided_backprop", "grad_cam", "guided_grad_cam",
               "integrated_gradients", "smoothgrad"]
FAST = {"integrated_gradients": {"steps": 4}, "smoothgrad": {"samples": 3}}


def lens_of(model, size=(3, 8, 8), k=None):
    return Lens(model, mean=(0.0,), std=(1.0,), input_size=size,
                labels=None if k is None else [f"c{i}" for i in range(k)])


def seeded(module: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return module.eval()


# -- every spelling of ReLU ----------------------------------------------------------------
FORMS = ["module", "module_inplace", "F.relu", "F.relu_inplace", "F.relu_", "torch.relu",
         "torch.relu_", "Tensor.relu", "Tensor.relu_"]


def relu(form: str, t: torch.Tensor, module: nn.Module) -> torch.Tensor:
    if form.startswith("module"):
        return module(t)
    return {"F.relu": lambda: F.relu(t), "F.relu_inplace": lambda: F.relu(t, inplace=True),
            "F.relu_": lambda: F.relu_(t), "torch.relu": lambda: torch.relu(t),
            "torch.relu_": lambda: torch.relu_(t), "Tensor.relu": lambda: t.relu(),
            "Tensor.relu_": lambda: t.relu_()}[form]()


class SmallNet(nn.Module):
    """conv-ReLU-maxpool-conv-ReLU-linear-ReLU-linear, the ReLU spelled as `form`."""

    def __init__(self, form: str = "module", cin: int = 3):
        super().__init__()
        self.form = form
        self.conv1 = nn.Conv2d(cin, 4, 3, padding=1)
        self.act1 = nn.ReLU(inplace=form == "module_inplace")
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.act2 = nn.ReLU(inplace=form == "module_inplace")
        self.fc1 = nn.Linear(5 * 4 * 4, 6)
        self.act3 = nn.ReLU(inplace=form == "module_inplace")
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x):
        h = self.pool(relu(self.form, self.conv1(x), self.act1))
        h = relu(self.form, self.conv2(h), self.act2)
        h = relu(self.form, self.fc1(h.flatten(1)), self.act3)
        return self.fc2(h)


def small(form="module", seed=0):
    return lens_of(seeded(SmallNet(form), seed), k=3)


X = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("form", FORMS[1:])
def test_every_relu_form_gives_the_module_maps(form):
    ref, other = small("module"), small(form)
    for fn in (guided_backprop, deconvnet, saliency):
        a, b = fn(ref, X, target=[0, 1, 2]), fn(other, X, target=[0, 1, 2])
        assert torch.allclose(a.attribution, b.attribution, rtol=0, atol=1e-7), fn.__name__
    # the rules really differ from the gradient here (else the test would prove nothing)
    g, d = saliency(ref, X, 0).attribution, deconvnet(ref, X, 0).attribution
    assert not torch.allclose(g, guided_backprop(ref, X, 0).attribution)
    assert not torch.allclose(g, d)


def test_clamp_stays_ordinary_arithmetic():
    class Clamped(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 5), nn.Linear(5, 2)

        def forward(self, x):
            return self.b(self.a(x.flatten(1)).clamp(min=0))

    lens = lens_of(seeded(Clamped()), size=(1, 2, 2))
    x = torch.randn(2, 1, 2, 2)
    with pytest.warns(ReluRuleWarning, match="no ReLU ran"):
        gb = guided_backprop(lens, x, 0)
    assert torch.equal(gb.attribution, saliency(lens, x, 0).attribution)  # the same backward


def test_other_nonlinearities_warn():
    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.act = nn.Linear(4, 5), nn.Linear(5, 2), nn.GELU()

        def forward(self, x):
            return self.b(F.relu(torch.sigmoid(self.act(self.a(x.flatten(1))))))

    lens = lens_of(seeded(Mixed()), size=(1, 2, 2))
    with pytest.warns(ReluRuleWarning, match="gelu, sigmoid.*plain gradient"):
        guided_backprop(lens, torch.randn(2, 1, 2, 2), 1)


def test_relu_rule_is_scoped_and_reversible():
    x = torch.tensor([-1.0, 2.0, 3.0], requires_grad=True)
    w = torch.tensor([5.0, -7.0, 11.0])
    with relu_rule(None, "deconv") as stats:
        y = F.relu(x)
    assert stats.relus == 1 and _get_current_function_mode_stack() == []
    (g,) = torch.autograd.grad((y * w).sum(), x)
    assert g.tolist() == [5.0, 0.0, 11.0]          # max(R, 0), whatever the sign of x
    (g,) = torch.autograd.grad((F.relu(x) * w).sum(), x)
    assert g.tolist() == [0.0, -7.0, 11.0]         # outside the block: the gradient
    with pytest.raises(RuntimeError), relu_rule(None, "guided"):
        raise RuntimeError("boom")
    assert _get_current_function_mode_stack() == []
    with pytest.raises(ConvlensError, match="unknown ReLU rule"):
        with relu_rule(None, "guide"):
            pass


# -- closed forms --------------------------------------------------------------------------
def test_linear_model_saliency_is_the_weight():
    lin = nn.Linear(3 * 4 * 4, 5)
    lens = lens_of(seeded(nn.Sequential(nn.Flatten(), lin)), size=(3, 4, 4), k=5)
    x = torch.randn(2, 3, 4, 4)
    r = saliency(lens, x, target=[4, "c1"])
    w = lin.weight.detach().view(5, 3, 4, 4)
    assert torch.allclose(r.attribution, torch.stack([w[4], w[1]]), atol=1e-7)
    assert torch.allclose(r.map, torch.stack([w[4], w[1]]).abs().amax(1), atol=1e-7)
    assert r.targets == ["class 4 (c4)", "class 1 (c1)"]


def test_one_relu_net_closed_forms():
    torch.manual_seed(0)
    W, v = torch.randn(6, 4), torch.randn(2, 6)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 6, bias=False), nn.ReLU(),
                        nn.Linear(6, 2, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(W)
        net[3].weight.copy_(v)
    lens = lens_of(net.eval(), size=(1, 2, 2))
    x = torch.randn(5, 1, 2, 2)
    f = x.flatten(1) @ W.T                                       # (5, 6) ReLU inputs
    R = v[1].expand_as(f)                                        # signal arriving at the ReLU
    expect = {"saliency": (f > 0) * R, "guided_backprop": (f > 0) * (R > 0) * R,
              "deconvnet": R.clamp(min=0)}
    for name, r_l in expect.items():
        got = METHODS[name](lens, x, target=1).attribution.flatten(1)
        assert torch.allclose(got, r_l.float() @ W, atol=1e-6), name


def test_unit_target_projects_one_activation():
    lens = small()
    net = lens.model
    r = saliency(lens, X, target=("conv2", 3))
    acts = net.conv2(net.pool(F.relu(net.conv1(X))))[:, 3]
    for i in range(len(X)):
        y, x = divmod(int(acts[i].argmax()), acts.shape[-1])   # Zeiler: the strongest position
        assert r.targets[i] == f"unit conv2:3 at ({y}, {x})"
        xi = X[i:i + 1].clone().requires_grad_(True)
        a = net.conv2(net.pool(F.relu(net.conv1(xi))))[0, 3, y, x]
        (g,) = torch.autograd.grad(a, xi)
        assert torch.allclose(r.attribution[i], g[0], atol=1e-7)
    fixed = guided_backprop(lens, X, target="conv2:3:1:2")
    assert fixed.targets == ["unit conv2:3 at (1, 2)"] * 3 and (fixed.classes == -1).all()
    # a ReLU module whose output is changed in place later is still read at its own call
    assert deconvnet(small("module_inplace"), X, target="act2:0").attribution.abs().sum() > 0


def test_batch_equals_one_image_at_a_time():
    lens = small()
    for fn in (saliency, guided_backprop, grad_cam):
        batch = fn(lens, X, target=[2, 0, 1]).map
        one = torch.cat([fn(lens, X[i:i + 1], target=t).map for i, t in enumerate([2, 0, 1])])
        assert torch.allclose(batch, one, atol=1e-6), fn.__name__


# -- a literal float64 reference (slow loops, straight from the papers) ---------------------
def literal(net: SmallNet, x: np.ndarray, c: int, rule: str) -> np.ndarray:
    """Forward and backward of SmallNet for one image with explicit loops, in float64."""
    P = {k: v.detach().double().numpy() for k, v in net.state_dict().items()}

    def conv(a, w, b):
        cin, h, wd = a.shape
        pad = np.zeros((cin, h + 2, wd + 2))
        pad[:, 1:-1, 1:-1] = a
        out = np.zeros((w.shape[0], h, wd))
        for o in range(w.shape[0]):
            for i in range(h):
                for j in range(wd):
                    out[o, i, j] = (pad[:, i:i + 3, j:j + 3] * w[o]).sum() + b[o]
        return out

    def conv_back(r, w, shape):
        cin, h, wd = shape
        g = np.zeros((cin, h + 2, wd + 2))
        for o in range(w.shape[0]):
            for i in range(h):
                for j in range(wd):
                    g[:, i:i + 3, j:j + 3] += r[o, i, j] * w[o]
        return g[:, 1:-1, 1:-1]

    def relu_back(r, f):
        out = np.zeros_like(r)
        for idx in np.ndindex(r.shape):
            if rule == "gradient":
                out[idx] = r[idx] if f[idx] > 0 else 0.0
            elif rule == "guided":
                out[idx] = r[idx] if (f[idx] > 0 and r[idx] > 0) else 0.0
            else:  # deconv
                out[idx] = r[idx] if r[idx] > 0 else 0.0
        return out

    f1 = conv(x, P["conv1.weight"], P["conv1.bias"])
    a1 = np.maximum(f1, 0)
    pooled, switch = np.zeros((4, 4, 4)), {}
    for ch in range(4):
        for i in range(4):
            for j in range(4):
                win = a1[ch, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
                di, dj = np.unravel_index(np.argmax(win), (2, 2))
                pooled[ch, i, j], switch[ch, i, j] = win[di, dj], (2 * i + di, 2 * j + dj)
    f2 = conv(pooled, P["conv2.weight"], P["conv2.bias"])
    a2 = np.maximum(f2, 0).reshape(-1)
    f3 = P["fc1.weight"] @ a2 + P["fc1.bias"]
    r3 = relu_back(P["fc2.weight"][c], f3)
    r2 = relu_back((P["fc1.weight"].T @ r3).reshape(f2.shape), f2)
    rp = conv_back(r2, P["conv2.weight"], pooled.shape)
    r1 = np.zeros_like(a1)
    for (ch, i, j), (si, sj) in switch.items():  # max-pooling: back through the switches
        r1[ch, si, sj] += rp[ch, i, j]
    return conv_back(relu_back(r1, f1), P["conv1.weight"], x.shape)


@pytest.mark.parametrize("method,rule", [("guided_backprop", "guided"), ("deconvnet", "deconv"),
                                         ("saliency", "gradient")])
def test_literal_float64_reference(method, rule):
    lens = small("F.relu_inplace", seed=3)
    lens.model.double()
    got = METHODS[method](lens, X.double(), target=[0, 1, 2]).attribution
    assert got.dtype == torch.float64
    for i, c in enumerate([0, 1, 2]):
        ref = literal(lens.model, X[i].double().numpy(), c, rule)
        assert np.allclose(got[i].numpy(), ref, rtol=1e-10, atol=1e-12), (method, i)


# -- the other methods ----------------------------------------------------------------------
def test_grad_cam_by_hand_and_default_layer():
    lens = small()
    assert default_cam_layer(lens) == "act2"  # the last conv, through its ReLU
    r = grad_cam(lens, X, target=1)
    net = lens.model
    x = X.clone().requires_grad_(True)
    a = F.relu(net.conv2(net.pool(F.relu(net.conv1(x)))))
    (g,) = torch.autograd.grad(net.fc2(F.relu(net.fc1(a.flatten(1))))[:, 1].sum(), a)
    cam = F.relu((g.mean((2, 3), keepdim=True) * a).sum(1))
    assert torch.allclose(r.cam, cam.detach(), atol=1e-6) and r.map.shape == (3, 8, 8)
    gg = guided_grad_cam(lens, X, target=1)
    up = F.interpolate(cam.detach()[:, None], size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(gg.attribution, guided_backprop(lens, X, 1).attribution * up, atol=1e-6)


def test_integrated_gradients_completeness_and_chunking():
    lens = small()
    r = integrated_gradients(lens, X, target=[0, 1, 2], steps=64, internal_batch_size=7)
    scores = lens.model(X).detach()
    diff = scores[[0, 1, 2], [0, 1, 2]] - lens.model(torch.zeros_like(X))[0, [0, 1, 2]].detach()
    assert np.allclose(r.params["delta"], 0, atol=0.02 * float(diff.abs().max()))
    one = integrated_gradients(lens, X, target=[0, 1, 2], steps=64, internal_batch_size=500)
    assert torch.allclose(r.attribution, one.attribution, atol=1e-6)
    # the black baseline and a riemann rule
    b = integrated_gradients(lens, X, target=0, baseline=-1.0, steps=3, method="riemann_right")
    assert b.params["method"] == "riemann_right" and b.attribution.shape == X.shape


def test_smoothgrad_is_seeded_and_averages():
    lens = small()
    a = smoothgrad(lens, X, target=0, samples=5, sigma=0.2, seed=7, batch_size=4)
    b = smoothgrad(lens, X, target=0, samples=5, sigma=0.2, seed=7, batch_size=15)
    assert torch.allclose(a.map, b.map, atol=1e-6) and a.kind == "smoothgrad_saliency"
    gen = torch.Generator().manual_seed(7)
    noise = torch.randn((15, 3, 8, 8), generator=gen) * 0.2
    noisy = X.repeat_interleave(5, 0) + noise
    expect = saliency(lens, noisy, 0).map.view(3, 5, 8, 8).mean(1)
    assert torch.allclose(a.map, expect, atol=1e-6)
    gb = smoothgrad(lens, X, 0, method="guided_backprop", samples=2, sigma=0.0)
    assert torch.allclose(gb.attribution, guided_backprop(lens, X, 0).attribution, atol=1e-7)


# -- no hooks left, model unchanged, also on errors -----------------------------------------
@pytest.mark.parametrize("method", MAP_METHODS)
def test_model_left_as_found(method):
    lens = small("module_inplace")
    net = lens.model
    net.train()
    net.fc1.weight.requires_grad_(False)
    net.conv1.weight.grad = torch.ones_like(net.conv1.weight)
    before = snapshot(net)
    fn = METHODS[method]
    r = fn(lens, X, target="auto", **FAST.get(method, {}))
    assert r.map.shape == (3, 8, 8) and torch.isfinite(r.map).all()
    assert_unchanged(net, before)
    for bad, msg in [(7, "out of range"), ("conv9:0", "unknown layer"),
                     ("conv2:99", "channel 99"), ("conv2:0:9:9", "outside"),
                     ("c9", "unknown target")]:
        with pytest.raises(ConvlensError, match=msg):
            fn(lens, X, target=bad, **FAST.get(method, {}))
        assert_unchanged(net, before)
        assert all_hooks(net) == 0 and _get_current_function_mode_stack() == []


def test_dead_unit_and_bad_inputs():
    lens = small()
    with pytest.raises(ConvlensError, match="2 targets for 3 images"):
        saliency(lens, X, target=[0, 1])
    with pytest.raises(ConvlensError, match="no spatial positions"):
        saliency(lens, X, target="fc1:0:1:1")
    with pytest.raises(ConvlensError, match="spatial maps"):
        grad_cam(lens, X, layer="fc1")
    with pytest.raises(ConvlensError, match="unknown method"):
        smoothgrad(lens, X, method="salency")


def test_gradient_maps_save(tmp_path):
    lens = small()
    r = guided_grad_cam(lens, X[:2], target=1)
    out = r.save(tmp_path, lens=lens)
    m = json.loads((out / "manifest.json").read_text())
    assert m["kind"] == "guided_grad_cam" and m["info"]["params"]["layer"] == "act2"
    assert {"map", "attribution", "cam", "images"} <= set(m["arrays"])
    assert {"map_0", "overlay_1", "signed_0"} <= set(m["pictures"])
    assert np.load(out / "cam.npy").shape == (2, 4, 4)


@pytest.mark.parametrize("method", ["saliency", "grad_cam", "guided_grad_cam", "smoothgrad",
                                    "integrated_gradients"])
def test_gradient_maps_load_back(method, tmp_path):
    lens = small()
    r = METHODS[method](lens, X[:2], target=[1, "fc1:2"] if method == "saliency" else "auto",
                        **FAST.get(method, {}))
    back = assert_loads_back(r, tmp_path)
    assert isinstance(back.map, torch.Tensor) and back.targets == r.targets
    assert back.params == json.loads(json.dumps(r.params)) and back.summary() == r.summary()
    assert (back.attribution is None) == (r.attribution is None)
    assert (back.cam is None) == (r.cam is None)


def test_gradient_maps_summary_and_pictures_per_image():
    lens = small()
    r = integrated_gradients(lens, X, target=1, steps=4)
    lines = r.summary()
    assert len(lines) == 3 and lines[0].startswith("  image 0: class 1 (c1), predicted c")
    assert "completeness error" in lines[0]
    assert "completeness error" not in saliency(lens, X).summary()[0]
    assert r.kind == "integrated_gradients" and r.per_image()[2] == [
        "input_2", "overlay_2", "map_2", "signed_2"]
    cam = grad_cam(lens, X[:2])
    cam.max_pictures = 1
    assert cam.per_image() == [["input_0", "overlay_0", "map_0"]]
    assert set(sum(cam.per_image(), [])) == set(cam.pictures())


def test_sanity_check_loads_back(tmp_path):
    lens = small()
    sc = cascading_randomization(lens, X, methods=["saliency", "grad_cam"], keep=2)
    back = assert_loads_back(sc, tmp_path)
    assert back.stages == sc.stages and np.array_equal(back.spearman, sc.spearman)
    assert back.params["n"] == 3 and back.summary() == sc.summary()
    assert sc.summary()[0].startswith("  saliency: Spearman ")


# -- sanity checks and localisation ---------------------------------------------------------
def test_cascading_randomization_leaves_the_lens_alone():
    lens = small()
    before = snapshot(lens.model)
    sc = cascading_randomization(lens, X, methods=["saliency", "guided_backprop", "grad_cam"],
                                   keep=2)
    assert_unchanged(lens.model, before)
    assert sc.stages == ["original", "fc2", "fc1", "conv2", "conv1"]
    assert sc.spearman.shape == (5, 3, 3) and sc.maps.shape == (5, 3, 2, 8, 8)
    assert np.allclose(sc.spearman[0], 1) and np.allclose(sc.ssim[0], 1)
    assert (sc.spearman[-1] < 0.99).any()
    t = sc.table()
    assert list(t.columns[:3]) == ["stage", "randomised_down_to", "method"] and len(t) == 15
    again = cascading_randomization(lens, X, methods=["saliency"], seed=0)
    assert np.allclose(again.spearman[:, 0], sc.spearman[:, 0])


def test_pointing_game_and_energy():
    maps = torch.zeros(3, 4, 4)
    maps[0, 1, 1] = 2.0
    maps[0, 3, 3] = 1.0
    maps[1, 0, 0] = 1.0
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[:, 1:3, 1:3] = True
    assert pointing_game(maps, masks).tolist() == [True, False, False]  # all-zero: a miss
    assert pointing_game(maps, masks, tolerance=1).tolist() == [True, True, False]
    assert torch.allclose(energy_in_mask(maps, masks), torch.tensor([2 / 3, 0.0, 0.0]))


# -- command line ---------------------------------------------------------------------------
def test_cli_guided_backprop_and_errors(tmp_path, capsys):
    from PIL import Image

    from convlens.data import shapes
    png = tmp_path / "star.png"
    Image.fromarray(shapes.render(shapes.TEST_SEED, 3).image).save(png)
    out = tmp_path / "gb"
    assert main(["guided-backprop", "--model", "builtin:shapes-net", "--image", str(png),
                 "--target", "features.11:5", "--out", str(out)]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert (m["kind"] == "guided_backprop"
            and m["info"]["targets"][0].startswith("unit features.11:5"))
    assert (out / "overlay_0.png").is_file()
    assert main(["grad-cam", "--model", "builtin:shapes-net", "--image", str(png),
                 "--target", "star", "--out", str(tmp_path / "gc")]) == 0
    assert "class 3 (star)" in capsys.readouterr().out
    for target, msg in [("12", "out of range"), ("features.3:999", "channel 999"),
                        ("sqare", "did you mean 'square'")]:
        assert main(["saliency", "--model", "builtin:shapes-net", "--image", str(png),
                     "--target", target, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert (err.startswith("convlens: error:") and msg in err
                and len(err.strip().splitlines()) == 1)


def test_cli_cascading_randomization(tmp_path, capsys):
    out = tmp_path / "sc"
    assert main(["cascading-randomization", "--model", "builtin:shapes-net", "--data",
                 "builtin:shapes:test:2", "--methods", "saliency,guided-backprop",
                 "--layers", "classifier.7,features.10", "--keep", "1", "--seed", "3",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "saliency: Spearman" in printed and "guided_backprop: Spearman" in printed
    m = json.loads((out / "manifest.json").read_text())
    assert m["kind"] == "sanity_check" and m["view"]["name"] == "cascading_randomization"
    assert m["info"]["stages"] == ["original", "classifier.7", "features.10"]
    assert m["info"]["params"]["seed"] == 3 and m["info"]["params"]["n"] == 2


# -- Captum on the same models (peer) -------------------------------------------------------
def rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def torchvision_lenses():
    import torchvision
    out = {}
    for name, size in (("resnet18", 64), ("vgg11", 32)):
        torch.manual_seed(0)
        m = getattr(torchvision.models, name)(weights=None).eval()
        out[name] = Lens(m, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (3, size, size),
                         name=name)
    return out


@pytest.mark.peer
@pytest.mark.parametrize("name,layer", [("resnet18", "layer4"), ("vgg11", "features.19")])
def test_captum_agrees_on_torchvision(torchvision_lenses, name, layer):
    captum = pytest.importorskip("captum.attr")
    lens = torchvision_lenses[name]
    m = lens.model
    x = torch.randn(2, *lens.input_size, generator=torch.Generator().manual_seed(2))
    t = [1, 7]

    def xin():
        return x.clone().requires_grad_(True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sal = saliency(lens, x, t)
        assert rel(sal.attribution, captum.Saliency(m).attribute(xin(), target=t, abs=False)) < 1e-5
        assert rel(sal.map, captum.Saliency(m).attribute(xin(), target=t).amax(1)) < 1e-5
        assert rel(guided_backprop(lens, x, t).attribution,
                   captum.GuidedBackprop(m).attribute(xin(), target=t)) < 1e-5
        assert rel(deconvnet(lens, x, t).attribution,
                   captum.Deconvolution(m).attribute(xin(), target=t)) < 1e-5
        cam = captum.LayerGradCam(m, lens.layer(layer)).attribute(xin(), target=t,
                                                                   relu_attributions=True)
        assert rel(grad_cam(lens, x, t, layer=layer).cam, cam[:, 0]) < 1e-5
        ig = captum.IntegratedGradients(m).attribute(xin(), target=t, n_steps=4,
                                                     internal_batch_size=8)
        assert rel(integrated_gradients(lens, x, t, steps=4, internal_batch_size=8).attribution,
                   ig) < 1e-5
        ours = smoothgrad(lens, x, t, samples=3, sigma=0.3, seed=5, batch_size=6)
        torch.manual_seed(5)  # Captum draws from the global generator, image by image
        nt = captum.NoiseTunnel(captum.Saliency(m)).attribute(
            xin(), target=t, nt_samples=3, stdevs=0.3, nt_type="smoothgrad", abs=False)
        assert rel(ours.attribution, nt) < 1e-5


@pytest.mark.peer
def test_functional_relu_guided_equals_module_version_captum_does_not():
    captum = pytest.importorskip("captum.attr")
    module, functional = small("module_inplace"), small("F.relu")
    ours_m = guided_backprop(module, X, 0).attribution
    ours_f = guided_backprop(functional, X, 0).attribution
    assert torch.allclose(ours_f, ours_m, atol=1e-7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cap_m = captum.GuidedBackprop(module.model).attribute(X.clone().requires_grad_(True),
                                                              target=0)
        cap_f = captum.GuidedBackprop(functional.model).attribute(X.clone().requires_grad_(True),
                                                                  target=0)
    assert rel(ours_m, cap_m) < 1e-5          # where Captum's hooks apply, we agree
    assert rel(cap_f, ours_f) > 0.05          # Captum misses F.relu: it gives the plain gradient
    assert torch.allclose(cap_f, saliency(functional, X, 0).attribution, atol=1e-6)
