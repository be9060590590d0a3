"""Receptive fields: published values, and the support of the gradient as a literal reference."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convlens import Lens
from convlens.receptive import Field, field_at, union


def lens_of(model, size):
    return Lens(model, mean=(0.0,) * size[0], std=(1.0,) * size[0], input_size=size)


def fields(lens):
    return {i.name: i for i in lens.layers()}


@pytest.mark.parametrize("arch,layer,size,stride", [
    ("alexnet", "features.10", 163, 16),   # conv5
    ("alexnet", "features.12", 195, 32),   # pool5
    pytest.param("vgg16", "features.29", 196, 16, marks=pytest.mark.slow),  # conv5_3 ReLU
    pytest.param("vgg16", "features.30", 212, 32, marks=pytest.mark.slow),  # pool5
    pytest.param("resnet18", "layer4", 435, 32,  # residual: largest field over the paths
                 marks=pytest.mark.slow),
])
def test_known_fields(arch, layer, size, stride):
    import torchvision
    lens = lens_of(torchvision.models.get_model(arch, weights=None), (3, 224, 224))
    f = fields(lens)[layer].field
    assert f.size == (size, size) and f.stride == (stride, stride)


class Branchy(nn.Module):
    """Strided and dilated convs, avg pooling, F.pad, functional ReLU and a residual add."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3, stride=2, padding=1)
        self.b = nn.Conv2d(2, 2, 3, dilation=2, padding=2)
        self.pool = nn.AvgPool2d(2)
        self.c = nn.Conv2d(2, 2, (3, 5), padding=(1, 2))
        self.skip = nn.Conv2d(2, 2, 1, stride=2)
        self.head = nn.Conv2d(2, 1, 1)
        for p in self.parameters():   # positive weights: no cancellation in the gradient
            nn.init.uniform_(p, 0.1, 1.0)

    def forward(self, x):
        h = F.relu(self.a(x))
        h = self.b(F.pad(h, (0, 0, 0, 0)))
        main = self.c(self.pool(h))
        return self.head(main + self.skip(h))


def support(model, x, y, xx):
    """Box (x0, y0, x1, y1), end exclusive, of input pixels that output (y, xx) depends on."""
    x = x.clone().requires_grad_(True)
    out = model(x)
    (g,) = torch.autograd.grad(out[0, 0, y, xx], x)
    nz = g[0].abs().sum(0).nonzero()
    return (nz[:, 1].min().item(), nz[:, 0].min().item(),
            nz[:, 1].max().item() + 1, nz[:, 0].max().item() + 1)


@pytest.mark.parametrize("pos", [(3, 3), (4, 5), (0, 0), (7, 7)])
def test_field_is_gradient_support(pos):
    torch.manual_seed(0)
    net = Branchy()
    lens = lens_of(net, (1, 64, 64))
    f = fields(lens)["head"].field
    x = torch.rand(1, 1, 64, 64) + 0.1   # positive input keeps every ReLU open
    assert field_at(f, (16, 16), *pos, (64, 64)) == support(net, x, *pos)


def test_union_of_branches():
    a = Field((5, 5), (2, 2), (0.0, 0.0))
    b = Field((3, 3), (2, 2), (2.0, 2.0))
    u = union([a, b])
    assert u.size == (6, 6) and u.center == (0.5, 0.5)
    assert union([a, Field((3, 3), (4, 4), (0.0, 0.0))]) is None


def test_unknown_op_gives_unknown_field_not_a_wrong_one():
    class Up(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3)
            self.after = nn.Conv2d(1, 1, 3)

        def forward(self, x):
            return self.after(F.interpolate(self.conv(x), scale_factor=2.0))

    from convlens.receptive import dry_run
    lens = lens_of(Up(), (1, 16, 16))
    arithmetic = dry_run(lens.model, lens.example_input(2), ["conv", "after"])
    assert arithmetic["conv"][1].size == (3, 3) and arithmetic["after"][1] is None
    info = fields(lens)  # the table fills the unknown field from input gradients
    assert info["conv"].field.source == "structure"
    assert info["after"].field.source == "gradient" and info["after"].field.envelope
    assert info["after"].shape == (1, 26, 26)


def test_global_after_flatten_and_shapes():
    from convlens.models import load_model
    info = fields(load_model("builtin:tiny"))
    assert info["features.5"].shape == (8, 7, 7)
    assert info["features.5"].field.size == (10, 10)
    assert info["classifier.1"].field.is_global and info["classifier.1"].shape == (32,)


def test_layers_dry_run_leaves_model_alone():
    from conftest import assert_unchanged, snapshot
    from convlens.models import load_model
    lens = load_model("builtin:tiny")
    lens.train()
    before = snapshot(lens)
    lens.layers()
    assert_unchanged(lens, before)


class SqueezeExcite(nn.Module):
    """conv 3x3 -> a squeeze-excitation gate (global pool, 1x1 convs, sigmoid, multiply) ->
    conv 3x3 stride 2: the local field of `c2` is 3 + 2 = 5 with stride 2 (by hand), and it
    depends on the whole image through the gate."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(4, 4, 1)
        self.c2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)

    def forward(self, x):
        h = self.c1(x)
        return self.c2(torch.sigmoid(self.fc(self.pool(h))) * h)


def test_squeeze_excitation_keeps_the_local_field_and_marks_the_global_context():
    info = fields(lens_of(SqueezeExcite(), (3, 32, 32)))
    assert info["c1"].field == Field((3, 3), (1, 1), (0.0, 0.0))
    assert info["pool"].field.is_global and info["fc"].field.is_global
    f = info["c2"].field
    assert (f.size, f.stride, f.center) == ((5, 5), (2, 2), (0.0, 0.0))
    assert f.global_context and not f.is_global and f.whole_image
    assert f.label() == "5 (+global)" and info["fc"].field.label() == "global"


def test_group_norm_statistics_are_a_global_context():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4), nn.Conv2d(4, 4, 3))
    info = fields(lens_of(net, (1, 16, 16)))
    assert not info["0"].field.global_context
    assert info["1"].field.global_context and info["2"].field.size == (5, 5)
    assert info["2"].field.global_context
