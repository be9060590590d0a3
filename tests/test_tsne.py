"""t-SNE of CNN codes (METHODS.md §3): embedding quality, the grid assignment, the pictures,
the codes a model gives, and `convlens tsne-grid` on a model and on a saved scan."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import all_hooks
from convlens import Lens
from convlens.draw import BORDER_RIGHT, BORDER_WRONG, palette
from convlens.engine.settings import RunSettings
from convlens.techniques.tsne import tsne as T
from convlens.techniques.tsne.grid import grid_assign, grid_cost, grid_positions
from convlens.techniques.tsne.tsne import knn_accuracy, tsne_grid
from convlens.techniques.units.codes import cnn_codes, code_layer, last_linear

# a shorter optimisation: FFT gradients on a few hundred points cost ~15 ms an iteration
SHORT = {"n_iter": 150, "early_exaggeration_iter": 100}


@pytest.fixture
def fast_tsne(monkeypatch):
    original = T.tsne
    monkeypatch.setattr(T, "tsne", lambda x, p=30.0, seed=0, n_jobs=1, **kw:
                        original(x, p, seed, n_jobs, **{**SHORT, **kw}))


def blobs(n=150, d=20, gap=8.0, seed=0):
    """Two Gaussian blobs of n points each, `gap` standard deviations apart in every axis."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0, 1, (n, d)), rng.normal(gap, 1, (n, d))]).astype(np.float32)
    return x, np.repeat([0, 1], n)


def greedy(emb, rows, cols, seed=0):
    """Each point in random order takes the nearest free cell (the baseline to beat)."""
    pos = grid_positions(emb, rows, cols)
    cells = np.stack(np.mgrid[0:rows, 0:cols], -1).reshape(-1, 2) + 0.5
    free = np.ones(len(cells), bool)
    grid = np.full(rows * cols, -1)
    for i in np.random.default_rng(seed).permutation(len(emb)):
        d = ((cells - pos[i]) ** 2).sum(1)
        d[~free] = np.inf
        c = int(d.argmin())
        free[c], grid[c] = False, i
    return grid.reshape(rows, cols)


@pytest.fixture(scope="module")
def blob_result():
    x, y = blobs()
    images = np.zeros((len(x), 8, 8), np.uint8)
    images[y == 1] = 255
    preds = np.where(np.arange(len(y)) % 10 == 0, 1 - y, y)  # every tenth wrong
    return x, y, tsne_grid(x, images, true=y, predicted=preds, seed=3, tsne_options=SHORT)


# -- quality ----------------------------------------------------------------------------------
def test_two_blobs_knn_accuracy(blob_result):
    _, _, res = blob_result
    m = res.metrics
    assert m["knn_accuracy_2d"] > 0.95 and m["knn_accuracy_code"] > 0.95
    assert m["trustworthiness"] > 0.9
    assert res.params["tsne"] == "openTSNE, FFT gradients" and res.params["pca_dims"] == 20


@pytest.mark.slow
def test_same_seed_same_embedding(blob_result):
    x, y, res = blob_result
    again = tsne_grid(x, None, true=y, seed=3, tsne_options=SHORT)
    # the same computation on one thread (n_jobs=1): bit for bit
    np.testing.assert_array_equal(again.embedding, res.embedding)
    other = tsne_grid(x, None, true=y, seed=4, tsne_options=SHORT)
    assert not np.array_equal(other.embedding, res.embedding)


def test_knn_accuracy_against_a_literal_loop():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 3))
    y = rng.integers(0, 3, 60)
    hits = 0
    for i in range(60):  # leave one out, 5 nearest, majority; a tie: the larger rank sum 5 - r
        d = ((x - x[i]) ** 2).sum(1)
        d[i] = np.inf
        nn = np.argsort(d)[:5]
        votes = {c: (sum(y[nn] == c), sum(5 - r for r, j in enumerate(nn) if y[j] == c))
                 for c in set(y[nn])}
        hits += max(votes, key=votes.get) == y[i]
    assert knn_accuracy(x, y, k=5) == pytest.approx(hits / 60)
    assert np.isnan(knn_accuracy(x, np.full(60, -1), k=5))


# -- the grid -----------------------------------------------------------------------------------
@pytest.mark.parametrize("n,rows,cols", [(144, 12, 12), (100, 12, 12), (300, 12, 12)])
@pytest.mark.parametrize("select", ["nearest", "sample"])
def test_grid_places_every_image_once(n, rows, cols, select):
    emb = np.random.default_rng(n).normal(size=(n, 2))
    grid, method = grid_assign(emb, rows, cols, select=select)
    placed = grid[grid >= 0]
    assert grid.shape == (rows, cols) and len(np.unique(placed)) == len(placed)
    assert len(placed) == min(n, rows * cols)
    if n == rows * cols:  # a permutation
        assert sorted(placed.tolist()) == list(range(n))
    assert method.startswith("exact")


def test_assignment_no_worse_than_greedy():
    emb = np.concatenate([np.random.default_rng(0).normal(0, 1, (200, 2)),
                          np.random.default_rng(1).normal(5, 0.5, (200, 2))])
    grid, _ = grid_assign(emb, 20, 20)
    for seed in range(3):
        assert grid_cost(emb, grid) <= grid_cost(emb, greedy(emb, 20, 20, seed)) + 1e-9


def test_hierarchical_grid_for_large_grids():
    emb = np.random.default_rng(2).normal(size=(1600, 2)) ** 3  # uneven density
    grid, method = grid_assign(emb, 40, 40, exact_max=500, block=16)
    assert method.startswith("hierarchical")
    assert sorted(grid.ravel().tolist()) == list(range(1600))
    assert grid_cost(emb, grid) <= grid_cost(emb, greedy(emb, 40, 40))
    grid, method = grid_assign(emb, 30, 30, exact_max=500, block=16)  # more points than cells
    assert (grid >= 0).all() and len(np.unique(grid)) == 900 and "sample" in method


# -- the result and its pictures ------------------------------------------------------------
def test_saved_result(blob_result, tmp_path):
    x, y, res = blob_result
    out = res.save(tmp_path / "t")
    man = json.loads((out / "manifest.json").read_text())
    assert man["kind"] == "tsne" and set(man["pictures"]) == {"scatter", "grid", "sprites"}
    table = pd.read_parquet(out / "embedding.parquet")
    assert list(table.columns[:6]) == ["index", "label", "pred", "correct", "x", "y"]
    assert table["correct"].sum() == 270 and (table["label"] == y).all()
    np.testing.assert_array_equal(np.load(out / "embedding.npy"), res.embedding)
    grid = np.load(out / "grid.npy")
    assert grid.shape == (17, 17) and (table.grid_row >= 0).sum() == 289
    r, c = np.nonzero(grid >= 0)
    assert (table.grid_row.to_numpy()[grid[r, c]] == r).all()
    g = np.asarray(Image.open(out / "grid.png"))
    assert g.shape[1] == 17 * (8 + 2 + 1) + 1  # cells of 8 px, a 1 px frame, 1 px apart
    assert man["info"]["knn_accuracy_2d"] == res.metrics["knn_accuracy_2d"]


@pytest.mark.parametrize("border", ["class", "correct", "none"])
def test_scatter_thumbnails_never_overlap(blob_result, border):
    x, y, res = blob_result
    res.border = border
    try:
        yx, drawn, side, tile = res.scatter_layout(canvas=300)
    finally:
        res.border = "class"
    assert 0 < len(drawn) < len(x)
    a = yx[drawn]
    dy = np.abs(a[:, None, 0] - a[None, :, 0])
    dx = np.abs(a[:, None, 1] - a[None, :, 1])
    overlap = (dy < tile) & (dx < tile)
    np.fill_diagonal(overlap, False)
    assert not overlap.any() and (a >= 0).all() and (a + tile <= side).all()


def test_border_colours(blob_result):
    _, y, res = blob_result
    res.border = "correct"
    try:
        c = res.colours()
    finally:
        res.border = "class"
    wrong = ~res.table["correct"].to_numpy(bool)
    assert (c[wrong] == BORDER_WRONG).all() and (c[~wrong] == BORDER_RIGHT).all()
    c = res.colours()
    assert (c[y == 0] == palette(2)[0]).all() and (c[y == 1] == palette(2)[1]).all()


def test_bad_inputs():
    from convlens.errors import ConvlensError
    x, y = blobs(10)
    with pytest.raises(ConvlensError, match="one image per code"):
        tsne_grid(x, np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(ConvlensError, match="border"):
        tsne_grid(x, border="rainbow")
    with pytest.raises(ConvlensError, match="NaN"):
        tsne_grid(np.full((10, 3), np.nan))


# -- codes from a model, and the command line ---------------------------------------------------
@pytest.mark.slow
def test_codes_are_the_input_of_the_last_linear():
    import torch

    import convlens
    from convlens.hooks import capture
    from tests.conftest import all_hooks

    lens = convlens.load_model("builtin:shapes-net")
    data = convlens.load_data("builtin:shapes", lens=lens)
    c = cnn_codes(lens, data, n=12, run=RunSettings(batch_size=6, progress=False))
    assert c.layer == code_layer(lens) == "classifier.6" and c.codes.shape == (12, 256)
    assert last_linear(lens) == "classifier.7"  # fc7 after its ReLU is what it reads
    assert all_hooks(lens) == 0 and c.thumbnails.shape == (12, 32, 32, 3)
    x = torch.stack([data[int(i)].image for i in c.index])
    with torch.no_grad(), capture(lens, "classifier.6") as cap:
        logits = lens(x)
    np.testing.assert_allclose(c.codes, cap["classifier.6"].numpy(), rtol=1e-5, atol=1e-5)
    # the codes' pass ran in batches of 6, this one in one batch of 12: the logits agree to
    # float32 rounding (1e-5 here), so the class is the same wherever the top two are 1e-4
    # apart, and within 1e-4 of the top everywhere
    top2 = logits.topk(2, 1).values.numpy()
    clear = top2[:, 0] - top2[:, 1] > 1e-4
    np.testing.assert_array_equal(c.predicted[clear], logits.argmax(1).numpy()[clear])
    assert (logits.numpy()[np.arange(12), c.predicted] >= top2[:, 0] - 1e-4).all()


@pytest.mark.slow
def test_cli_model_and_data(tmp_path, capsys, fast_tsne):
    from convlens.cli import main

    out = tmp_path / "m"
    assert main(["tsne-grid", "--model", "builtin:shapes-net", "--data", "builtin:shapes",
                 "--n", "60", "--border", "correct", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "kNN accuracy (k=10): 2-D embedding" in text and "trustworthiness" in text
    man = json.loads((out / "manifest.json").read_text())
    assert man["info"]["n"] == 60 and man["info"]["grid"] == [7, 7]
    assert man["model"]["name"] == "builtin:shapes-net"
    assert (out / "scatter.png").is_file() and (out / "grid.png").is_file()


def fake_scan(folder, data_dir, n=40):
    """A `convlens scan` folder as the scan writes it: codes.npy float16, code_index.npy,
    predictions.parquet, manifest kind "scan" naming the data spec."""
    x, y = blobs(n // 2, d=16)
    order = np.random.default_rng(0).permutation(n)
    folder.mkdir()
    np.save(folder / "codes.npy", x[order].astype(np.float16))
    index = np.arange(n) * 2  # every other item of the data set was scanned
    np.save(folder / "code_index.npy", index)
    label = y[order]
    pd.DataFrame({"index": index[::-1], "label": label[::-1], "pred": label[::-1],
                  "correct": True, "p_true": 0.9, "p_pred": 0.9,
                  "top5": [[1, 0]] * n, "top5_prob": [[0.9, 0.1]] * n,
                  "source": "x"}).to_parquet(folder / "predictions.parquet")
    (folder / "manifest.json").write_text(json.dumps({
        "kind": "scan", "model": {"name": "m", "input_size": [3, 16, 16], "labels": ["a", "b"]},
        "info": {"data": str(data_dir), "code_layer": "classifier.6"},
        "arrays": {"codes": "codes.npy", "code_index": "code_index.npy"},
        "tables": {"predictions": "predictions.parquet"}, "pictures": {}}))
    return order, label


def test_cli_scan(tmp_path, capsys, fast_tsne):
    from convlens.cli import main

    scan, data = tmp_path / "scan", tmp_path / "data"
    _, label = fake_scan(scan, data)
    for cls in ("a", "b"):  # the scanned data: a folder of class folders, 80 images
        (data / cls).mkdir(parents=True)
        for k in range(40):
            v = 30 if cls == "a" else 220
            Image.fromarray(np.full((20, 24, 3), v, np.uint8)).save(data / cls / f"{k:03d}.png")
    out = tmp_path / "t"
    assert main(["tsne-grid", "--scan", str(scan), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2-D embedding 1.000, code space 1.000" in text
    table = pd.read_parquet(out / "embedding.parquet")
    assert (table["index"] == np.arange(40) * 2).all() and (table["label"] == label).all()
    assert {"p_true", "p_pred", "source"} <= set(table.columns) and "top5" not in table
    g = np.asarray(Image.open(out / "grid.png"))
    assert g.shape[1] == 6 * (16 + 2 + 1) + 1  # thumbnails at the model's 16 px
    assert main(["tsne-grid", "--scan", str(scan), "--n", "20", "--out", str(tmp_path / "u")]) == 0
    assert json.loads((tmp_path / "u" / "manifest.json").read_text())["info"]["n"] == 20


def test_cli_needs_one_source(capsys):
    from convlens.cli import main

    assert main(["tsne-grid"]) == 2
    assert "give either --scan DIR or --model" in capsys.readouterr().err


def test_capture_of_a_modules_input_and_its_pooled_maps(hand_lens):
    import torch

    from convlens.hooks import capture
    from tests.conftest import all_hooks

    x = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    with capture(hand_lens, ["input of act", "pooled input of act"]) as got:
        hand_lens(x)
    np.testing.assert_array_equal(got["input of act"].numpy().ravel(), [-2, 2, 10, 14])
    np.testing.assert_array_equal(got["pooled input of act"].numpy().ravel(), [6.0])
    with pytest.raises(RuntimeError), capture(hand_lens, "input of act"):
        raise RuntimeError("boom")
    assert all_hooks(hand_lens) == 0


def test_result_loads_back(blob_result, tmp_path):
    """Saved, loaded with `load_result` and saved again: the same arrays (the thumbnails
    among them), tables and info."""
    from test_activations import assert_round_trip

    _, _, res = blob_result
    back = assert_round_trip(res, tmp_path)
    np.testing.assert_array_equal(back.thumbnails(), res.thumbnails())
    assert back.metrics == res.metrics and back.labels == res.labels


class _FunctionalHead(torch.nn.Module):
    """A net whose last linear layer is fed by functional code (F.relu, pooling, flatten), as
    DenseNet's and ShuffleNet's are: no module outputs the code."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 6, 3)
        self.fc = torch.nn.Linear(6, 4)

    def forward(self, x):
        h = torch.nn.functional.relu(self.conv(x))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(h, 1), 1))


def test_scan_codes_are_what_the_last_linear_receives_when_no_module_outputs_them(tmp_path):
    """Issue 24: the scan's default code layer is the input of the last linear layer whatever
    functional code comes before it ("input of fc", a forward pre-hook), the same codes as
    cnn_codes (float16 on disk: to 1e-3 relative), and no hook is left."""
    from convlens.techniques.units.codes import code_layer, codes_from_scan
    from convlens.techniques.units.scan import scan

    net = _FunctionalHead()
    lens = Lens(net, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(3, 32, 32))
    assert code_layer(lens) == "input of fc"
    quiet = RunSettings(progress=False, batch_size=3)
    scan(lens, "builtin:shapes:test:8", topk=1, out=tmp_path / "s", run=quiet)
    from_scan = codes_from_scan(tmp_path / "s")
    direct = cnn_codes(lens, "builtin:shapes:test:8", run=quiet)
    assert from_scan.codes.shape == direct.codes.shape == (8, 6)
    np.testing.assert_allclose(from_scan.codes, direct.codes, rtol=1e-3, atol=1e-3)
    assert all_hooks(net) == 0
