"""Occlusion maps (METHODS.md §4): closed form on a linear model, a slow literal loop as the
reference for the naive, batched and incremental paths, the fallback for ops the incremental
engine does not know, the approximate mode, Captum's `Occlusion` as a peer, and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convlens
from conftest import all_hooks, assert_unchanged, snapshot
from convlens import ConvlensError, Lens
from convlens.cli import main
from convlens.techniques.occlusion.occlusion import occlusion

pytestmark = pytest.mark.usefixtures("one_thread")


# -- models ----------------------------------------------------------------------------------
class ZooNet(nn.Module):
    """Every kind of layer the incremental engine handles: padded, strided, dilated, grouped,
    non-square and 1x1-stride-2 convs; batch norm; in-place, functional and method ReLUs;
    padded max pool; avg pool; arithmetic with constants; a three-way residual sum; a channel
    concatenation; then adaptive pooling, flatten and a linear layer (computed in full)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8),
                                  nn.ReLU(inplace=True))
        self.down = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.dil = nn.Conv2d(8, 8, 3, padding=2, dilation=2)
        self.act = nn.LeakyReLU(0.1)
        self.skip = nn.Conv2d(8, 8, 1, stride=2)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.branch = nn.Conv2d(8, 4, (3, 1), padding=(1, 0))
        self.grouped = nn.Conv2d(12, 12, 3, padding=1, groups=3)
        self.avg = nn.AvgPool2d(2)
        self.head = nn.Linear(12, 5)
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            bn = self.stem[1]
            bn.running_mean.copy_(torch.randn(8, generator=gen) * 0.1)
            bn.running_var.copy_(torch.rand(8, generator=gen) + 0.5)
            bn.weight.copy_(torch.rand(8, generator=gen) + 0.5)
            bn.bias.copy_(torch.randn(8, generator=gen) * 0.1)
            self.head.weight.mul_(4.0)  # peaky enough that the class changes somewhere

    def forward(self, x):
        h = self.stem(x)                                   # 20x20
        a = F.relu(self.down(h))                           # 10x10
        a = self.act(self.dil(a)) * 0.5 + 0.1
        r = a + self.skip(h) + self.pool(h)                # residual sum of three
        r = torch.cat([r, self.branch(r)], 1).relu()
        r = torch.relu(self.grouped(r))
        r = 3.0 - self.avg(r)                              # 5x5
        return self.head(F.adaptive_avg_pool2d(r, 1).flatten(1))


class RollNet(nn.Module):
    """torch.roll moves the changed region: an op the engine must not treat as local."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 12 * 12, 3)

    def forward(self, x):
        h = torch.roll(torch.relu(self.c1(x)), shifts=(3, -5), dims=(2, 3))
        return self.fc(torch.relu(self.c2(h)).flatten(1))


class BranchyNet(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2 * 10 * 10, 3)

    def forward(self, x):
        h = self.conv(x)
        if h.mean() > 100:
            h = -h
        return self.fc(h.flatten(1))


def zoo_lens():
    torch.manual_seed(0)
    return Lens(ZooNet().eval(), mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3),
                input_size=(3, 20, 20), labels=list("abcde"))


def fill_image(lens, x, fill, window):
    """What the occluder shows, written out independently of the implementation."""
    mean = torch.tensor(lens.mean).view(1, -1, 1, 1)
    std = torch.tensor(lens.std).view(1, -1, 1, 1)
    if fill == "zero":
        return torch.zeros_like(x)
    if fill == "gray":
        return ((0.5 - mean) / std).expand_as(x)
    if fill == "mean":
        return x.mean((2, 3), keepdim=True).expand_as(x)
    if fill == "blur":
        from torchvision.transforms.functional import gaussian_blur
        s = max(window) / 4
        k = 2 * int(np.ceil(3 * s)) + 1
        return gaussian_blur(x, [k, k], [s, s])
    return ((float(fill) - mean) / std).expand_as(x)


def literal(model, x1, fill_img, window, stride, target, layer=None, channel=None):
    """The slow literal loop: one forward pass per occluder position. Returns the maps of
    the target's probability and logit, every class's probability ``(Py, Px, K)`` (float64)
    and the activation sum."""
    wy, wx = window
    ty, tx = stride
    h, w = x1.shape[-2:]
    # every t pixels while the window fits, and one last window flush with the border
    ys = sorted(set(range(0, h - wy + 1, ty)) | {h - wy})
    xs = sorted(set(range(0, w - wx + 1, tx)) | {w - wx})
    probs, logits, tops, acts = [], [], [], []
    with torch.no_grad():
        for y in ys:
            for x in xs:
                xo = x1.clone()
                xo[:, :, y:y + wy, x:x + wx] = fill_img[:, :, y:y + wy, x:x + wx]
                if layer is None:
                    out = model(xo)[0]
                else:
                    with convlens.capture(model, layer) as cap:
                        out = model(xo)[0]
                    acts.append(cap[layer][0, channel].sum())
                p = torch.softmax(out.double(), 0)
                probs.append(p[target].float())
                logits.append(out[target])
                tops.append(p)
    py = len(ys)
    as_map = lambda v: torch.stack(v).view(py, -1, *v[0].shape)  # noqa: E731
    return as_map(probs), as_map(logits), as_map(tops), (as_map(acts) if acts else None)


# The library sums in other orders than the literal loop (other batches, the incremental engine):
# probabilities agree to 1e-5, so where two classes lie within TOP_TOL = 2e-5 of each other the
# last bits pick the most probable one, and either is right; elsewhere it must be the same.
TOP_TOL = 2e-5


def assert_top_class(top: torch.Tensor, p: torch.Tensor) -> None:
    """`top (Py, Px)` is the most probable class of the reference's probabilities `p (Py, Px,
    K)` wherever one class leads by more than TOP_TOL, and within TOP_TOL of it everywhere."""
    best = p.topk(min(2, p.shape[-1]), -1).values
    clear = best[..., 0] - best[..., -1] > TOP_TOL  # (one class: none clear, the next line holds)
    assert torch.equal(top[clear], p.argmax(-1)[clear])
    assert (p.gather(-1, top[..., None].long())[..., 0] >= best[..., 0] - TOP_TOL).all()


# -- closed form -----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["exact", "incremental"])
def test_linear_model_closed_form(mode):
    """A linear model f(x) = W x + b: occluding pixel set S with zeros changes logit k by
    -sum_{i in S} W_k,i x_i, and with fill value g by sum_{i in S} W_k,i (g_i - x_i)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(2 * 9 * 8, 4)).double()
    lens = Lens(net, mean=(0.5, 0.5), std=(0.25, 0.5), input_size=(2, 9, 8))
    x = torch.randn(1, 2, 9, 8, dtype=torch.float64)
    wk = net[1].weight[2].detach().view(2, 9, 8)
    clean = net(x)[0, 2].item()
    for fill, g in [("zero", torch.zeros(2, 1, 1, dtype=torch.float64)),
                    (0.8, torch.tensor([(0.8 - 0.5) / 0.25, (0.8 - 0.5) / 0.5],
                                       dtype=torch.float64).view(2, 1, 1))]:
        r = occlusion(lens, x, target=2, window=(3, 2), stride=(2, 3), fill=fill, mode=mode)
        assert r.logit.shape == (1, 4, 3)
        for i, y in enumerate(range(0, 7, 2)):
            for j, xx in enumerate(range(0, 7, 3)):
                s = (slice(None), slice(y, y + 3), slice(xx, xx + 2))
                want = clean + (wk[s] * (g - x[0][s])).sum().item()
                assert r.logit[0, i, j].item() == pytest.approx(want, abs=1e-12)
        logits = net(x).detach()
        assert r.clean_logit[0].item() == pytest.approx(clean)
        assert r.prob.shape == (1, 4, 3) and r.predicted[0] == logits.argmax()


# -- literal loop reference ------------------------------------------------------------------
@pytest.mark.parametrize("mode,batch_size", [("exact", 1), ("exact", 7), ("incremental", 5),
                                             ("incremental", 64)])
@pytest.mark.parametrize("fill", ["zero", "gray", "mean", "blur", 0.9])
def test_matches_literal_loop(mode, batch_size, fill):
    lens = zoo_lens()
    torch.manual_seed(3)
    x = torch.randn(2, 3, 20, 20)
    r = occlusion(lens, x, target=["b", 4], window=(5, 4), stride=(3, 2), fill=fill,
                  mode=mode, batch_size=batch_size)
    assert r.prob.shape == (2, 6, 9)
    for k, t in enumerate([1, 4]):
        xk = x[k:k + 1]
        prob, logit, p, _ = literal(lens.model, xk, fill_image(lens, xk, fill, (5, 4)),
                                    (5, 4), (3, 2), t)
        torch.testing.assert_close(r.prob[k], prob, atol=1e-5, rtol=0)
        torch.testing.assert_close(r.logit[k], logit, atol=1e-5, rtol=1e-5)
        assert_top_class(r.top_class[k], p)
    if mode == "incremental":
        # really incremental: most nodes computed on their changed region, fewer multiply-adds
        assert r.stats["engine"] == "incremental" and r.stats["incremental_nodes"] > 10
        assert r.stats["mac_fraction"] < 0.9
        # full tensors only from the global pooling on, or where the whole map has changed
        assert all(s in ("adaptive_avg_pool2d", "flatten") or s.endswith("whole map)")
                   for s in r.stats["full_from"])


def test_activation_map_of_a_layer():
    """Zeiler's panel (b): total activation of the strongest feature map, per position."""
    lens = zoo_lens()
    x = torch.randn(1, 3, 20, 20, generator=torch.Generator().manual_seed(5))
    with convlens.capture(lens, "stem") as cap:
        lens(x)
    strongest = int(cap["stem"][0].flatten(1).amax(1).argmax())
    for mode in ("exact", "incremental"):
        r = occlusion(lens, x, target=0, window=4, stride=4, mode=mode, layer="stem")
        assert r.channel == [strongest]
        _, _, _, act = literal(lens.model, x, torch.zeros_like(x), (4, 4), (4, 4), 0,
                               "stem", strongest)
        torch.testing.assert_close(r.activation[0], act, atol=1e-4, rtol=1e-5)
        assert r.activation_image.shape == (1, 20, 20)
    r = occlusion(lens, x, target=0, window=4, stride=4, layer="grouped", channel=7)
    _, _, _, act = literal(lens.model, x, torch.zeros_like(x), (4, 4), (4, 4), 0, "grouped", 7)
    torch.testing.assert_close(r.activation[0], act, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("size,window,stride", [(12, 3, 2), (20, 6, 4), (28, 5, 3), (7, 7, 2),
                                                (64, 12, 8)])
def test_every_pixel_is_occluded(size, window, stride):
    from convlens.techniques.occlusion.occlusion import positions

    starts = positions(size, window, stride)
    covered = np.zeros(size, bool)
    for s in starts:
        covered[s:s + window] = True
    assert covered.all() and starts[0] == 0 and starts[-1] == size - window
    assert all(b - a <= stride for a, b in zip(starts, starts[1:]))


def test_maps_at_image_resolution():
    lens = zoo_lens()
    x = torch.randn(1, 3, 20, 20)
    r = occlusion(lens, x, window=4, stride=4)
    assert r.prob_image.shape == (1, 20, 20) and r.top_class_image.shape == (1, 20, 20)
    # each value sits at its occluder's centre; the centre of (0, 0) is pixel 1.5
    centre = (r.prob_image[0, 1, 1] + r.prob_image[0, 2, 2]) / 2
    assert centre.item() == pytest.approx(r.prob[0, 0, 0].item(), abs=1e-3)
    assert r.prob_image[0, 0, 0].item() == pytest.approx(r.prob[0, 0, 0].item(), abs=1e-6)
    assert torch.equal(r.top_class_image[0, 0:3, 0:3], r.top_class[0, 0, 0].expand(3, 3))


# -- fallbacks: unknown ops and untraceable models -------------------------------------------
def test_unknown_op_falls_back_to_full_recomputation():
    torch.manual_seed(0)
    lens = Lens(RollNet().eval(), mean=(0.5,), std=(0.5,), input_size=(1, 12, 12))
    x = torch.randn(1, 1, 12, 12)
    r = occlusion(lens, x, target=1, window=3, stride=2, mode="incremental", batch_size=8)
    prob, logit, _, _ = literal(lens.model, x, torch.zeros_like(x), (3, 3), (2, 2), 1)
    torch.testing.assert_close(r.prob[0], prob, atol=1e-6, rtol=0)
    torch.testing.assert_close(r.logit[0], logit, atol=1e-5, rtol=1e-5)
    assert "roll" in r.stats["full_from"]


def test_untraceable_model_uses_full_passes():
    torch.manual_seed(0)
    lens = Lens(BranchyNet().eval(), mean=(0.5,), std=(0.5,), input_size=(1, 12, 12))
    x = torch.randn(1, 1, 12, 12)
    with pytest.warns(UserWarning, match="incremental inference unavailable"):
        r = occlusion(lens, x, target=2, window=3, stride=3)
    assert "torch.fx cannot trace" in r.stats["fallback"] and r.stats["engine"] == "exact"
    prob, _, _, _ = literal(lens.model, x, torch.zeros_like(x), (3, 3), (3, 3), 2)
    torch.testing.assert_close(r.prob[0], prob, atol=1e-6, rtol=0)


# -- real networks ---------------------------------------------------------------------------
@pytest.mark.parametrize("spec,size,window,stride", [
    pytest.param("torchvision:vgg16", 96, 16, 20,  # 5x5 positions, borders included
                 marks=pytest.mark.slow),
    ("torchvision:resnet18", 128, 16, 28),   # 5x5
    ("builtin:fashion-net", 28, 4, 2),       # 13x13
])
def test_incremental_equals_naive_on_real_networks(spec, size, window, stride):
    if spec == "builtin:fashion-net":
        from convlens.models import BUILTIN_MODELS
        b = BUILTIN_MODELS["fashion-net"]
        try:
            lens = convlens.load_model(spec)
        except ConvlensError:  # weights not shipped in this checkout: the architecture will do
            torch.manual_seed(0)
            lens = Lens(b.build(), b.mean, b.std, b.input_size, b.labels)
    else:
        torch.manual_seed(0)
        lens = convlens.load_model(spec)
    x = torch.randn(1, lens.input_size[0], size, size, generator=torch.Generator().manual_seed(1))
    a = occlusion(lens, x, window=window, stride=stride, mode="exact", batch_size=16)
    b = occlusion(lens, x, window=window, stride=stride, mode="incremental", batch_size=32)
    torch.testing.assert_close(b.prob, a.prob, atol=1e-5, rtol=0)
    torch.testing.assert_close(b.logit, a.logit, atol=1e-5, rtol=1e-5)
    if not torch.equal(a.top_class, b.top_class):  # a near-tie? (see TOP_TOL)
        _, _, p, _ = literal(lens.model, x, torch.zeros_like(x), (window,) * 2, (stride,) * 2, 0)
        assert_top_class(a.top_class[0], p)
        assert_top_class(b.top_class[0], p)
    assert b.stats["mac_fraction"] < 0.8


# -- approximate mode ------------------------------------------------------------------------
def test_approximate_without_approximation_is_exact():
    lens = zoo_lens()
    x = torch.randn(1, 3, 20, 20, generator=torch.Generator().manual_seed(2))
    ex = occlusion(lens, x, window=4, stride=2, mode="incremental")
    ap = occlusion(lens, x, window=4, stride=2, mode="approximate", tau=1.0, drill=1.0)
    torch.testing.assert_close(ap.prob, ex.prob, atol=1e-6, rtol=0)
    torch.testing.assert_close(ap.exact_prob, ex.prob, atol=1e-6, rtol=0)
    assert ap.ssim[0] == pytest.approx(1.0, abs=1e-9)


def test_approximate_reports_ssim_and_saves_work():
    lens = zoo_lens()
    x = torch.randn(1, 3, 20, 20, generator=torch.Generator().manual_seed(2))
    ex = occlusion(lens, x, window=4, stride=1, mode="incremental")
    ap = occlusion(lens, x, window=4, stride=1, mode="approximate", tau=0.6, drill=0.3)
    assert ap.prob.shape == ex.prob.shape == (1, 17, 17)
    assert -1 <= ap.ssim[0] <= 1 and ap.info()["ssim"] == ap.ssim
    torch.testing.assert_close(ap.exact_prob, ex.prob, atol=1e-6, rtol=0)
    assert ap.stats["approximate_positions"] < 0.6 * 17 * 17
    # coarse positions and drilled positions are computed, the rest interpolated
    assert ap.stats["forwards"] == ap.stats["approximate_positions"]
    no_ref = occlusion(lens, x, window=4, stride=1, mode="approximate", reference=False)
    assert no_ref.ssim is None and no_ref.exact_prob is None


def test_results_load_back(tmp_path):
    """`load_result` gives the same result back: saved again, the same manifest and arrays."""
    from convlens.results import load_result

    lens = zoo_lens()
    x = torch.randn(2, 3, 20, 20, generator=torch.Generator().manual_seed(2))
    for i, r in enumerate([occlusion(lens, x, target=[0, "c"], window=4, stride=4, layer="stem"),
                           occlusion(lens, x[:1], window=4, stride=2, mode="approximate")]):
        a = r.save(tmp_path / f"a{i}")
        back = load_result(a)
        assert type(back) is type(r) and back.window == r.window and back.ssim == r.ssim
        b = back.save(tmp_path / f"b{i}")
        ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
        for key in ("kind", "result", "view", "arrays", "tables", "info", "fields", "per_image"):
            assert ma[key] == mb[key], key
        for name, f in ma["arrays"].items():
            u, v = np.load(a / f), np.load(b / f)
            assert u.dtype == v.dtype and np.array_equal(u, v), name
        assert back.summary(["p.png"] * len(x))[0] == r.summary(["p.png"] * len(x))[0]
    assert r.summary()[0].startswith("image 0: target ") and "SSIM vs exact" in r.summary()[0]
    assert back.per_image() == [["image_0", "overlay_0", "prob_0", "top_class_0"]]
    with_layer = load_result(tmp_path / "a0")
    assert with_layer.per_image()[1][-1] == "activation_1"
    assert set(sum(with_layer.per_image(), [])) == set(with_layer.pictures())


# -- the model is left as found --------------------------------------------------------------
@pytest.mark.parametrize("mode", ["exact", "incremental", "approximate"])
def test_model_left_as_found(mode):
    lens = zoo_lens()
    lens.model.train()
    lens.model.stem[0].weight.grad = torch.ones_like(lens.model.stem[0].weight)
    for p in lens.model.head.parameters():
        p.requires_grad_(False)
    before = snapshot(lens.model)
    x = torch.randn(1, 3, 20, 20)
    occlusion(lens, x, window=5, stride=5, mode=mode, layer="stem.2")
    assert_unchanged(lens.model, before)
    with pytest.raises(ConvlensError, match="did you mean"):
        occlusion(lens, x, target="dd", window=5, stride=5, mode=mode, layer="stem")
    assert_unchanged(lens.model, before)
    assert all_hooks(lens.model) == 0


@pytest.mark.parametrize("kwargs,msg", [
    ({"window": 21}, "larger than the image"),
    ({"mode": "fast"}, "unknown occlusion mode"),
    ({"fill": "grey"}, "did you mean 'gray'"),
    ({"target": 7}, "out of range"),
    ({"layer": "stemm"}, "did you mean"),
    ({"layer": "stem", "channel": 9}, "out of range"),
    ({"mode": "approximate", "coarse_stride": 3}, "multiple of stride"),
    ({"mode": "approximate", "tau": 0}, "tau"),
    ({"stride": 0}, "positive integer"),
])
def test_user_errors(kwargs, msg):
    lens = zoo_lens()
    before = snapshot(lens.model)
    with pytest.raises(ConvlensError, match=msg):
        occlusion(lens, torch.zeros(1, 3, 20, 20), **kwargs)
    assert_unchanged(lens.model, before)


# -- a peer library --------------------------------------------------------------------------
@pytest.mark.peer
@pytest.mark.parametrize("fill,baseline", [("zero", 0.0), ("gray", None)])
def test_same_map_as_captum_occlusion(fill, baseline):
    """Captum's attribution of a pixel is the mean over the windows covering it of
    p_clean - p_occluded; rebuild that from our position map and compare."""
    attr_mod = pytest.importorskip("captum.attr")
    lens = zoo_lens()
    x = torch.randn(1, 3, 20, 20, generator=torch.Generator().manual_seed(4))
    if baseline is None:
        baseline = fill_image(lens, x, "gray", (4, 4))
    r = occlusion(lens, x, target=3, window=4, stride=2, fill=fill)
    forward = lambda inp: torch.softmax(lens.model(inp), 1)  # noqa: E731
    ours = torch.zeros(20, 20, dtype=torch.float64)
    count = torch.zeros(20, 20, dtype=torch.float64)
    for i, y in enumerate(r.pos_y):
        for j, xx in enumerate(r.pos_x):
            ours[y:y + 4, xx:xx + 4] += r.clean_prob[0].double() - r.prob[0, i, j].double()
            count[y:y + 4, xx:xx + 4] += 1
    ours /= count
    theirs = attr_mod.Occlusion(forward).attribute(
        x, sliding_window_shapes=(3, 4, 4), strides=(3, 2, 2), baselines=baseline, target=3,
        perturbations_per_eval=16)
    for c in range(3):  # one window spans all channels
        torch.testing.assert_close(theirs[0, c].double(), ours, atol=1e-6, rtol=0)


# -- command line ----------------------------------------------------------------------------
@pytest.fixture
def png(tmp_path):
    from PIL import Image
    path = tmp_path / "img.png"
    Image.fromarray((np.random.RandomState(0).rand(30, 30) * 255).astype(np.uint8)).save(path)
    return path


def test_cli_writes_maps_overlays_and_manifest(tmp_path, png, capsys):
    out = tmp_path / "occ"
    assert main(["occlusion", "--model", "builtin:tiny", "--image", str(png), "--target", "3",
                 "--window", "8", "--stride", "4", "--layer", "features.3",
                 "--out", str(out)]) == 0
    assert "target 3" in capsys.readouterr().out
    m = json.loads((out / "manifest.json").read_text())
    assert m["kind"] == "occlusion" and m["info"]["positions"] == [6, 6]
    assert m["info"]["targets"] == [3] and m["command"][0] == "convlens"
    for name in ("prob", "prob_image", "top_class", "activation"):
        assert (out / m["arrays"][name]).is_file()
    for name in ("image_0", "prob_0", "overlay_0", "top_class_0", "activation_0"):
        assert (out / m["pictures"][name]).is_file()
    assert np.load(out / m["arrays"]["prob"]).shape == (1, 6, 6)


def test_cli_approximate_prints_ssim(tmp_path, png, capsys):
    assert main(["occlusion", "--model", "builtin:tiny", "--image", str(png), "--window", "4",
                 "--stride", "2", "--mode", "approximate", "--out", str(tmp_path / "a")]) == 0
    assert "SSIM vs exact" in capsys.readouterr().out


@pytest.mark.parametrize("args,msg", [
    (["--target", "cat"], "unknown class 'cat'"),
    (["--fill", "purple"], "unknown fill"),
    (["--image", "/no/such.png"], "cannot read"),
])
def test_cli_user_errors_are_one_line(tmp_path, png, capsys, args, msg):
    base = ["occlusion", "--model", "builtin:tiny", "--image", str(png), "--out", str(tmp_path)]
    if args[0] == "--image":
        base = base[:3] + base[5:]
    assert main(base + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("convlens: error:") and msg in err and len(err.strip().splitlines()) == 1


def test_engine_failure_costs_speed_not_the_answer(monkeypatch):
    from convlens.incremental import IncrementalEngine

    def broken(self, *a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(IncrementalEngine, "run", broken)
    lens = zoo_lens()
    x = torch.randn(1, 3, 20, 20)
    with pytest.warns(UserWarning, match="engine failed: RuntimeError: boom"):
        r = occlusion(lens, x, target=1, window=5, stride=5)
    prob, _, _, _ = literal(lens.model, x, torch.zeros_like(x), (5, 5), (5, 5), 1)
    torch.testing.assert_close(r.prob[0], prob, atol=1e-6, rtol=0)
    assert r.stats["engine"] == "exact" and r.stats["forwards"] == 16
