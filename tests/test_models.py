"""Model specs and checkpoints: every spec kind, safe loading, clear errors."""
import os
import pickle
import textwrap
import warnings

import pytest
import torch
from torch import nn

from convlens import ConvlensError, Lens, load_model
from convlens.models.builtin import TinyNet


def test_builtin_tiny_is_deterministic():
    a, b = load_model("builtin:tiny"), load_model("builtin:tiny")
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert a.input_size == (1, 28, 28) and not a.training


def test_unknown_builtin_names_close_matches():
    with pytest.raises(ConvlensError, match="'tiny'"):
        load_model("builtin:tinny")


def test_bad_spec():
    with pytest.raises(ConvlensError, match="cannot understand model spec"):
        load_model("no such thing")
    with pytest.raises(ConvlensError, match="no such file"):
        load_model("missing.pt")


@pytest.mark.slow
def test_torchvision_with_weights_file_wrapped_and_prefixed(tmp_path):
    src = load_model("torchvision:alexnet")
    state = {"module." + k: v.clone() + 1 for k, v in src.model.state_dict().items()}
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": state}, path)
    lens = load_model("torchvision:alexnet", weights=path)
    w = lens.model.features[0].weight
    assert torch.equal(w, src.model.features[0].weight + 1)
    assert lens.labels[0] == "tench" and lens.input_size == (3, 224, 224)
    assert lens.mean == (0.485, 0.456, 0.406)


def test_mismatched_keys_are_listed(tmp_path):
    state = TinyNet().state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["classifier.3.bias"]
    path = tmp_path / "w.pt"
    torch.save(state, path)
    with pytest.raises(ConvlensError) as e:
        load_model("builtin:tiny", weights=path)
    assert "missing keys: classifier.3.bias" in str(e.value)
    assert "unexpected keys: extra.weight" in str(e.value)


def test_shape_mismatch(tmp_path):
    state = TinyNet(classes=5).state_dict()
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(ConvlensError, match="shape mismatch"):
        load_model("builtin:tiny", weights=tmp_path / "w.pt")


class Evil:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": Evil(marker)}, path)
    with pytest.raises(ConvlensError, match="refusing to load"):
        load_model("builtin:tiny", weights=path)
    assert not marker.exists()
    # a raw pickle (not torch's zip format) too
    with open(tmp_path / "raw.pkl", "wb") as f:
        pickle.dump(Evil(marker), f)
    with pytest.raises(ConvlensError):
        load_model("builtin:tiny", weights=tmp_path / "raw.pkl")
    assert not marker.exists()


def test_garbage_and_missing_weights(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ConvlensError):
        load_model("builtin:tiny", weights=tmp_path / "junk.pt")
    with pytest.raises(ConvlensError, match="not found"):
        load_model("builtin:tiny", weights=tmp_path / "nope.pt")


@pytest.mark.slow
def test_torchvision_weights_name_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ConvlensError, match="never\\s+downloads"):
        load_model("torchvision:alexnet:IMAGENET1K_V1")
    # the same file in the cache is used
    import torchvision
    w = torchvision.models.AlexNet_Weights.IMAGENET1K_V1
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    state = {k: torch.full_like(v, 0.25)
             for k, v in load_model("torchvision:alexnet").model.state_dict().items()}
    torch.save(state, cache / os.path.basename(w.url))
    lens = load_model("torchvision:alexnet:IMAGENET1K_V1")
    assert torch.all(lens.model.features[0].weight == 0.25)


def test_unknown_torchvision_name():
    with pytest.raises(ConvlensError, match="vgg16"):
        load_model("torchvision:vgg61")


def test_timm_spec():
    pytest.importorskip("timm")
    lens = load_model("timm:resnet18")
    assert lens.input_size == (3, 224, 224)
    assert {i.name for i in lens.layers()} >= {"layer4", "fc"}


def test_torchscript_file(tmp_path):
    net = TinyNet()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(net).save(str(tmp_path / "net.pt"))
    lens = load_model(str(tmp_path / "net.pt"), input_size=(1, 28, 28))
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(lens(x), net(x))
    assert lens.mean == (sum((0.485, 0.456, 0.406)) / 3,)
    names = [i.name for i in lens.layers()]
    assert "features.0" in names
    # a state dict is not a TorchScript archive: say how to use it
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ConvlensError, match="--weights"):
        load_model(str(tmp_path / "sd.pt"))


def test_factory_spec(tmp_path, monkeypatch):
    (tmp_path / "mynets.py").write_text(textwrap.dedent("""
        from torch import nn
        from convlens import Lens
        def plain():
            return nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten())
        def lensed():
            return Lens(plain(), mean=(0.5,), std=(0.25,), input_size=(3, 32, 32),
                        labels=["a", "b"])
        def not_a_model():
            return 42
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    lens = load_model("mynets:plain")
    assert lens.input_size == (3, 224, 224)
    lens = load_model("mynets:lensed")
    assert lens.labels == ["a", "b"] and lens.std == (0.25, 0.25, 0.25)
    with pytest.raises(ConvlensError, match="not an nn.Module"):
        load_model("mynets:not_a_model")
    with pytest.raises(ConvlensError, match="did you mean 'plain'"):
        load_model("mynets:plian")
    with pytest.raises(ConvlensError, match="cannot import"):
        load_model("nosuchpackage_xyz:make")


def test_lens_pixels_round_trip():
    lens = Lens(nn.Identity(), mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2), input_size=(3, 4, 4))
    raw = torch.rand(2, 3, 4, 4)
    assert torch.allclose(lens.denormalize(lens.normalize(raw)), raw, atol=1e-6)
    lo, hi = lens.bounds(raw)
    assert torch.allclose(lens.normalize(torch.zeros(1, 3, 1, 1)), lo)
    assert torch.allclose(lens.normalize(torch.ones(1, 3, 1, 1)), hi)
    with pytest.raises(ConvlensError):
        Lens(nn.Identity(), mean=(0.5, 0.5), std=(1,), input_size=(3, 4, 4))


def test_output_option_picks_the_class_scores_of_a_dict_output(tmp_path, monkeypatch, capsys):
    """`--output KEY` (Lens(output=...)): a model whose forward returns a dict explains the
    entry named, from the command line; without it, a dict with no 'logits' is one line."""
    from convlens.cli import main

    (tmp_path / "dictnets.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn
        from convlens import Lens
        class DictNet(nn.Module):
            def __init__(self):
                super().__init__()
                torch.manual_seed(0)
                self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                          nn.Flatten(), nn.Linear(4, 3))
            def forward(self, x):
                return {"scores": self.body(x), "extra": x.mean()}
        def make():
            return Lens(DictNet(), mean=(0.5,), std=(0.25,), input_size=(3, 32, 32))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    data = ["--data", "builtin:shapes:test:4", "--n", "2"]
    assert main(["saliency", "--model", "dictnets:make", *data, "--out", str(tmp_path / "a")]) == 2
    assert "output=" in capsys.readouterr().err
    assert main(["saliency", "--model", "dictnets:make", "--output", "scores", *data,
                 "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "manifest.json").is_file()


def test_unknown_name_without_a_close_match_lists_the_few_valid_ones():
    from convlens.errors import LIST_ALL, unknown

    assert str(unknown("method", "nope", ["saliency", "grad_cam"])) == (
        "unknown method 'nope'; one of saliency, grad_cam")
    many = [f"layer{i}" for i in range(LIST_ALL + 1)]
    assert str(unknown("layer", "zzz", many)) == "unknown layer 'zzz'"  # too many to list
    assert "did you mean 'grad_cam'" in str(unknown("method", "gradcam", ["saliency", "grad_cam"]))
