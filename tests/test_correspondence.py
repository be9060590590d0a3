"""Keypoint transfer (METHODS.md §7): a closed form on a hand-made fully convolutional net, a
slow literal reference of the formula, bad input, the model left as found, determinism."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import assert_loads_back as assert_round_trip
from conftest import assert_unchanged, snapshot
from convlens import Lens
from convlens.engine.settings import RunSettings
from convlens.errors import ConvlensError
from convlens.techniques.correspondence.correspondence import correspondence, transfer_features
from convlens.techniques.correspondence.pairs import Pair, file_pairs, make_pair, to_input
from convlens.techniques.correspondence.warps import (
    ThinPlate,
    invert,
    random_affine,
    random_tps,
    warp_image,
)

QUIET = RunSettings(progress=False)


# -- a fully convolutional net whose features are one-hot codes of pixel blocks ------------------
SIDE, SHIFT = 32, 8


class BlockNet(nn.Sequential):
    """1x1 depthwise conv (weight 1) -> ReLU -> three 2x2 average pools: strides 1, 2, 4, 8,
    each cell the mean of its block. On an image whose every pixel is a different one-hot
    channel, the cells of a layer are orthogonal and of equal length, so the feature
    interpolated at a point is nearest (cosine) to the cell whose centre is nearest."""

    def __init__(self, c: int):
        conv = nn.Conv2d(c, c, 1, groups=c, bias=False)
        with torch.no_grad():
            conv.weight.fill_(1.0)
        super().__init__(conv, nn.ReLU(), nn.AvgPool2d(2), nn.AvgPool2d(2), nn.AvgPool2d(2))


def one_hot_image(side: int) -> torch.Tensor:
    return torch.eye(side * side).reshape(side * side, side, side)


@pytest.fixture(scope="module")
def block_setup():
    c = SIDE * SIDE
    lens = Lens(BlockNet(c), mean=(0.0,), std=(1.0,), input_size=(c, SIDE, SIDE))
    a = one_hot_image(SIDE)
    b = torch.roll(a, (SHIFT, SHIFT), dims=(1, 2))  # a pure translation by one deepest cell
    rng = np.random.default_rng(3)
    pairs = []
    for k in range(3):
        pa = rng.uniform(5, 19, (6, 2))  # A's and B's points inside every layer's grid
        pairs.append(make_pair(a, b, pa, pa + SHIFT, [f"k{j}" for j in range(6)], key_a="a",
                               key_b="b"))
    return lens, pairs


def test_closed_form_translation(block_setup):
    """Acceptance 1: a shift by a whole number of cells; PCK 1 wherever stride <= alpha size."""
    lens, pairs = block_setup
    layers = ["1", "2", "3", "4"]  # strides 1, 2, 4, 8
    for alpha in (0.1, 0.3):  # 3.2 px: strides 1 and 2; 9.6 px: all
        res = correspondence(lens, pairs, layers, alpha, baselines=(), examples=0, run=QUIET)
        t = res.pck.set_index("layer")
        for name in layers:
            if t.loc[name, "stride"] <= alpha * SIDE:
                assert t.loc[name, "pck"] == 1.0, (alpha, name)
        # the nearest cell is found: the error is at most half a stride on each axis
        f = res.transfers.merge(res.layers, on="layer")
        assert (np.abs(f.x_pred - f.x_b) <= f.stride / 2 + 1e-9).all()
        assert (np.abs(f.y_pred - f.y_b) <= f.stride / 2 + 1e-9).all()
        if alpha == 0.1:  # the 8-px cells are too coarse for a 3.2-px threshold
            assert t.loc["4", "pck"] < 1.0


def test_closed_form_pixel_baseline(block_setup):
    lens, pairs = block_setup
    res = correspondence(lens, pairs, ["1", "2", "3"], 0.15, baselines=("pixels",), step=1,
                         examples=0, run=QUIET)
    px = res.pck[res.pck.method == "pixels"]
    assert len(px) == 3 and (px.pck == 1.0).all()
    d = res.difference("features", "pixels")
    assert (d.difference == 0).all() and (d.ci_low == 0).all() and (d.ci_high == 0).all()


# -- a slow literal reference ---------------------------------------------------------------
def _small_lens(dtype=torch.float32):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(16, 16, 3), nn.ReLU()).to(dtype)
    return Lens(net, mean=(0.0,) * 3, std=(1.0,) * 3, input_size=(3, 24, 24))


def _random_pairs(n=4, k=5, side=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a = torch.randn(3, side, side, generator=g)
        b = torch.randn(3, side, side, generator=g)
        out.append(make_pair(a, b, rng.uniform(0, side, (k, 2)), rng.uniform(0, side, (k, 2)),
                             [f"p{j}" for j in range(k)]))
    return out


def _reference(lens, pair, layer, metric):
    """Per keypoint, by hand: bilinear feature at u = (p - 0.5 - c) / s (clamped), similarity
    to every cell of B, best cell's centre back in pixels."""
    info = {i.name: i for i in lens.layers()}[layer]
    cy, cx = info.field.center
    sy, sx = info.field.stride
    feats = {}
    h = lens.model[int(layer)].register_forward_hook(
        lambda m, i, o: feats.setdefault("x", []).append(o))
    try:
        with torch.no_grad():
            lens(pair.image_a[None])
            lens(pair.image_b[None])
    finally:
        h.remove()
    fa, fb = feats["x"][0][0].double(), feats["x"][1][0].double()  # the sums in float64
    _, hh, ww = fa.shape
    out = []  # per keypoint, every cell within 1e-6 of the best score (ReLU maps tie often)
    for x, y in pair.points_a:
        u = min(max((x - 0.5 - cx) / sx, 0), ww - 1)
        v = min(max((y - 0.5 - cy) / sy, 0), hh - 1)
        j0, i0 = min(int(math.floor(u)), ww - 2), min(int(math.floor(v)), hh - 2)
        tu, tv = u - j0, v - i0
        q = ((1 - tu) * (1 - tv) * fa[:, i0, j0] + tu * (1 - tv) * fa[:, i0, j0 + 1]
             + (1 - tu) * tv * fa[:, i0 + 1, j0] + tu * tv * fa[:, i0 + 1, j0 + 1])
        scores = {}
        for i in range(hh):
            for j in range(ww):
                f = fb[:, i, j]
                if metric == "cosine":
                    scores[i, j] = float(q @ f / max(float(q.norm() * f.norm()), 1e-12))
                else:
                    scores[i, j] = -float(((q - f) ** 2).sum())
        best = max(scores.values())
        out.append({(cx + j * sx + 0.5, cy + i * sy + 0.5) for (i, j), v in scores.items()
                    if v >= best - 1e-6 * max(1.0, abs(best))})
    return out


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_batched_equals_literal_reference(metric):
    lens = _small_lens()
    pairs = _random_pairs()
    res = correspondence(lens, pairs, ["1", "4", "7"], baselines=(), metric=metric, chunk=3,
                         run=QUIET)
    for layer in ("1", "4", "7"):
        t = res.transfers[res.transfers.layer == layer]
        for k, pair in enumerate(pairs):
            got = t[t.pair == k][["x_pred", "y_pred"]].to_numpy()
            ref = _reference(lens, pair, layer, metric)
            assert all(tuple(g) in r for g, r in zip(got.tolist(), ref))
            assert sum(len(r) == 1 for r in ref) >= len(ref) // 2  # not a test of ties only


def test_pixel_baseline_equals_literal_patches():
    """The grouped-convolution search equals an explicit scan of every window of B."""
    from convlens.techniques.correspondence.correspondence import transfer_patches

    rng = np.random.default_rng(1)
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(1, 2, 13, 11, generator=g, dtype=torch.float64), torch.randn(
        1, 2, 13, 11, generator=g, dtype=torch.float64)
    pts = torch.from_numpy(rng.uniform(0, 11, (1, 4, 2)))
    # the last two patches are larger than the image: the FFT path
    for size, step in ((3, 1), (4, 2), (5, 3), (15, 2), (26, 3)):
        got = transfer_patches(a, b, pts, size, step).numpy()[0]
        pad = size // 2
        ap = torch.nn.functional.pad(a[0], (pad, pad, pad, pad))
        bp = torch.nn.functional.pad(b[0], (pad, pad, pad, pad))
        for k, (x, y) in enumerate(pts[0].numpy()):
            # the patch of A centred on (x, y), bilinear, zero outside
            offs = np.arange(size) - (size - 1) / 2
            patch = np.zeros((2, size, size))
            for r, oy in enumerate(offs):
                for c, ox in enumerate(offs):
                    px, py = x + ox - 0.5 + pad, y + oy - 0.5 + pad  # pixel-centre index in ap
                    x0, y0 = math.floor(px), math.floor(py)
                    tx, ty = px - x0, py - y0
                    for yy, xx, wgt in ((y0, x0, (1 - tx) * (1 - ty)), (y0, x0 + 1, tx * (1 - ty)),
                                        (y0 + 1, x0, (1 - tx) * ty), (y0 + 1, x0 + 1, tx * ty)):
                        if 0 <= yy < ap.shape[1] and 0 <= xx < ap.shape[2]:
                            patch[:, r, c] += wgt * ap[:, yy, xx].numpy()
            scores = []
            for i in range(0, bp.shape[1] - size + 1, step):
                for j in range(0, bp.shape[2] - size + 1, step):
                    win = bp[:, i:i + size, j:j + size].numpy()
                    s = (patch * win).sum() / max(np.linalg.norm(patch) * np.linalg.norm(win),
                                                  1e-12)
                    centre = (j - pad + (size - 1) / 2 + 0.5, i - pad + (size - 1) / 2 + 0.5)
                    scores.append((s, centre))
            # the convolution (or FFT) sums in another order than this loop: the best window,
            # or one within 1e-9 of its cosine where two nearly tie (float64 noise decides)
            best = max(s for s, _ in scores)
            near = [w for s, w in scores if s >= best - 1e-9]
            assert any(np.allclose(got[k], w, atol=1e-9) for w in near), (got[k], near)


def test_grid_search_on_the_cell_centres_is_the_cell_search():
    lens = _small_lens()
    pairs = _random_pairs(2)
    info = {i.name: i for i in lens.layers()}["4"]  # stride 2, first centre 0.5: 1, 3, 5 ... px
    with torch.no_grad():
        fa = lens.model[:5](torch.stack([p.image_a for p in pairs]))
        fb = lens.model[:5](torch.stack([p.image_b for p in pairs]))
    pts = torch.from_numpy(np.stack([p.points_a for p in pairs]))
    ys, xs = np.mgrid[0:12, 0:12] * 2.0 + 1.0
    centres = np.stack([xs.ravel(), ys.ravel()], 1)
    cells = transfer_features(fa, fb, pts, info.field).numpy()
    got = transfer_features(fa, fb, pts, info.field, grid=centres).numpy()
    from convlens.techniques.correspondence.correspondence import sample, to_cells
    # Sampled bilinearly at the cell centres, B's features equal the cells' in exact arithmetic
    # but lie a few float32 ulps off (the weights are computed, 2e-7 here): so the same cell
    # wherever the best cosine leads the next by 1e-5, and one within 1e-5 of the best elsewhere
    q = sample(fa, to_cells(pts.double(), info.field))
    keys = fb.flatten(2)
    cos = torch.bmm(q, keys) / (q.norm(dim=2, keepdim=True) * keys.norm(dim=1, keepdim=True))
    cos = cos.nan_to_num(0).numpy()  # (pairs, points, cells), cells row-major; 0/0: 0
    top2 = -np.sort(-cos, axis=2)[..., :2]
    clear = top2[..., 0] - top2[..., 1] > 1e-5
    np.testing.assert_array_equal(got[clear], cells[clear])
    at = (got[..., None, :] == centres).all(-1).argmax(-1)  # the grid point each answer is
    assert (np.take_along_axis(cos, at[..., None], 2)[..., 0] >= top2[..., 0] - 1e-5).all()
    from convlens.techniques.correspondence.correspondence import grid_points
    grid = grid_points((24, 24), 3)
    got = transfer_features(fa, fb, pts, info.field, grid=grid).numpy().reshape(-1, 2)
    assert (got[:, None] == grid[None]).all(2).any(1).all()  # every answer is a grid point


# -- pairs: warps and keypoint geometry -----------------------------------------------------
def _smooth(side=32, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] + 0.5
    img = sum(np.sin(rng.uniform(0.05, 0.2) * x + rng.uniform(0, 6)) *
              np.cos(rng.uniform(0.05, 0.2) * y + rng.uniform(0, 6)) for _ in range(3))
    return torch.from_numpy(img)[None].double()


def _value_at(img, pts):
    h, w = img.shape[-2:]
    grid = torch.from_numpy(np.stack([2 * pts[:, 0] / w - 1, 2 * pts[:, 1] / h - 1], 1))[None, None]
    return torch.nn.functional.grid_sample(img[None], grid, align_corners=False)[0, 0, 0].numpy()


@pytest.mark.parametrize("kind", ["affine", "tps"])
def test_warp_maps_points_exactly(kind):
    """The image B shows at the mapped point what A shows at the keypoint."""
    a = _smooth()
    rng = np.random.default_rng(5)
    pa = rng.uniform(8, 24, (20, 2))
    if kind == "affine":
        m = random_affine(rng, (32, 32))
        inv = np.linalg.inv(m)
        b = warp_image(a, lambda q: q @ inv[:2, :2].T + inv[:2, 2])
        pb = pa @ m[:2, :2].T + m[:2, 2]
    else:
        tps = random_tps(rng, (32, 32))
        b = warp_image(a, tps)
        pb, ok = invert(tps, pa)
        assert ok.all()
        np.testing.assert_allclose(tps(pb), pa, atol=1e-4)
    keep = (pb > 1).all(1) & (pb < 31).all(1)
    np.testing.assert_allclose(_value_at(b, pb[keep]), _value_at(a, pa[keep]), atol=0.03)


def test_thin_plate_interpolates_its_control_points():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 10, (6, 2))
    dst = src + rng.normal(0, 1, (6, 2))
    np.testing.assert_allclose(ThinPlate(src, dst)(src), dst, atol=1e-9)


def test_keypoints_follow_the_preprocessing():
    """A manifest keypoint on a dot of a 40x20 file lands on the dot of the 16x16 input."""
    lens = Lens(nn.Identity(), mean=(0.0,), std=(1.0,), input_size=(1, 16, 16))
    img = np.zeros((20, 40), np.uint8)
    img[5:9, 25:29] = 255  # a 4x4 dot centred at (27, 7) in continuous coordinates
    x = lens.preprocess(Image.fromarray(img))[0].numpy()
    (px, py), = to_input(np.array([[27.0, 7.0]]), (40, 20), (16, 16))
    ys, xs = np.mgrid[0:16, 0:16] + 0.5
    cx, cy = (x * xs).sum() / x.sum(), (x * ys).sum() / x.sum()
    assert abs(cx - px) < 0.05 and abs(cy - py) < 0.05


# -- bad input: one line, or a counted skip -------------------------------------------------
def test_unknown_layer_is_one_line():
    from convlens.models import load_model

    p = make_pair(torch.zeros(1, 28, 28), torch.zeros(1, 28, 28), [[4, 4]], [[4, 4]], ["a"])
    with pytest.raises(ConvlensError, match="did you mean 'features.1'") as e:
        correspondence(load_model("builtin:tiny"), [p], ["featurs.1"], run=QUIET)
    assert "\n" not in str(e.value)


def test_layer_without_spatial_map():
    lens = Lens(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 2)),
                mean=(0.0,), std=(1.0,), input_size=(1, 8, 8))
    p = make_pair(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8), [[4, 4]], [[4, 4]], ["a"])
    with pytest.raises(ConvlensError, match="no spatial map"):
        correspondence(lens, [p], ["2"], run=QUIET)


def test_keypoints_outside_and_empty_pairs_are_counted():
    lens = _small_lens()
    good = _random_pairs(2)
    a = good[0].image_a
    outside = Pair(a, a, np.array([[-3.0, 4.0], [5.0, 5.0], [30.0, 2.0]]),
                   np.array([[1.0, 1.0], [5.0, 5.0], [2.0, 2.0]]), ["x", "y", "z"], 24.0)
    none_left = Pair(a, a, np.array([[-1.0, 4.0]]), np.array([[1.0, 1.0]]), ["x"], 24.0)
    res = correspondence(lens, good + [outside, none_left], ["4"], baselines=("pixels",),
                         run=QUIET)
    assert res.dropped["keypoint outside the image"] == 2
    assert res.skipped["no keypoint inside both images"] == 1
    assert res.transfers.pair.nunique() == 3
    assert len(outside.points_a) == 3  # the caller's pair is not trimmed in place
    assert make_pair(a, a, [[-1, 2]], [[3, 3]], ["x"]) == "no keypoint inside both images"


@pytest.fixture
def manifest(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(3):
        Image.fromarray((rng.random((20, 20)) * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
    rows = [{"path": "0.png", "label": 0, "kp_a_x": 5.0, "kp_a_y": 6.0,
             "kp_b_x": np.nan, "kp_b_y": np.nan},
            {"path": "1.png", "label": 0, "kp_a_x": np.nan, "kp_a_y": np.nan,
             "kp_b_x": 9.0, "kp_b_y": 9.0},
            {"path": "2.png", "label": 0, "kp_a_x": 12.0, "kp_a_y": 10.0,
             "kp_b_x": 3.0, "kp_b_y": 4.0}]
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    pd.DataFrame({"a": [0, 0, 0, "2.png"], "b": [1, 2, 99, "0.png"]}).to_csv(tmp_path / "pairs.csv",
                                                                               index=False)
    return tmp_path


def test_pairs_file_counts_what_it_cannot_use(manifest):
    from convlens.data import load_data
    from convlens.models import load_model

    lens = load_model("builtin:tiny")
    data = load_data(str(manifest / "m.csv"), lens=lens)
    pairs = file_pairs(data, manifest / "pairs.csv")
    assert pairs.skipped["unknown item in the pairs file"] == 1
    res = correspondence(lens, pairs, ["features.1"], baselines=("pixels",), run=QUIET)
    assert res.skipped["no common keypoint names"] == 1
    assert res.transfers.pair.nunique() == 2
    t = res.transfers[res.transfers.pair == 2]  # "2.png" -> "0.png": item 2's keypoint a
    np.testing.assert_allclose(t[["x_a", "y_a"]].to_numpy()[0], [12 * 1.4, 10 * 1.4])  # 20 -> 28 px


def test_intraclass_without_keypoints_is_one_line():
    from convlens.data import load_data
    from convlens.models import load_model
    from convlens.techniques.correspondence.pairs import has_keypoints

    assert has_keypoints(load_data("builtin:shapes:test:5"))
    assert not has_keypoints(load_data("builtin:fashion-mnist:test"), scan=5)
    with pytest.raises(ConvlensError, match="keypoints"):
        correspondence(load_model("builtin:tiny"), "intraclass", data="builtin:fashion-mnist:test",
                       n=2)


def test_bad_pairs_spec_and_missing_data():
    lens = _small_lens()
    with pytest.raises(ConvlensError, match="needs data"):
        correspondence(lens, "warp")
    with pytest.raises(ConvlensError, match="is none of these"):
        correspondence(lens, "wrap", data="builtin:shapes:test:4")


# -- invariants -----------------------------------------------------------------------------
def test_model_left_as_found():
    lens = _small_lens()
    lens.train()
    for p in lens.parameters():
        p.grad = torch.ones_like(p)
    before = snapshot(lens)
    pairs = _random_pairs(2)
    correspondence(lens, pairs, ["1", "4"], baselines=("pixels",), run=QUIET)
    assert_unchanged(lens, before)

    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    lens.model.append(Boom())
    before = snapshot(lens)
    with pytest.raises(RuntimeError, match="boom"):
        correspondence(lens, pairs, ["1"], baselines=(), run=QUIET)
    assert_unchanged(lens, before)


def test_deterministic_and_seeded():
    from convlens.models import load_model

    lens = load_model("builtin:tiny")
    def run(seed):
        return correspondence(lens, "warp", ["features.1", "features.4"],
                              data="builtin:shapes:test:6", n=3, seed=seed, baselines=("pixels",),
                              run=QUIET)
    a, b, c = run(0), run(0), run(1)
    pd.testing.assert_frame_equal(a.transfers, b.transfers)  # the same computation twice
    pd.testing.assert_frame_equal(a.pck, b.pck)
    assert not a.transfers[["x_b", "y_b"]].equals(c.transfers[["x_b", "y_b"]])


@pytest.mark.slow  # shapes-net with both baselines: ~5 s quiet, ~11 s on busy cores
def test_result_saves_and_draws(tmp_path):
    from convlens.models import load_model
    from convlens.results import SavedResult

    lens = load_model("builtin:shapes-net")
    res = correspondence(lens, "intraclass", ["features.4", "features.7"],
                         data="builtin:shapes:test:200", n=4, baselines=("pixels", "sift"),
                         examples=2, run=QUIET)
    assert set(res.pck.method) == {"features", "pixels", "sift"}
    assert ((res.pck.ci_low <= res.pck.pck) & (res.pck.pck <= res.pck.ci_high)).all()
    saved = SavedResult(res.save(tmp_path / "c", lens=lens))
    assert ({"pck_by_layer", "examples_features_" + res.best()["layer"]}
            <= set(saved.manifest["pictures"]))
    assert saved.table("pck").shape[0] == 6
    assert saved.array("example_a").shape == (2, 64, 64, 3)
    d = res.difference()  # features - SIFT, paired over the same pairs
    both = res.pck.pivot(index="layer", columns="method", values="pck")
    np.testing.assert_allclose(d.set_index("layer").difference,
                               (both.features - both.sift).loc[d.layer], atol=1e-12)
    assert ((d.ci_low <= d.difference) & (d.difference <= d.ci_high)).all()
    # rescoring at a looser threshold never lowers PCK
    assert (res.pck_table(0.3).pck.to_numpy() >= res.pck.pck.to_numpy() - 1e-12).all()


def test_command_line(tmp_path, capsys):
    from convlens.cli import main

    rc = main(["correspondence", "--model", "builtin:tiny", "--data", "builtin:shapes:test:8",
               "--n", "3", "--layers", "features.1,features.4", "--baselines", "pixels",
               "--out", str(tmp_path / "o")])
    assert rc == 0
    assert (tmp_path / "o" / "pck_by_layer.png").is_file()
    assert "PCK" in capsys.readouterr().out
    assert main(["correspondence", "--model", "builtin:tiny", "--data", "builtin:shapes:test:8",
                 "--layers", "feature.1", "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("convlens: error: unknown layer") and "\n" not in err


def test_result_loads_back(tmp_path):
    from convlens.models import load_model

    lens = load_model("builtin:tiny")
    res = correspondence(lens, "warp", ["features.1", "features.4"], data="builtin:shapes:test:6",
                         n=3, baselines=("pixels",), examples=2, run=QUIET)
    assert len(res.examples) == 2 and res.examples[0][1].shape == (28, 28, 3)
    assert_round_trip(res, tmp_path)
    none = correspondence(lens, "warp", ["features.1"], data="builtin:shapes:test:6", n=2,
                          baselines=(), examples=0, run=QUIET)
    assert none.examples == [] and none.arrays() == {}
    assert_round_trip(none, tmp_path / "none")


class _SqueezeExcite(nn.Module):
    """conv-ReLU, a squeeze-excitation gate (global pool, 1x1 conv, sigmoid, multiply), then
    conv-ReLU: the second ReLU's cells depend on the whole image through the gate."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.r1 = nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()
        self.gate = nn.Conv2d(8, 8, 1)
        self.c2, self.r2 = nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        h = self.r1(self.c1(x))
        h = h * torch.sigmoid(self.gate(h.mean((2, 3), keepdim=True)))
        return self.fc(self.r2(self.c2(h)).mean((2, 3)))


def test_squeeze_excitation_layers_are_placed_by_their_local_field():
    """Issue 24: after a squeeze-excitation gate a cell has a local field (the spatial path)
    and depends on the whole image through the gate; correspondence places it by the local
    field, by default and by name. The gate itself (a pooled 1x1 map) has no local field: named
    on purpose it is a one-line error."""
    lens = Lens(_SqueezeExcite(), mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(3, 32, 32))
    infos = {i.name: i for i in lens.layers()}
    assert infos["r1"].field is not None and not infos["r1"].field.whole_image
    r2 = infos["r2"].field
    assert (r2.size, r2.stride, r2.global_context, r2.is_global) == ((5, 5), (2, 2), True, False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = correspondence(lens, "warp", data="builtin:shapes:test:4", n=2, baselines=(),
                             examples=0, run=QUIET)
    assert list(res.layers.layer) == ["r1", "r2"]
    with pytest.raises(ConvlensError, match="no local receptive field"):
        correspondence(lens, "warp", ["gate"], data="builtin:shapes:test:4", n=2, run=QUIET)
