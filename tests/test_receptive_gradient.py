"""Receptive fields from the support of input gradients (issue 24): closed forms on small
hand-built nets, the local field and the global context, the model left as found, the table."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import assert_unchanged, snapshot
from convlens import Lens
from convlens.lens import format_layers
from convlens.receptive import Field, field_at, gradient_fields
from convlens.receptive.gradient import WORK


def lens_of(model, size):
    return Lens(model, mean=(0.0,) * size[0], std=(1.0,) * size[0], input_size=size)


def by_name(lens):
    return {i.name: i for i in lens.layers()}


def measured(model, size, names):
    return gradient_fields(model, torch.zeros(1, *size), names)


def local(f: Field):
    return (f.size, f.stride, f.center)


class Stack(nn.Module):
    """conv 3x3 pad 1 -> ReLU -> max pool 2 -> conv 3x3 pad 1 -> conv 3x3 stride 2 (valid).

    By hand: c1 (3, 1, 0); pool (4, 2, 0.5); c2 (4 + 2*2 = 8, 2, 0.5); c3 (8 + 2*2 = 12, 4,
    0.5 + 1*2 = 2.5). The real network is built so its own gradient would say little: every
    ReLU is off (bias -100), c2's weights are zero, and the max pooling passes one element.
    """

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 2, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.c2 = nn.Conv2d(2, 2, 3, padding=1)
        self.c3 = nn.Conv2d(2, 2, 3, stride=2)
        with torch.no_grad():
            self.c1.bias.fill_(-100.0)
            self.c2.weight.zero_()

    def forward(self, x):
        return self.c3(self.c2(self.pool(self.act(self.c1(x)))))


def test_closed_form_of_a_stack_where_the_real_gradient_vanishes():
    fields = measured(Stack(), (1, 32, 32), ["c1", "act", "pool", "c2", "c3"])
    assert local(fields["c1"]) == ((3, 3), (1, 1), (0.0, 0.0))
    assert local(fields["act"]) == local(fields["c1"])
    assert local(fields["pool"]) == ((4, 4), (2, 2), (0.5, 0.5))
    assert local(fields["c2"]) == ((8, 8), (2, 2), (0.5, 0.5))
    assert local(fields["c3"]) == ((12, 12), (4, 4), (2.5, 2.5))
    for f in fields.values():
        assert f.source == "gradient" and not (f.clipped or f.envelope or f.whole_image)


def test_the_gradient_equals_the_arithmetic_on_a_residual_net():
    from test_receptive import Branchy
    lens = lens_of(Branchy(), (1, 64, 64))
    infos = by_name(lens)
    names = [n for n, i in infos.items() if i.grid is not None]
    fields = measured(lens.model, (1, 64, 64), names)
    assert set(fields) == set(names) and len(names) == 6
    for n in names:
        assert local(fields[n]) == local(infos[n].field), n


class SqueezeExcite(nn.Module):
    """conv 3x3 pad 1 -> a squeeze-excitation gate (mean over the image, 1x1 conv, sigmoid,
    multiply) -> conv 3x3 stride 2 pad 1: by hand the local field of `c2` is 5 with stride 2
    and centre 0, and it depends on the whole image through the gate."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Conv2d(4, 4, 1)
        self.c2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)

    def forward(self, x):
        h = self.c1(x)
        return self.c2(h * torch.sigmoid(self.fc(h.mean((2, 3), keepdim=True))))


def test_squeeze_excitation_local_field_and_global_flag():
    fields = measured(SqueezeExcite(), (3, 32, 32), ["c1", "fc", "c2"])
    assert local(fields["c2"]) == ((5, 5), (2, 2), (0.0, 0.0))
    assert fields["c2"].global_context and not fields["c2"].is_global
    assert not fields["c1"].whole_image
    assert fields["fc"].is_global  # the gate itself: no local field
    structural = by_name(lens_of(SqueezeExcite(), (3, 32, 32)))["c2"].field
    assert local(structural) == local(fields["c2"]) and structural.global_context


class Permute(nn.Module):
    def __init__(self, *dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.permute(*self.dims)


class ConvNeXtish(nn.Module):
    """A 4x4 stride-4 stem, then one ConvNeXt block: depthwise 7x7 conv, to channels-last,
    LayerNorm, Linear, GELU, Linear, back, plus the block's input. By hand: stem (4, 4, 1.5);
    the block (4 + 6*4 = 28, 4, 1.5) on every layer after the depthwise conv."""

    def __init__(self, c=8):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 4, stride=4)
        self.block = nn.Sequential(nn.Conv2d(c, c, 7, padding=3, groups=c), Permute(0, 2, 3, 1),
                                   nn.LayerNorm(c), nn.Linear(c, 4 * c), nn.GELU(),
                                   nn.Linear(4 * c, c), Permute(0, 3, 1, 2))
        self.head = nn.Linear(c, 2)

    def forward(self, x):
        h = self.stem(x)
        h = h + self.block(h)
        return self.head(h.mean((2, 3)))


def test_channels_last_block_gets_its_field_from_gradients():
    lens = lens_of(ConvNeXtish(), (3, 64, 64))
    infos = by_name(lens)
    assert local(infos["stem"].field) == ((4, 4), (4, 4), (1.5, 1.5))
    assert infos["stem"].field.source == "structure"
    for n in ("block.1", "block.2", "block.3", "block.4", "block.5", "block.6", "block"):
        f = infos[n].field
        assert f is not None and f.source == "gradient", n
        assert local(f) == ((28, 28), (4, 4), (1.5, 1.5)), n
        assert not f.whole_image
    assert infos["head"].field.is_global  # a vector of the map: the whole image
    assert "?" not in format_layers(list(infos.values()))


class TinyViT(nn.Module):
    """8x8 patches, a class token, one encoder block (global attention, MLP), on 32x32 input:
    4x4 patch tokens. By hand: a token's local field is its patch (8, 8, 3.5); after attention
    it also depends on the whole image; attention's own output has no local field."""

    def __init__(self, d=16):
        super().__init__()
        self.patch = nn.Conv2d(3, d, 8, stride=8)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.zeros(1, 17, d))
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], 1) + self.pos
        y = self.ln1(t)
        t = t + self.attn(y, y, y, need_weights=False)[0]
        t = t + self.mlp(self.ln2(t))
        return self.head(t[:, 0])


def test_vit_tokens_local_patch_plus_global_context():
    lens = lens_of(TinyViT(), (3, 32, 32))
    infos = by_name(lens)
    assert infos["ln1"].grid == (16, 4, 4)
    f = infos["ln1"].field
    assert local(f) == ((8, 8), (8, 8), (3.5, 3.5)) and not f.whole_image
    assert infos["attn"].field.is_global
    for n in ("ln2", "mlp.0", "mlp.1", "mlp"):
        f = infos[n].field
        assert local(f) == ((8, 8), (8, 8), (3.5, 3.5)) and f.global_context, n
        assert f.label() == "8 (+global)"


def test_gradient_fields_are_found_only_where_asked():
    """Shapes alone (`fields=False`: default layers, codes) cost no gradient pass; a list of
    names finds those fields only; what was found is kept."""
    lens = lens_of(TinyViT(), (3, 32, 32))
    infos = {i.name: i for i in lens.layers(fields=False)}
    assert infos["ln1"].grid == (16, 4, 4) and infos["ln1"].field is None
    assert infos["patch"].field.size == (8, 8)  # the arithmetic's answer costs nothing
    assert lens._fields == {}
    infos = {i.name: i for i in lens.layers(fields=["ln2"])}
    assert set(lens._fields) == {"ln2"} and infos["ln2"].field.global_context
    assert infos["ln1"].field is None
    assert by_name(lens)["ln1"].field.size == (8, 8)
    assert {"ln1", "ln2", "mlp.0"} <= set(lens._fields)


class Upsampled(nn.Module):
    """conv 3x3 stride 2 pad 1 (cell j sees [2j-1, 2j+1]), then nearest upsampling x2: cells 2k
    and 2k+1 see the same window, so no one window shifts by a stride. The envelope, by hand:
    stride 1 (the grid's spacing), centre i (32 cells placed symmetrically on 32 pixels), and
    the smallest box centred there that holds [i-1, i+1] (even i) and [i-2, i] (odd i): 5."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(1, 1, 3, stride=2, padding=1)
        self.up = nn.Upsample(scale_factor=2)

    def forward(self, x):
        return self.up(self.down(x))


def test_cells_that_see_different_windows_get_an_envelope():
    f = by_name(lens_of(Upsampled(), (1, 32, 32)))["up"].field
    assert local(f) == ((5, 5), (1, 1), (0.0, 0.0))
    assert f.envelope and not f.clipped and f.label() == "<=5"


def test_a_field_wider_than_any_input_tried_is_reported_clipped():
    """Nine 3x3 convs on a 16x16 input: a field of 19 pixels. Measured at the model's size
    only, no cell has an edge inside the image on both ends: the size is a lower bound."""
    net = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1) for _ in range(9)])
    f = gradient_fields(net, torch.zeros(1, 1, 8, 8), ["8"], scales=(1,))["8"]
    assert f.clipped and f.size[0] <= 19 and f.label().startswith(">=")
    full = gradient_fields(net, torch.zeros(1, 1, 8, 8), ["8"])["8"]  # 16 and 32 px tried
    assert local(full) == ((19, 19), (1, 1), (0.0, 0.0)) and not full.clipped


def test_model_left_as_found():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3))
    net.train()
    net(torch.rand(2, 3, 16, 16)).sum().backward()  # grads and batch-norm statistics to keep
    before = snapshot(net)
    fields = gradient_fields(net, torch.zeros(1, 3, 16, 16), ["0", "1", "2", "3"])
    assert local(fields["3"]) == ((5, 5), (1, 1), (2.0, 2.0))
    assert_unchanged(net, before)
    assert net.training and torch.get_num_threads() >= 1


def test_the_table_leaves_a_transformer_as_found():
    lens = lens_of(TinyViT(), (3, 32, 32))
    lens.train()
    lens(torch.rand(2, 3, 32, 32)).sum().backward()
    before = snapshot(lens)
    assert by_name(lens)["mlp"].field.source == "gradient"
    assert_unchanged(lens, before)


def test_table_shows_global_context_and_bounds():
    lens = lens_of(SqueezeExcite(), (3, 32, 32))
    text = format_layers(lens.layers())
    assert "5 (+global)" in text and "global" in text
    row = by_name(lens)["c2"].row()
    assert row["rf_size"] == 5 and row["rf_global"] is True and row["rf_bound"] is None
    assert row["rf_source"] == "structure"


@pytest.mark.parametrize("pos", [(0, 0), (3, 5), (7, 7)])
def test_support_box_equals_the_real_gradient_where_nothing_is_cut(pos):
    """Where the real network cuts no path (positive weights and input), its own gradient's
    support is the field's box clipped to the image."""
    from test_receptive import Branchy, support
    torch.manual_seed(0)
    net = Branchy()
    f = measured(net, (1, 64, 64), ["head"])["head"]
    x = torch.rand(1, 1, 64, 64) + 0.1
    assert field_at(f, (16, 16), *pos, (64, 64)) == support(net, x, *pos)


def test_functional_relu_and_max_pool_do_not_cut_paths():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 1, 3)
            self.out = nn.Identity()

        def forward(self, x):
            return self.out(F.max_pool2d(F.relu(self.c(x) - 1e6), 3, 2))

    f = measured(Functional(), (1, 33, 33), ["out"])["out"]
    assert local(f) == ((5, 5), (2, 2), (2.0, 2.0))


# Acceptance 2 of issue 24: on the torchvision zoo (random weights, small inputs), every layer
# with a map of the image has a field, and the gradient's equals the arithmetic's wherever
# both answer. A field wider than the inputs the gradient may try (the model's size and up to
# four times it, within `gradient.WORK`) is reported clipped: there the gradient's size is a
# lower bound of the arithmetic's, and the two are compared no further.
ZOO = [("resnet18", 64), ("vgg11", 64), ("alexnet", 64), ("densenet121", 64),
       ("googlenet", 64), ("inception_v3", 96), ("mobilenet_v2", 64), ("squeezenet1_0", 64),
       ("shufflenet_v2_x0_5", 64), ("efficientnet_b0", 64), ("regnet_y_400mf", 64),
       ("convnext_tiny", 64), ("mnasnet0_5", 64), ("mobilenet_v3_small", 64), ("swin_t", 64),
       ("vit_b_16", 224)]


@pytest.mark.slow
@pytest.mark.parametrize("arch,side", ZOO, ids=[a for a, _ in ZOO])
def test_zoo_gradient_equals_structure(arch, side):
    import warnings

    from convlens import load_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torchvision's init notices
        lens = load_model(f"torchvision:{arch}", input_size=(3, side, side))
    ran = [i for i in lens.layers() if i.shape is not None and i.per_image]
    assert all(i.field is not None for i in ran), [i.name for i in ran if i.field is None]
    maps = [i for i in ran if i.grid]
    structural = {i.name: i.field for i in maps if i.field.source == "structure"}
    got = gradient_fields(lens.model, lens.example_input(1), list(structural), work=8 * WORK)
    compared = clipped = 0
    for name, s in structural.items():
        g = got[name]
        assert g.is_global == s.is_global, name
        if s.is_global:
            continue
        assert g.global_context == s.global_context, name
        if g.clipped:
            assert g.size[0] <= s.size[0] and g.size[1] <= s.size[1], (name, g, s)
            clipped += 1
            continue
        assert local(g) == local(s) and not g.envelope, (name, g, s)
        compared += 1
    assert compared > 0
    print(f"{arch} at {side} px: {len(maps)} maps, {len(structural)} with an arithmetic field, "
          f"{compared} equal, {clipped} clipped by the input")


def test_correspondence_places_tokens_and_channels_last_cells_by_their_local_field():
    from convlens import RunSettings
    from convlens.techniques.correspondence.correspondence import correspondence
    quiet = RunSettings(progress=False)
    for model, size, layer, rf in ((TinyViT(), 32, "ln2", 8), (ConvNeXtish(), 64, "block", 28)):
        lens = Lens(model, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(3, size, size))
        res = correspondence(lens, "warp", [layer], data="builtin:shapes:test:4", n=2,
                             baselines=(), examples=0, run=quiet)
        assert list(res.layers.rf_size) == [rf] and len(res.transfers) > 0


def test_long_measuring_shows_a_bar_and_a_quick_one_does_not(monkeypatch, capsys):
    """A transformer's fields take a minute (swin_t at 224 px): the measuring shows a bar of
    the cells measured, but only after `BAR_DELAY` seconds; a quick net prints nothing."""
    from convlens.receptive import gradient

    measured(Stack(), (1, 32, 32), ["c3"])
    assert "receptive fields" not in capsys.readouterr().err
    monkeypatch.setattr(gradient, "BAR_DELAY", 0.0)
    measured(Stack(), (1, 32, 32), ["c3"])
    assert "receptive fields from input gradients, 32x32" in capsys.readouterr().err
