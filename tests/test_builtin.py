"""Built-in data and models: Fashion-MNIST facts, shapes as a dataset, shipped accuracy."""
import os

import numpy as np
import pytest
import torch

from convlens import ConvlensError, RunSettings, load_data, load_model
from convlens.data import fashion
from convlens.techniques.units.evaluate import evaluate

try:
    fashion.find_root()
    HAVE_FASHION = True
except ConvlensError:
    HAVE_FASHION = False
needs_fashion = pytest.mark.skipif(not HAVE_FASHION, reason="Fashion-MNIST not installed "
                                   "(apt-get install dataset-fashion-mnist)")


@needs_fashion
def test_fashion_mnist_known_facts():
    train, test = load_data("builtin:fashion-mnist:train"), load_data("builtin:fashion-mnist:test")
    assert (len(train), len(test)) == (60_000, 10_000)
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert np.bincount(test.labels).tolist() == [1000] * 10
    # The first item of each file is an ankle boot (label 9), as in Zalando's README.
    assert train[0].label == 9 and test[0].label == 9 and train.classes[9] == "Ankle boot"
    assert train.images.shape == (60_000, 28, 28) and train.images.dtype == np.uint8
    assert load_data("builtin:fashion-mnist").split == "test"


@needs_fashion
def test_fashion_mnist_from_a_named_folder(tmp_path, monkeypatch):
    for f in os.listdir(fashion.find_root()):
        os.symlink(os.path.join(fashion.find_root(), f), tmp_path / f)
    fashion.load_arrays.cache_clear()
    ds = load_data(f"builtin:fashion-mnist:test:{tmp_path}")
    assert len(ds) == 10_000
    monkeypatch.setenv("CONVLENS_DATA", str(tmp_path))
    assert fashion.find_root() == tmp_path


def test_fashion_mnist_missing_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVLENS_DATA", str(tmp_path))
    monkeypatch.setattr(fashion, "DEBIAN_DIR", str(tmp_path / "none"))
    with pytest.raises(ConvlensError, match="apt-get install dataset-fashion-mnist"):
        fashion.find_root()


def test_idx_reader_rejects_truncated(tmp_path):
    import gzip
    import struct
    with gzip.open(tmp_path / "x.gz", "wb") as f:
        f.write(struct.pack(">HBBIII", 0, 8, 3, 2, 28, 28) + bytes(100))
    with pytest.raises(ConvlensError, match="truncated"):
        fashion.read_idx(tmp_path / "x.gz")


def test_shapes_dataset_items_carry_ground_truth():
    lens = load_model("builtin:shapes-net")
    ds = load_data("builtin:shapes:test:50", lens=lens)
    assert len(ds) == 50 and ds.classes[0] == "circle"
    it = ds[3]
    assert it.image.shape == (3, 64, 64) and it.label == 3
    assert it.meta["mask"].shape == (64, 64) and len(it.meta["box"]) == 4
    assert "center" in it.meta["keypoints"] and "scale" in it.meta
    imgs, labels = ds.arrays(0, 4)
    assert imgs.shape == (4, 64, 64, 3) and labels.tolist() == [0, 1, 2, 3]
    # the same item through the dataset and through the raw renderer
    raw = torch.from_numpy(imgs[3]).permute(2, 0, 1).float() / 255
    assert torch.allclose(lens.normalize(raw), it.image, atol=1e-6)


@pytest.mark.parametrize("name,conv5", [("fashion-net", 3), ("shapes-net", None)])
def test_builtin_layers_have_fields(name, conv5):
    lens = load_model(f"builtin:{name}")
    info = {i.name: i for i in lens.layers()}
    assert info["features.10"].field.size[0] > info["features.0"].field.size[0] > 1
    assert info["classifier.6"].field.is_global
    assert lens.labels and len(lens.labels) == lens.model.classifier[7].out_features


@pytest.mark.slow
@needs_fashion
def test_fashion_net_shipped_accuracy():
    # The first 2,000 test images: measured 0.93+ (docs/models.md has the full test set).
    ev = evaluate(load_model("builtin:fashion-net"), load_data("builtin:fashion-mnist:test"),
                  n=2000, run=RunSettings(progress=False))
    assert ev.n == 2000 and ev.top1 >= 0.92 and ev.top5 >= 0.99


@pytest.mark.slow
def test_shapes_net_shipped_accuracy():
    ev = evaluate(load_model("builtin:shapes-net"), load_data("builtin:shapes:test:2000"),
                  run=RunSettings(progress=False))
    assert ev.n == 2000 and ev.top1 >= 0.96


def test_weights_are_small_and_safe():
    from convlens.models.builtin import BUILTIN_MODELS
    from convlens.models.checkpoint import read_state_dict
    for name in ("fashion-net", "shapes-net"):
        path = BUILTIN_MODELS[name].weights_path()
        assert os.path.getsize(path) <= 5 * 2**20
        assert read_state_dict(path)  # weights_only load


@pytest.mark.slow
def test_train_is_deterministic_on_a_small_recipe(monkeypatch):
    """Two runs with the same seed give identical weights (1 epoch on a small shapes subset)."""
    from convlens.models import train as tr
    from convlens.models.builtin import BUILTIN_MODELS
    spec = BUILTIN_MODELS["shapes-net"]
    small = tr.Recipe(epochs=1, batch_size=64, train_items=256)

    def data(recipe):
        from convlens.data import shapes
        return (shapes.render_batch(0, range(256)), shapes.render_batch(1, range(64)))
    monkeypatch.setitem(spec.extra, "train_data", data)
    a, ra = tr.train_builtin("shapes-net", recipe=small, progress=False)
    b, rb = tr.train_builtin("shapes-net",
                             recipe=tr.Recipe(epochs=1, batch_size=64, train_items=256),
                             progress=False)
    for p, q in zip(a.parameters(), b.parameters()):  # the same computation, same threads
        assert torch.equal(p, q)
    assert ra.history[0].loss == rb.history[0].loss


@pytest.mark.slow
def test_stamps_net_shape_and_every_view_keeps_batch_norm_state():
    """stamps-net is a small ResNet with batch norm: its layers are named, each ReLU is its own
    module, its code is the pooled vector, and views run on it leave every running statistic
    (buffers, not only parameters) and every training flag as they found them, also when the
    model is in training mode, where a forward pass would update batch norm's statistics."""
    import convlens
    from convlens.lens import Lens
    from convlens.models.nets import stamps_net
    from convlens.techniques.units.codes import code_layer

    torch.manual_seed(0)
    net = stamps_net()
    lens = Lens(net, (0.5,) * 3, (0.25,) * 3, (3, 96, 96), labels=list("abcdef"))
    relus = [n for n, m in net.named_modules() if isinstance(m, torch.nn.ReLU)]
    assert relus == ["stem.2"] + [f"layer{i}.relu{j}" for i in range(1, 5) for j in (1, 2)]
    assert len({id(m) for m in net.modules() if isinstance(m, torch.nn.ReLU)}) == 9
    assert code_layer(lens) == "pool.0"
    assert dict((i.name, i.shape) for i in lens.layers())["layer4.relu2"] == (192, 3, 3)
    with torch.no_grad():  # statistics that differ from a fresh BN's, so a reset would show
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    flags = [m.training for m in net.modules()]
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        eval_out = net.eval()(lens.normalize(x))
    net.train()
    acts = convlens.activations(lens, x, ["stem.2", "layer2.relu2"])
    assert acts.maps["layer2.relu2"].shape == (2, 48, 12, 12)
    for method in (convlens.saliency, convlens.guided_backprop, convlens.deconvnet,
                   convlens.grad_cam):
        assert method(lens, x).map.shape == (2, 96, 96)
    convlens.occlusion(lens, x[:1], window=32, stride=32)
    convlens.invert(lens, x[:1], ["layer1.relu2"], steps=2, progress=False)
    convlens.class_model(lens, 0, steps=2, progress=False)
    convlens.feature_visualization(lens, "layer2.relu2", channels=[0], steps=2, progress=False)
    convlens.fgsm(lens, x, torch.tensor([0, 1]))
    after = net.state_dict()
    assert [m.training for m in net.modules()] == flags
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    with torch.no_grad():  # the views ran in eval mode: their outputs used the running stats
        assert torch.allclose(net.eval()(lens.normalize(x)), eval_out)
