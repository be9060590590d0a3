"""The CAM family (issue 25): each method's map worked out by hand on a two-channel net, the
model left as found (also after errors), batches, Ablation-CAM's cut network against its hook
fallback, results that load back, the command line."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import _get_current_function_mode_stack

from conftest import all_hooks, assert_loads_back, assert_unchanged, snapshot
from convlens import ConvlensError, Lens
from convlens.cli import main
from convlens.techniques.cams import perturb
from convlens.techniques.cams.gradcams import grad_cam_plus_plus, hires_cam, layer_cam, xgrad_cam
from convlens.techniques.cams.perturb import ablation_cam, eigen_cam, score_cam
from convlens.techniques.cams.results import CamMaps

pytestmark = pytest.mark.usefixtures("one_thread")

METHODS = {"grad_cam_plus_plus": grad_cam_plus_plus, "xgrad_cam": xgrad_cam,
           "hires_cam": hires_cam, "layer_cam": layer_cam, "score_cam": score_cam,
           "ablation_cam": ablation_cam, "eigen_cam": eigen_cam}


class TwoChannel(nn.Module):
    """conv 1x1 (1 -> 2): ``A^1 = x``, ``A^2 = 5 - x``, ReLU (named ``act``), then one score
    ``S = sum_ij U1_ij A^1_ij + U2_ij A^2_ij``, so ``dS/dA^k = U^k`` everywhere.

    On ``x = [[1, 2], [3, 4]]``: ``A^1 = [[1, 2], [3, 4]]``, ``A^2 = [[4, 3], [2, 1]]`` (both
    positive: the ReLU is the identity), ``U1 = [[1, 1], [0, 1]]``, ``U2 = [[0, -1], [1, 0]]``,
    ``S = 7 + (-1) = 6``.
    """

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)
        self.act = nn.ReLU()
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor([0.0, 5.0]))
        self.register_buffer("u", torch.tensor([[[1.0, 1.0], [0.0, 1.0]],
                                                [[0.0, -1.0], [1.0, 0.0]]]))

    def forward(self, x):
        a = self.act(self.conv(x))
        return (a * self.u).sum((1, 2, 3))[:, None]


X1 = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
A1 = X1[0, 0]
A2 = 5 - A1


def two_channel() -> Lens:
    return Lens(TwoChannel().eval(), mean=(0.0,), std=(1.0,), input_size=(1, 2, 2),
                labels=["score"])


def _score_cam_by_hand() -> torch.Tensor:
    # H^k = min-max of A^k (the layer is at the input's size: no upsampling):
    # H1 = [[0, 1/3], [2/3, 1]], H2 = [[1, 2/3], [1/3, 0]]. On a masked x' the net gives
    # S(x') = sum (U1 - U2) x' + 5 sum U2 = sum [[1, 2], [-1, 1]] x' (sum U2 = 0):
    # x * H1 = [[0, 2/3], [2, 4]] -> 10/3; x * H2 = [[1, 4/3], [1, 0]] -> 8/3.
    w1 = 1 / (1 + math.exp(-2 / 3))  # softmax of (10/3, 8/3)
    return F.relu(w1 * A1 + (1 - w1) * A2)


BY_HAND = {
    # alpha = g^2 / (2 g^2 + sum(A) g^3), sum(A^1) = sum(A^2) = 10: 1/12 where g = 1 (and the
    # g = -1 of U2 has ReLU(g) = 0): w1 = 3/12, w2 = 1/12
    "grad_cam_plus_plus": torch.tensor([[7 / 12, 9 / 12], [11 / 12, 13 / 12]]),
    # w1 = sum(A^1 U1) / sum(A^1) = 7/10, w2 = -1/10: ReLU(0.7 A^1 - 0.1 A^2)
    "xgrad_cam": torch.tensor([[0.3, 1.1], [1.9, 2.7]]),
    # U1 A^1 + U2 A^2 = [[1, 2], [0, 4]] + [[0, -3], [2, 0]], through a ReLU
    "hires_cam": torch.tensor([[1.0, 0.0], [2.0, 4.0]]),
    # ReLU(U1) A^1 + ReLU(U2) A^2 = [[1, 2], [0, 4]] + [[0, 0], [2, 0]]
    "layer_cam": torch.tensor([[1.0, 2.0], [2.0, 4.0]]),
    "score_cam": _score_cam_by_hand(),
    # S = 6; without A^1: -1, without A^2: 7 -> w = (7/6, -1/6)
    "ablation_cam": torch.tensor([[1 / 2, 11 / 6], [19 / 6, 27 / 6]]),
    # O = rows (1, 4), (2, 3), (3, 2), (4, 1): O^T O = [[30, 20], [20, 30]], V_1 = (1, 1)/sqrt 2,
    # O V_1 = 5 / sqrt 2 at every position
    "eigen_cam": torch.full((2, 2), 5 / math.sqrt(2)),
}


@pytest.mark.parametrize("method", METHODS)
def test_closed_form_on_the_two_channel_net(method):
    lens = two_channel()
    r = METHODS[method](lens, X1, target=0, layer="act")
    assert isinstance(r, CamMaps) and r.kind == method
    assert torch.allclose(r.cam[0].double(), BY_HAND[method].double(), atol=1e-6), r.cam
    assert torch.equal(r.map, r.cam)  # the layer is at the input's size
    assert r.targets == ["class 0 (score)"] and float(r.scores[0]) == 6.0


# -- a small net with an in-place ReLU, pooling and a classifier ---------------------------
class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.act1 = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.act2 = nn.ReLU(inplace=True)
        self.fc = nn.Linear(6 * 4 * 4, 3)

    def forward(self, x):
        a = self.act2(self.conv2(self.pool(self.act1(self.conv1(x)))))
        return self.fc(torch.flatten(a, 1))


def small() -> Lens:
    torch.manual_seed(0)
    return Lens(Small().eval(), mean=(0.0,), std=(1.0,), input_size=(3, 8, 8),
                labels=["a", "b", "c"])


X = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("method", METHODS)
def test_model_left_as_found(method):
    lens = small()
    net = lens.model
    net.train()
    net.fc.weight.requires_grad_(False)
    net.conv1.weight.grad = torch.ones_like(net.conv1.weight)
    before = snapshot(net)
    r = METHODS[method](lens, X, target="auto")
    assert r.cam.shape == (3, 4, 4) and r.map.shape == (3, 8, 8) and torch.isfinite(r.map).all()
    assert r.params["layer"] == "act2"  # Grad-CAM's default layer
    assert_unchanged(net, before)
    for bad, msg in [(7, "out of range"), ("conv9:0", "unknown layer"),
                     ("conv2:99", "channel 99"), ("c9", "unknown target")]:
        with pytest.raises(ConvlensError, match=msg):
            METHODS[method](lens, X, target=bad)
        assert_unchanged(net, before)
        assert all_hooks(net) == 0 and _get_current_function_mode_stack() == []
    with pytest.raises(ConvlensError, match="spatial maps"):
        METHODS[method](lens, X, layer="fc")
    assert_unchanged(net, before)


@pytest.mark.parametrize("method", METHODS)
def test_batch_equals_one_image_at_a_time_and_unit_targets(method):
    lens = small()
    fn = METHODS[method]
    both = fn(lens, X, target=[0, 2, 1])
    for i, t in enumerate([0, 2, 1]):
        one = fn(lens, X[i:i + 1], target=t)
        assert torch.allclose(both.cam[i], one.cam[0], atol=1e-5 * float(one.cam.max()) + 1e-7)
    u = fn(lens, X, target="conv2:1", layer="act1")  # a unit after the layer
    assert u.targets[0].startswith("unit conv2:1 at") and (u.classes == -1).all()


def test_batch_size_does_not_change_score_or_ablation_cam():
    lens = small()
    for fn in (score_cam, ablation_cam):
        a, b = fn(lens, X, batch_size=1), fn(lens, X, batch_size=100)
        assert torch.allclose(a.cam, b.cam, atol=1e-6) and a.params["batch_size"] == 1
    with pytest.raises(ConvlensError, match="batch_size"):
        score_cam(lens, X, batch_size=0)


def test_ablation_cut_network_equals_hook_fallback(monkeypatch):
    lens = small()
    cut = ablation_cam(lens, X, target=[0, 1, 2])
    assert "network after act2 only" in cut.notes[0]
    monkeypatch.setattr(perturb.Suffix, "build", classmethod(lambda cls, lens, layer:
                                                             (None, "switched off")))
    hook = ablation_cam(lens, X, target=[0, 1, 2])
    assert "fallback: switched off" in hook.notes[0]
    assert torch.allclose(cut.cam, hook.cam, atol=1e-6)
    # by hand from the definition: zero each channel of act2, rerun the head
    net = lens.model
    with torch.no_grad():
        a = net.act2(net.conv2(net.pool(net.act1(net.conv1(X.clone())))))
        y = net.fc(a.flatten(1))[[0, 1, 2], [0, 1, 2]]
        w = torch.stack([(y - net.fc(a.masked_fill(
            (torch.arange(6) == k)[None, :, None, None], 0).flatten(1))[[0, 1, 2], [0, 1, 2]]) / y
            for k in range(6)], 1)
    assert torch.allclose(cut.cam, F.relu((w[:, :, None, None] * a).sum(1)), atol=1e-6)


@pytest.mark.slow
def test_residual_cut_reads_the_branch_from_before_the_layer(monkeypatch):
    """A layer inside a residual block: the cut network also needs the skip branch, computed
    before the layer, which the prefix gives once per image."""
    import torchvision

    torch.manual_seed(0)
    lens = Lens(torchvision.models.resnet18(num_classes=5).eval(), (0.0,), (1.0,), (3, 32, 32))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    cut = ablation_cam(lens, x, layer="layer2.0.conv2", target=1, batch_size=128)
    assert "only (torch.fx cut)" in cut.notes[0] and cut.cam.shape == (2, 4, 4)
    monkeypatch.setattr(perturb.Suffix, "build", classmethod(lambda cls, lens, layer:
                                                             (None, "switched off")))
    hook = ablation_cam(lens, x, layer="layer2.0.conv2", target=1, batch_size=128)
    assert torch.allclose(cut.cam, hook.cam, rtol=1e-4, atol=1e-5 * float(hook.cam.max()))


def test_eigen_cam_ignores_the_target_and_says_so():
    lens = small()
    a, b = eigen_cam(lens, X, target=0), eigen_cam(lens, X, target=2)
    assert torch.equal(a.cam, b.cam) and "does not depend on the target" in a.notes[0]


@pytest.mark.parametrize("method", ["grad_cam_plus_plus", "ablation_cam"])
def test_cam_maps_load_back(method, tmp_path):
    r = METHODS[method](small(), X)
    back = assert_loads_back(r, tmp_path)
    assert isinstance(back, CamMaps) and back.about == r.about and back.units == r.units
    assert r.about.startswith({"grad_cam_plus_plus": "Grad-CAM++",
                               "ablation_cam": "Ablation-CAM"}[method])


def test_cli_score_cam_and_ablation_cam(tmp_path, capsys):
    import json

    from PIL import Image

    from convlens.data import shapes
    png = tmp_path / "star.png"
    Image.fromarray(shapes.render(shapes.TEST_SEED, 3).image).save(png)
    extra = {"ablation-cam": ["--batch-size", "16"], "score-cam": ["--max-channels", "8"],
             "grad-cam-plus-plus": []}
    for cmd in extra:
        out = tmp_path / cmd
        assert main([cmd, "--model", "builtin:shapes-net", "--image", str(png),
                     "--target", "star", "--out", str(out)] + extra[cmd]) == 0
        m = json.loads((out / "manifest.json").read_text())
        assert m["kind"] == cmd.replace("-", "_") and (out / "overlay_0.png").is_file()
        if cmd == "score-cam":
            assert m["info"]["params"]["max_channels"] == 8
    assert "class 3 (star)" in capsys.readouterr().out
    assert main(["score-cam", "--model", "builtin:shapes-net", "--image", str(png),
                 "--batch-size", "0", "--out", str(tmp_path / "x")]) == 2
    assert "error: argument --batch-size: expected a positive integer" in capsys.readouterr().err


def test_score_cam_dead_channel_scores_the_black_image():
    """A constant channel masks the image to 0 (its score, f_c(0), is computed once): the
    map equals Score-CAM written out channel by channel."""
    lens = small()
    net = lens.model
    with torch.no_grad():
        net.conv2.bias[0] = -100.0  # channel 0 of act2: dead everywhere
    r = score_cam(lens, X, target=[0, 1, 2], batch_size=5)
    with torch.no_grad():
        a = net.act2(net.conv2(net.pool(net.act1(net.conv1(X.clone())))))
        assert (a[:, 0] == 0).all()
        w = torch.zeros(3, 6)
        for i in range(3):
            for k in range(6):
                m = F.interpolate(a[i, k][None, None], size=(8, 8), mode="bilinear",
                                  align_corners=False)
                span = m.max() - m.min()
                m = (m - m.min()) / span if span > 0 else torch.zeros_like(m)
                w[i, k] = net(X[i:i + 1] * m)[0, i]
        w = w.double().softmax(1).float()
    assert torch.allclose(r.cam, F.relu((w[:, :, None, None] * a).sum(1)), atol=1e-6)


class ViewsItsMap(Small):
    """`Small` with a ``.view`` of its feature map: it refuses channels-last input."""

    def forward(self, x):
        a = self.act2(self.conv2(self.pool(self.act1(self.conv1(x)))))
        return self.fc(a.view(len(a), -1))


def test_score_cam_runs_channels_last_and_falls_back_where_the_model_refuses():
    lens = small()
    r = score_cam(lens, X, target=[0, 1, 2], batch_size=2)
    assert r.notes == []  # channels-last went through
    torch.manual_seed(0)
    refusing = Lens(ViewsItsMap().eval(), mean=(0.0,), std=(1.0,), input_size=(3, 8, 8))
    refusing.model.load_state_dict(lens.model.state_dict())
    with pytest.raises(RuntimeError, match="view"):
        refusing.model(X.contiguous(memory_format=torch.channels_last))
    got = score_cam(refusing, X, target=[0, 1, 2], batch_size=2)
    assert len(got.notes) == 1 and "default memory layout" in got.notes[0]
    assert torch.allclose(got.cam, r.cam, rtol=1e-5, atol=1e-6)
    assert all_hooks(refusing.model) == 0


class _Laid(nn.Module):
    """A ReLU whose maps come out in another layout: ``(N, h, w, C)`` (a Swin block's) or
    ``(N, 1 + h*w, C)`` tokens after a class token (a ViT's)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, a):
        a = F.relu(a)
        if self.kind == "channels_last":
            return a.permute(0, 2, 3, 1)
        t = a.flatten(2).transpose(1, 2)
        return torch.cat([torch.full_like(t[:, :1], 7.0), t], 1)


class LaidOut(Small):
    """`Small` with act2's maps in another layout, put back before the classifier."""

    def __init__(self, kind: str):
        super().__init__()
        self.act2 = _Laid(kind)

    def forward(self, x):
        a = self.act2(self.conv2(self.pool(self.act1(self.conv1(x)))))
        if self.act2.kind == "channels_last":
            a = a.permute(0, 3, 1, 2)
        else:
            a = a[:, 1:].transpose(1, 2).reshape(a.shape[0], -1, 4, 4)
        return self.fc(torch.flatten(a, 1))


@pytest.mark.parametrize("kind", ["channels_last", "tokens"])
def test_ablation_cam_on_channels_last_and_token_layers(kind, monkeypatch):
    """Channel k is ablated in the layer's own layout (a class token kept): the same map as on
    the conv-layout net with the same weights, by the cut network and by the hook fallback."""
    lens = small()
    want = ablation_cam(lens, X, target=[0, 1, 2], layer="act2")
    torch.manual_seed(0)
    laid = Lens(LaidOut(kind).eval(), mean=(0.0,), std=(1.0,), input_size=(3, 8, 8))
    laid.model.load_state_dict(lens.model.state_dict())
    got = ablation_cam(laid, X, target=[0, 1, 2], layer="act2")
    assert "network after act2 only" in got.notes[0]
    assert torch.allclose(got.cam, want.cam, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(perturb.Suffix, "build", classmethod(lambda cls, lens, layer:
                                                             (None, "switched off")))
    hook = ablation_cam(laid, X, target=[0, 1, 2], layer="act2")
    assert "fallback: switched off" in hook.notes[0]
    assert torch.allclose(hook.cam, want.cam, rtol=1e-5, atol=1e-6)
    assert all_hooks(laid.model) == 0


def test_faster_score_cam_keeps_each_images_most_varying_channels():
    lens = small()
    full = score_cam(lens, X, target=[0, 1, 2])
    assert torch.allclose(score_cam(lens, X, target=[0, 1, 2], max_channels=6).cam, full.cam,
                          atol=1e-6)
    fast = score_cam(lens, X, target=[0, 1, 2], max_channels=2, batch_size=3)
    assert fast.params["max_channels"] == 2 and "Faster-Score-CAM" in fast.notes[-1]
    net = lens.model
    with torch.no_grad():  # by hand: softmax over the two channels of largest std
        a = net.act2(net.conv2(net.pool(net.act1(net.conv1(X.clone())))))
        want = []
        for i in range(3):
            top = a[i].flatten(1).std(1, correction=0).topk(2).indices
            s = []
            for k in top.tolist():
                m = F.interpolate(a[i, k][None, None], size=(8, 8), mode="bilinear",
                                  align_corners=False)
                m = (m - m.min()) / (m.max() - m.min())
                s.append(net(X[i:i + 1] * m)[0, i])
            w = torch.stack(s).double().softmax(0).float()
            want.append(F.relu((w[:, None, None] * a[i, top]).sum(0)))
    assert torch.allclose(fast.cam, torch.stack(want), atol=1e-6)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConvlensError, match="max_channels"):
            score_cam(lens, X, max_channels=bad)
