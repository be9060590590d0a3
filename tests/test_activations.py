"""§1: activations, dead filters, filter weights and noise, the training monitor."""
import numpy as np
import pytest
import torch
from torch import nn

from conftest import all_hooks, assert_unchanged, snapshot
from conftest import assert_loads_back as assert_round_trip
from convlens import Lens, load_model
from convlens.engine.settings import RunSettings
from convlens.techniques.activity.activations import activation_stats, activations
from convlens.techniques.activity.filters import filters, noise_score
from convlens.techniques.activity.monitor import TrainingMonitor

X = torch.arange(1.0, 10.0).view(1, 1, 3, 3)


def test_activations_by_hand(hand_lens):
    res = activations(hand_lens, X, ["conv", "act"])
    assert torch.equal(res.maps["conv"][0, 0], torch.tensor([[-2.0, 2.0], [10.0, 14.0]]))
    assert torch.equal(res.maps["act"][0, 0], torch.tensor([[0.0, 2.0], [10.0, 14.0]]))
    row = res.stats("act").iloc[0]
    assert row.zero_map_fraction == 0 and row.sparsity == 0.25
    assert row["mean"] == 6.5 and row["max"] == 14
    assert res.scale("act") == (0.0, 14.0)  # one scale for the layer, from 0


class TwoChannel(nn.Module):
    """Channel 0 has bias -1e6: dead for any input in [0, 1]; channel 1 is alive."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * 8 * 8, 3))
        with torch.no_grad():
            self.conv.weight.fill_(0.1)
            self.conv.bias.copy_(torch.tensor([-1e6, 0.05]))

    def forward(self, x):
        return self.head(self.relu(self.conv(x)))


class ToyData(torch.utils.data.Dataset):
    """`n` random 8×8 grey images (uint8), labels 0..2."""

    classes = ["a", "b", "c"]

    def __init__(self, n=70):
        from convlens.data.base import ImageDataset
        self.inner = type("D", (ImageDataset,), {
            "__len__": lambda s: n,
            "load": lambda s, i: (np.random.default_rng(i).integers(0, 256, (8, 8), dtype=np.uint8),
                                  i % 3, {}),
        })()


@pytest.fixture
def toy():
    lens = Lens(TwoChannel(), mean=(0.5,), std=(0.5,), input_size=(1, 8, 8), labels=list("abc"))
    return lens, ToyData().inner


def test_dead_channel_found(toy):
    lens, data = toy
    before = snapshot(lens)
    res = activation_stats(lens, data, ["relu"], run=RunSettings(progress=False))
    assert res.dead("relu") == [0]
    t = res.channels.set_index("channel")
    assert t.loc[0, "zero_map_fraction"] == 1.0 and t.loc[1, "zero_map_fraction"] < 0.5
    assert res.layers.iloc[0].dead_fraction == 0.5
    assert_unchanged(lens, before)


def test_stats_same_for_batch_sizes(toy):
    lens, data = toy
    a = activation_stats(lens, data, ["conv", "relu"],
                         run=RunSettings(batch_size=1, progress=False)).channels
    b = activation_stats(lens, data, ["conv", "relu"],
                         run=RunSettings(batch_size=64, progress=False)).channels
    # Counts are exact: channel 1's conv is 0.1 * (a sum of 9 or fewer values 2k/255 - 1) + 0.05,
    # never closer to 0 than 1.9e-4, far beyond float32 rounding, so which maps are zero cannot
    # depend on the order of summation.
    cols = ["layer", "channel", "n", "zero_map_fraction", "sparsity", "dead"]
    assert a[cols].equals(b[cols])
    # the conv itself rounds differently for other batch sizes (float32 sums in another order):
    # means and maxima agree to 1e-6 (relative; channel 0 sits near -1e6, where an ulp is 0.06)
    np.testing.assert_allclose(a["mean"], b["mean"], rtol=1e-6)
    np.testing.assert_allclose(a["max"], b["max"], rtol=1e-6)


def test_noise_score_separates_smooth_from_noisy():
    from scipy.ndimage import gaussian_filter
    rng = np.random.default_rng(0)
    noisy = rng.normal(size=(64, 3, 7, 7))
    smooth = gaussian_filter(rng.normal(size=(64, 3, 21, 21)), sigma=(0, 0, 2, 2))[:, :, 7:14, 7:14]
    s_noisy, s_smooth = noise_score(noisy), noise_score(smooth)
    assert s_smooth.max() < 0.3 < 0.55 < s_noisy.min()
    assert abs(np.mean(noise_score(rng.normal(size=(2000, 1, 5, 5)))) - 0.75) < 0.02  # white: 3/4
    assert noise_score(np.ones((1, 1, 5, 5)))[0] < 0.2  # a box: only its edges ring


def test_filters_first_layer_and_linear_template():
    lens = load_model("builtin:shapes-net")
    before = snapshot(lens)
    res = filters(lens)
    assert res.layer == "features.0" and res.weights.shape == (32, 3, 5, 5) and res.sees_image
    pic = res.picture()
    assert pic.ndim == 3 and pic.shape[2] == 3
    deep = filters(lens, "features.3")
    assert not deep.sees_image and deep.picture().shape[1] > deep.picture().shape[0] / 4
    assert_unchanged(lens, before)
    lin = Lens(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)), mean=(0,), std=(1,),
               input_size=(3, 8, 8))
    r = filters(lin, "1")
    assert r.weights.shape == (4, 3, 8, 8)
    assert torch.equal(r.weights[2].flatten(), lin.model[1].weight[2])


@pytest.mark.parametrize("name", ["fashion-net", "shapes-net"])
def test_trained_first_layer_smooth_fresh_noisy(name):
    from convlens.models.builtin import BUILTIN_MODELS
    lens = load_model(f"builtin:{name}")
    assert filters(lens).verdict == "smooth"
    torch.manual_seed(0)  # any seed: 50 fresh inits all scored noisy (docs/filters.md)
    fresh = Lens(BUILTIN_MODELS[name].build(), mean=lens.mean, std=lens.std,
                 input_size=lens.input_size)
    assert filters(fresh).verdict == "noisy"


def test_filters_errors():
    from convlens import ConvlensError
    lens = load_model("builtin:tiny")
    with pytest.raises(ConvlensError, match="ReLU"):
        filters(lens, "features.1")
    with pytest.raises(ConvlensError, match="not the 1x28x28 image"):
        filters(lens, "classifier.3")


@pytest.mark.slow
def test_training_monitor_on_a_short_run():
    from convlens.data import shapes
    from convlens.models import train as tr
    from convlens.models.nets import shapes_net
    xtr, ytr = shapes.render_batch(0, range(128))
    xte, yte = shapes.render_batch(1, range(32))
    norm = lambda a: tr.to_tensor(a, (0.5,) * 3, (0.25,) * 3)  # noqa: E731
    monitor = TrainingMonitor(norm(xte))
    model = shapes_net()
    tr.fit(model, (norm(xtr), torch.tensor(ytr)), (norm(xte), torch.tensor(yte)),
           tr.Recipe(epochs=1, batch_size=32), progress=False, monitor=monitor, monitor_every=2)
    t = monitor.table()
    assert sorted(set(t.step)) == [0, 2, 4]
    act = t[t.kind == "activation"]
    assert set(act.layer) >= {"features.1", "classifier.6"}
    assert act.sparsity.between(0, 1).all() and act.dead_fraction.between(0, 1).all()
    assert t[t.kind == "filters"].noise.between(0, 1).all()
    assert all_hooks(model) == 0


@pytest.mark.slow
def test_commands_write_pictures_and_tables(tmp_path):
    from convlens.cli import main
    common = ["--model", "torchvision:resnet18", "--input-size", "3,64,64"]
    assert main(["activations", *common, "--data", "builtin:shapes:test:4", "--n", "2",
                 "--layer", "layer1.0.conv1", "--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "act_1_layer1.0.conv1.png").is_file()
    assert main(["activation-stats", *common, "--data", "builtin:shapes:test:16",
                 "--out", str(tmp_path / "s")]) == 0
    assert ((tmp_path / "s" / "layers.parquet").is_file()
            and (tmp_path / "s" / "stats_relu.png").is_file())
    assert main(["filters", *common, "--layer", "conv1", "--layer", "layer1.0.conv1",
                 "--out", str(tmp_path / "f")]) == 0
    assert (tmp_path / "f" / "conv1" / "filters_conv1.png").is_file()
    assert (tmp_path / "f" / "layer1.0.conv1" / "manifest.json").is_file()


# -- every result of the family loads back through the one mechanism ---------------------------


def test_every_result_loads_back(toy, tmp_path):
    from convlens.lens import LayersResult
    lens, data = toy
    x = torch.stack([data[i].image for i in range(3)])
    st = activation_stats(lens, data, ["relu"], run=RunSettings(progress=False))
    back = assert_round_trip(st, tmp_path / "stats")
    pd_equal = __import__("pandas").testing.assert_frame_equal
    pd_equal(back.channels, st.channels)
    act = activations(lens, x, ["conv", "relu"])
    back = assert_round_trip(act, tmp_path / "act")
    assert list(back.maps) == ["conv", "relu"] and torch.equal(back.maps["relu"], act.maps["relu"])
    assert torch.equal(back.predicted, act.predicted) and back.labels == act.labels
    assert act.per_image() == []  # tile grids are not set beside the maps of the images page
    f = filters(lens)
    back = assert_round_trip(f, tmp_path / "filters")
    assert torch.equal(back.weights, f.weights) and back.verdict == f.verdict
    monitor = TrainingMonitor(x)
    monitor(0, lens.model)
    monitor(1, lens.model)
    assert_round_trip(monitor.result("toy"), tmp_path / "monitor")
    back = assert_round_trip(LayersResult(lens.layers()), tmp_path / "layers")
    assert list(back.layers.name) == [i.name for i in lens.layers()]


class _AuxAndTable(torch.nn.Module):
    """A ReLU in an auxiliary head that eval mode never runs, and a ReLU whose output is a table
    shared by the whole batch (as Swin v2's relative-position MLP): neither is a default layer."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.aux = torch.nn.Sequential(torch.nn.Conv2d(4, 2, 1), torch.nn.ReLU())
        self.table = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU())
        self.coords = torch.nn.Parameter(torch.randn(5, 2))
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        h = self.relu(self.conv(x))
        if self.training:
            self.aux(h)
        bias = self.table(self.coords).mean()          # (5, 4): one table for every image
        return self.fc(h.mean((2, 3)) + bias)


def test_default_layers_are_maps_of_each_image_that_the_eval_pass_computes():
    from convlens.lens import default_layers

    lens = Lens(_AuxAndTable(), mean=(0.5,) * 3, std=(0.5,) * 3, input_size=(3, 24, 24))
    assert default_layers(lens) == ["relu"]
    infos = {i.name: i for i in lens.layers()}
    assert infos["aux.1"].shape is None                     # not run in eval mode
    assert not infos["table.1"].per_image and infos["table.1"].shape == (5, 4)
    assert infos["relu"].per_image and infos["relu"].shape == (4, 24, 24)
    res = activation_stats(lens, "builtin:shapes:test:4", run=RunSettings(progress=False))
    assert set(res.layers.layer) == {"relu"}


@pytest.mark.slow
def test_default_layers_of_googlenet_leave_out_its_auxiliary_heads():
    """GoogLeNet has no ReLU modules (F.relu): the default is every conv the eval pass runs,
    not those of aux1/aux2 (issue 24: "layer 'aux1.conv.conv' was not called")."""
    import torchvision

    from convlens.lens import default_layers

    torch.manual_seed(0)
    net = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    lens = Lens(net, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(3, 64, 64))
    layers = default_layers(lens)
    assert layers and not any(n.startswith("aux") for n in layers)
    res = activations(lens, torch.randn(2, 3, 64, 64), layers[-2:])
    assert set(res.maps) == set(layers[-2:])
