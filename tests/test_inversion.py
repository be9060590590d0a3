"""`invert` (Mahendran & Vedaldi 2015): a closed-form inverse, a literal float64 reference of the
energy, seeds, the model left as found (also after an error), errors, saving, the command line."""
from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from conftest import assert_loads_back as assert_round_trip
from conftest import assert_unchanged, snapshot
from convlens import ConvlensError, Lens
from convlens.cli import main
from convlens.optimize import Context
from convlens.techniques.synthesis.inversion import (
    PAPER_TV,
    inversion_objective,
    invert,
    paper_tv,
)
from convlens.techniques.synthesis.results import InversionResult


def orthogonal_net(channels: int = 3, seed: int = 0) -> nn.Module:
    """A 1x1 convolution with an orthogonal weight (no non-linearity): invertible."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=g))
    conv = nn.Conv2d(channels, channels, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(q.view(channels, channels, 1, 1))
    return nn.Sequential(OrderedDict(
        conv=conv, relu=nn.ReLU(), flat=nn.Flatten(), fc=nn.Linear(channels * 8 * 8, 2)))


def small_cnn(seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(OrderedDict(
        c1=nn.Conv2d(3, 8, 3, padding=1), r1=nn.ReLU(inplace=True), p1=nn.MaxPool2d(2),
        c2=nn.Conv2d(8, 8, 3, padding=1), r2=nn.ReLU(inplace=True), flat=nn.Flatten(),
        fc=nn.Linear(8 * 4 * 4, 3)))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return net


@pytest.fixture
def ortho_lens():
    return Lens(orthogonal_net(), mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(3, 8, 8))


@pytest.fixture
def cnn_lens():
    return Lens(small_cnn(), mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(3, 8, 8),
                labels=["a", "b", "c"])


def images(lens, n: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    raw = 0.1 + 0.8 * torch.rand((n, *lens.input_size), generator=g)  # inside the range
    return lens.normalize(raw)


# -- closed form -----------------------------------------------------------------------------
@pytest.mark.slow
def test_orthogonal_layer_is_inverted_exactly(ortho_lens):
    """Acceptance 1: with the priors off, the input of an invertible layer comes back."""
    x = images(ortho_lens)
    res = invert(ortho_lens, x, "conv", regularize=False, progress=False)
    assert res.pixel_error.max() < 1e-3
    assert res.rep_error.max() < 1e-3
    back = ortho_lens.normalize(res.reconstructions[0])
    assert torch.allclose(back, x, atol=1e-2)


@pytest.mark.slow
def test_priors_pull_away_from_the_exact_inverse(ortho_lens):
    x = images(ortho_lens)
    res = invert(ortho_lens, x, "conv", lambda_tv=1.0, progress=False)
    # the smoothness prior costs as much as the data term here: the inverse is not exact
    assert res.pixel_error.min() > 1e-2


# -- the energy, literally -------------------------------------------------------------------
def literal_energy(r: np.ndarray, phi: np.ndarray, phi0: np.ndarray, b: float, v: float,
                   lam_a: float, lam_v: float, alpha: float, beta: float) -> float:
    """The paper's normalised energy for one image, written out with loops (float64)."""
    c, h, w = r.shape
    n = c * h * w
    data = ((phi - phi0) ** 2).sum() / (phi0 ** 2).sum()
    ra = sum(abs(r[k, i, j]) ** alpha for k in range(c) for i in range(h) for j in range(w))
    rv = 0.0
    for k in range(c):
        for i in range(h - 1):
            for j in range(w - 1):
                rv += ((r[k, i, j + 1] - r[k, i, j]) ** 2
                       + (r[k, i + 1, j] - r[k, i, j]) ** 2) ** (beta / 2)
    return data + lam_a * ra / (n * b ** alpha) + lam_v * rv / (n * v ** beta)


@pytest.mark.parametrize("alpha,beta", [(6.0, 2.0), (2.0, 1.0)])
def test_energy_matches_a_literal_float64_reference(alpha, beta):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 2, 5, 6, generator=g, dtype=torch.float64)
    std = torch.tensor([0.3, 0.5], dtype=torch.float64)
    acts = {"a": torch.randn(4, 3, 2, 2, generator=g, dtype=torch.float64),
            "b": torch.randn(4, 7, generator=g, dtype=torch.float64)}
    targets = {"a": torch.randn(2, 3, 2, 2, generator=g, dtype=torch.float64),
               "b": torch.randn(2, 7, generator=g, dtype=torch.float64)}
    rows = {"a": torch.tensor([0, 1]), "b": torch.tensor([2, 3])}
    b_pix, v, lam_a, lam_tv = 0.7, 0.4, 0.03, [0.2, 0.05]
    obj = inversion_objective(targets, rows, std, b_pix, v, lam_a, lam_tv, alpha, beta)
    got = -obj(Context(acts, None, x, x)).numpy()
    r = (x * std.view(1, -1, 1, 1)).numpy()
    for i in range(4):
        name, k = ("a", i) if i < 2 else ("b", i - 2)
        want = literal_energy(r[i], acts[name][i].numpy(), targets[name][k].numpy(), b_pix, v,
                              lam_a, lam_tv[0 if name == "a" else 1], alpha, beta)
        assert got[i] == pytest.approx(want, rel=1e-10)


def test_paper_weights_by_depth(cnn_lens):
    # two convs: the first is at 1/2 of the conv stack (conv3-4 group), the second at 2/2
    assert paper_tv(cnn_lens, "r1") == PAPER_TV[1]
    assert paper_tv(cnn_lens, "fc") == PAPER_TV[2]
    x = images(cnn_lens)
    res = invert(cnn_lens, x, ["r1", "r2"], lambda_tv="paper", steps=3, progress=False)
    lam = res.params["lambda_tv"]
    ratio = res.params["V"] ** 2 / (2 * res.params["B"] ** 2)
    assert lam["r1"] == pytest.approx(10 * ratio) and lam["r2"] == pytest.approx(100 * ratio)


# -- batches, seeds ----------------------------------------------------------------------------
def test_layers_are_one_batch_with_one_result_each(cnn_lens):
    x = images(cnn_lens, 3)
    res = invert(cnn_lens, x, ["r1", "r2", "fc"], steps=30, progress=False)
    assert isinstance(res, InversionResult)
    assert res.reconstructions.shape == (3, 3, 3, 8, 8)
    assert res.rep_error.shape == res.pixel_error.shape == res.predicted.shape == (3, 3)
    assert 0 <= float(res.reconstructions.min()) and float(res.reconstructions.max()) <= 1
    # a layer's rows do not depend on the other layers of the batch (same start per image)
    alone = invert(cnn_lens, x, ["r2"], steps=30, progress=False)
    assert torch.allclose(alone.reconstructions[0], res.reconstructions[1], atol=1e-4)


def test_same_seed_same_images(cnn_lens):
    x = images(cnn_lens)
    a = invert(cnn_lens, x, ["r1"], steps=20, seed=3, progress=False)
    b = invert(cnn_lens, x, ["r1"], steps=20, seed=3, progress=False)
    c = invert(cnn_lens, x, ["r1"], steps=20, seed=4, progress=False)
    assert torch.equal(a.reconstructions, b.reconstructions)
    assert not torch.equal(a.reconstructions, c.reconstructions)


# -- the model as found, errors ----------------------------------------------------------------
class Boom(nn.Module):
    """Fails on its n-th forward call."""

    def __init__(self, net: nn.Module, after: int):
        super().__init__()
        self.net, self.after, self.calls = net, after, 0

    def forward(self, x):
        self.calls += 1
        if self.calls > self.after:
            raise RuntimeError("boom")
        return self.net(x)


def test_model_left_as_found_also_after_an_error(cnn_lens):
    net = cnn_lens.model
    net.train()
    net.c1.weight.requires_grad_(False)
    net.fc.weight.grad = torch.ones_like(net.fc.weight)
    before = snapshot(net)
    invert(cnn_lens, images(cnn_lens), ["r1", "fc"], steps=5, progress=False)
    assert_unchanged(net, before)

    boom = Boom(net, after=3)
    lens = Lens(boom, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(3, 8, 8))
    before = snapshot(boom)
    with pytest.raises(RuntimeError, match="boom"):
        invert(lens, images(lens), ["net.r1"], steps=10, progress=False)
    assert_unchanged(boom, before)


def test_bare_module_is_accepted(ortho_lens):
    x = ortho_lens.denormalize(images(ortho_lens))  # a bare module takes raw [0, 1] pixels
    res = invert(ortho_lens.model, x, "conv", regularize=False, progress=False)
    assert res.pixel_error.max() < 1e-3


@pytest.mark.parametrize("kwargs,msg", [
    ({"layers": ["r3"]}, "did you mean"),
    ({"layers": []}, "at least one layer"),
    ({"layers": ["r1"], "steps": 0}, "steps must be at least 1"),
    ({"layers": ["r1", "r2"], "lambda_tv": [1.0]}, "1 values for 2 layers"),
    ({"layers": ["r1"], "lambda_tv": "papr"}, "'paper'"),
])
def test_errors_are_one_line(cnn_lens, kwargs, msg):
    with pytest.raises(ConvlensError, match=msg) as e:
        invert(cnn_lens, images(cnn_lens), progress=False, **kwargs)
    assert "\n" not in str(e.value)


def test_flat_images_are_refused(cnn_lens):
    with pytest.raises(ConvlensError, match="mean image"):
        invert(cnn_lens, torch.zeros(1, 3, 8, 8), ["r1"], progress=False)


# -- saving, the command line ------------------------------------------------------------------
def test_result_saves_pictures_and_tables(cnn_lens, tmp_path):
    res = invert(cnn_lens, images(cnn_lens), ["r1", "fc"], steps=5, progress=False,
                 names=["one", "two"])
    out = res.save(tmp_path / "inv", lens=cnn_lens)
    m = json.loads((out / "manifest.json").read_text())
    assert m["kind"] == "inversion"
    assert set(m["pictures"]) == {"strip", "errors", "input_0", "input_1", "reconstruction_0_r1",
                                  "reconstruction_0_fc", "reconstruction_1_r1",
                                  "reconstruction_1_fc"}
    assert (out / "strip.png").stat().st_size > 1000
    t = res.tables()["layers"]
    assert list(t.layer) == ["r1", "fc"] and {"rep_error", "pixel_error"} <= set(t.columns)


def test_cli_invert(tmp_path, capsys):
    out = tmp_path / "inv"
    assert main(["invert", "--model", "builtin:shapes-net", "--data", "builtin:shapes:test",
                 "--n", "2", "--layers", "features.1,classifier.6", "--steps", "4",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "features.1" in text and "representation error" in text
    m = json.loads((out / "manifest.json").read_text())
    assert m["kind"] == "inversion" and m["info"]["layers"] == ["features.1", "classifier.6"]
    assert main(["invert", "--model", "builtin:shapes-net", "--data", "builtin:shapes:test",
                 "--layers", "features.99", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convlens: error:") and len(err.strip().splitlines()) == 1


def test_inversion_result_loads_back(cnn_lens, tmp_path):
    res = invert(cnn_lens, images(cnn_lens), ["r1", "fc"], steps=3, progress=False,
                 names=["a", "b"])
    assert_round_trip(res, tmp_path)
    assert res.per_image() == [["input_0", "reconstruction_0_r1", "reconstruction_0_fc"],
                               ["input_1", "reconstruction_1_r1", "reconstruction_1_fc"]]
    saved = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert saved["per_image"] == res.per_image()
    assert all(name in saved["pictures"] for names in res.per_image() for name in names)
