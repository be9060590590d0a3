"""§2: the dataset pass. TopK against brute force; batch size, order, kill/resume and Ray do not
change the result; codes are each image's own activation; patches cut where the field says.

Most tests use `ExactNet`: integer weights on inputs rounded to integers, so every value of the
forward pass is an exact integer in float32 and no kernel's summation order (batch size,
threads, worker) can change a bit. That makes "identical" testable end to end, except for the
scores along random directions (float vectors): see `assert_same`.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from conftest import assert_unchanged, kill_after_checkpoint, snapshot
from convlens import ConvlensError, Lens, capture, load_model
from convlens.data.base import ImageDataset
from convlens.errors import BadImage
from convlens.receptive import Field
from convlens.techniques.units.codes import code_layer
from convlens.techniques.units.patches import cut_patch, unit_patches
from convlens.techniques.units.scan import ScanResult, scan
from convlens.techniques.units.topk import TopK, select_topk

TESTS = str(Path(__file__).resolve().parent)
BAD = 13  # the item whose "file" is corrupt


class Round(nn.Module):
    def forward(self, x):
        return torch.round(x)


class ExactNet(nn.Module):
    """Round → conv(1→3) → ReLU → pool → conv(3→4) → ReLU → pool → fc(196→6) → ReLU → fc(6→3).

    Weights in {-1, 0, 1}, integer biases, inputs rounded to 0..8: every activation is an
    integer below 2^24, exact in float32 whatever the order of summation.
    """

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.features = nn.Sequential(Round(), nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(2), nn.Conv2d(3, 4, 3, padding=1),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(196, 6), nn.ReLU(inplace=True),
                                        nn.Linear(6, 3))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randint(-1, 2, p.shape, generator=g).float())

    def forward(self, x):
        return self.classifier(self.features(x))


def exact_lens() -> Lens:
    # x = raw * 255 / 32: 0..8 after rounding
    return Lens(ExactNet(), mean=(0.0,), std=(32 / 255,), input_size=(1, 28, 28),
                labels=["a", "b", "c"], name="exact")


class Synthetic(ImageDataset):
    """Blocky 28×28 grey images (7×7 random blocks), labels i % 3, scalar and non-scalar meta;
    item `BAD` is an unreadable file. With CONVLENS_TEST_SLOW set, each item takes 30 ms."""

    classes = ["a", "b", "c"]

    def __init__(self, n: int = 100, lens=None):
        super().__init__(lens)
        self.n = n

    def __len__(self):
        return self.n

    def load(self, i):
        if os.environ.get("CONVLENS_TEST_SLOW"):
            time.sleep(0.03)
        if i == BAD:
            raise BadImage("truncated file")
        rng = np.random.default_rng(i)
        img = np.kron(rng.integers(0, 256, (7, 7)), np.ones((4, 4))).astype(np.uint8)
        return img, i % 3, {"group": i % 4, "bright": float(img.mean()), "tag": "ab"[i % 2],
                            "blob": np.zeros(3), "pair": (1, 2)}


LAYERS = ["features.2", "features.5", "classifier.2"]


def run(lens=None, data=None, **kw):
    """`scan` with the test's defaults; how it runs (batch_size, engine, ...) goes in `run`."""
    from dataclasses import fields

    from convlens.engine.settings import RunSettings
    how = {"progress": False, "batch_size": 64} | {
        f.name: kw.pop(f.name) for f in fields(RunSettings) if f.name in kw}
    kw = {"layers": LAYERS, "topk": 5, "directions": 2} | kw
    with _quiet():  # the skipped item warns; that is tested elsewhere
        return scan(lens or exact_lens(), data if data is not None else Synthetic(),
                    run=RunSettings(**how), **kw)


class _quiet:
    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


# -- comparing two scans ----------------------------------------------------------------------
# ExactNet makes every unit activation, logit and channel statistic an exact integer in float32
# (or the same quotient of exact integers), so the units' top-k, the statistics, the codes and
# every index and position derived from them are compared bit for bit: no summation order can
# change them. Two things are not exact:
# - a direction's score <v, a> is a float32 sum of C <= 6 products of a unit vector with the
#   activations, which BLAS sums in an order that depends on the batch's shape and the CPU (one
#   ulp apart between batch sizes on an AVX-512 Xeon: 22.493318 vs 22.493316). Its error is at
#   most C * 2^-24 * sum|v_c a_c| (Higham's dot-product bound), and sum|v_c a_c| <= |a| <= 631
#   here (|v| = 1), so < 2.3e-4 per order and two orders differ by < 5e-4: DIR_TOL = 1e-3.
#   Where two images' true scores lie within that of each other (this data has many exact ties:
#   equal activation vectors), which one ranks first, which makes the top k and which of two
#   tied positions is the arg-max is decided by the last bit. So each run is checked against the
#   exact scores (float64 from the integer activations, `direction_truth`) to DIR_TOL, and must
#   give the true image at every rank, and the true position for every image, that no near-tie
#   leaves open (`check_directions`): there the two runs give the same image and position.
# - the predicted probabilities come from softmax's exp, a vectorised kernel whose code path may
#   depend on the batch's shape: PROB_TOL = 1e-6 (16 float32 ulps at 1). The predicted classes
#   are the order of exact integer logits, compared exactly.
DIR_TOL = 1e-3
PROB_TOL = 1e-6


def direction_truth(lens, n: int, res: ScanResult) -> dict[str, np.ndarray]:
    """Per layer, ``<v, a>`` of `res`'s direction vectors with the exact activations of
    ``Synthetic(n)``, in float64: ``(items, D, H, W)`` (1×1 for a dense layer); the corrupt
    item scores -inf."""
    data = Synthetic(n, lens=lens)
    good = [i for i in range(n) if i != BAD]
    with capture(lens, list(res.directions)) as cap, torch.no_grad():
        lens(torch.stack([data[i].image for i in good]))
    out = {}
    for layer, d in res.directions.items():
        a = cap[layer].double()
        a = a if a.dim() == 4 else a[:, :, None, None]
        s = torch.einsum("dc,nchw->ndhw", torch.from_numpy(d["vectors"]).double(), a).numpy()
        out[layer] = np.full((n, *s.shape[1:]), -np.inf)
        out[layer][good] = s
    return out


def assert_same(a: ScanResult, b: ScanResult, truth: dict[str, np.ndarray] | None = None) -> None:
    """`b` is `a`: bit for bit where `truth` is None (a copy: `a` saved and loaded back);
    otherwise another run over the same data (batch size, order, resume, engine), compared as
    the comment above says, with `truth` from `direction_truth`."""
    assert a.layers == b.layers
    assert a.topk.keys() == b.topk.keys() and a.directions.keys() == b.directions.keys()
    for layer in a.topk:  # exact integer scores: the same images, positions and scores
        for name in a.topk[layer]:
            np.testing.assert_array_equal(a.topk[layer][name], b.topk[layer][name],
                                          err_msg=f"{layer} {name}")
    for layer in a.directions:
        da, db = a.directions[layer], b.directions[layer]
        np.testing.assert_array_equal(da["vectors"], db["vectors"])  # the same seeded draw
        if truth is None:
            for name in da:
                np.testing.assert_array_equal(da[name], db[name], err_msg=f"{layer} {name}")
        else:  # each run against the exact scores: so both agree wherever no near-tie is
            check_directions(layer, da, truth[layer])
            check_directions(layer, db, truth[layer])
    pd.testing.assert_frame_equal(a.stats.channels, b.stats.channels)  # sums of integers
    np.testing.assert_array_equal(a.codes, b.codes)  # float16 of integers below 2048
    np.testing.assert_array_equal(a.code_index, b.code_index)
    probs = ["p_true", "p_pred", "top5_prob"]
    if truth is None:
        pd.testing.assert_frame_equal(a.predictions, b.predictions)
    else:
        pd.testing.assert_frame_equal(a.predictions.drop(columns=probs),
                                      b.predictions.drop(columns=probs))
        for col in probs:
            np.testing.assert_allclose(np.stack(a.predictions[col]), np.stack(b.predictions[col]),
                                       rtol=0, atol=PROB_TOL, err_msg=col)
    assert (a.n, a.skipped) == (b.n, b.skipped)


def check_directions(layer: str, res: dict, s: np.ndarray) -> None:
    """One run's top-k along each direction of `layer` against the exact scores `s`
    (`direction_truth`): its scores are the true top-k scores, and each listed image has its
    score at its position, to DIR_TOL; every rank, and every image's arg-max position, that no
    near-tie (within 2 DIR_TOL, the k+1-th image included) leaves open is the true one."""
    flat = s.reshape(*s.shape[:2], -1)  # (items, D, positions)
    best = flat.max(2)  # each image's true score
    for d in range(s.shape[1]):
        msg = f"{layer} direction {d}"
        idx, score, pos = res["index"][d], res["score"][d], res["pos"][d]
        k = len(idx)
        order = np.lexsort((np.arange(len(best)), -best[:, d]))  # ties: the smaller index
        want = best[order, d]
        assert len(set(idx.tolist())) == k, msg
        np.testing.assert_allclose(score, want[:k], rtol=0, atol=DIR_TOL, err_msg=msg)
        np.testing.assert_allclose(best[idx, d], score, rtol=0, atol=DIR_TOL, err_msg=msg)
        np.testing.assert_allclose(s[idx, d, pos[:, 0], pos[:, 1]], score, rtol=0, atol=DIR_TOL,
                                   err_msg=msg)
        gap = np.minimum(want[:k] - want[1:k + 1], np.r_[np.inf, want[:k - 1] - want[1:k]])
        clear = gap > 2 * DIR_TOL
        np.testing.assert_array_equal(idx[clear], order[:k][clear], err_msg=msg)
        maps = flat[idx, d]  # (k, positions)
        top2 = -np.sort(-maps, axis=1)[:, :2]
        clear = top2[:, 0] - top2[:, 1] > 2 * DIR_TOL if maps.shape[1] > 1 else np.ones(k, bool)
        at = maps.argmax(1)
        np.testing.assert_array_equal(pos[clear], np.stack([at // s.shape[3], at % s.shape[3]],
                                                           1)[clear], err_msg=msg)


# -- the reduction itself -------------------------------------------------------------------
def test_select_topk_is_topk_of_union_with_index_ties():
    rng = np.random.default_rng(0)
    c, n, k = 3, 200, 7
    score = rng.integers(0, 6, (c, n)).astype(np.float32)  # many ties
    perm = rng.permutation(n)
    want = np.stack([np.lexsort((np.arange(n), -score[j]))[:k] for j in range(c)])
    for sizes in ([200], [1] * 200, [7] * 28 + [4], [64, 64, 64, 8]):
        tk = TopK(["l"], k)
        start = 0
        for s in sizes:  # fed in shuffled order, in chunks of these sizes
            idx = torch.from_numpy(perm[start:start + s])
            tk._push("l", torch.from_numpy(score[:, perm[start:start + s]]),
                     idx.expand(c, -1), idx.expand(c, -1))
            start += s
        assert np.array_equal(tk.index["l"].numpy(), want)
        assert np.array_equal(tk.score["l"].numpy(), np.take_along_axis(score, want, 1))
    # merge of two halves == whole, either way round
    a, b = TopK(["l"], k), TopK(["l"], k)
    idx = torch.arange(n)
    for t, sl in ((a, slice(0, 90)), (b, slice(90, n))):
        t._push("l", torch.from_numpy(score[:, sl]), idx[sl].expand(c, -1), idx[sl].expand(c, -1))
    a.hw = b.hw = {"l": (1, 1)}
    for x, y in ((a, b), (b, a)):
        m = TopK(["l"], k).merge(x).merge(y)
        assert np.array_equal(m.index["l"].numpy(), want)
    s, i, p = select_topk(torch.tensor([[float("nan"), 1.0, -0.0, 0.0, -2.0, float("-inf")]]),
                          torch.tensor([[0, 1, 5, 4, 2, 3]]), torch.arange(6)[None], 6)
    # -0.0 == 0.0: by index; NaN counts as -inf, so it ties with -inf and goes by index too
    assert i.tolist() == [[1, 4, 5, 2, 0, 3]]
    assert s.tolist() == [[1.0, 0.0, 0.0, -2.0, float("-inf"), float("-inf")]]
    assert p.tolist() == [[1, 3, 2, 4, 0, 5]]



def test_capture_reduce_sees_the_value_before_a_later_inplace_op(hand_lens):
    x = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    with capture(hand_lens, ["conv", "act"], reduce=lambda n, t: (n, t.min().item())) as cap:
        hand_lens(x)
    # conv = [[-2, 2], [10, 14]]; the in-place ReLU after it must not change what was seen
    assert cap["conv"] == ("conv", -2.0) and cap["act"] == ("act", 0.0)
    with capture(hand_lens, "conv") as cap:  # without reduce: a copy, as before
        hand_lens(x)
    assert cap["conv"].min().item() == -2.0


def test_topk_and_directions_against_brute_force():
    lens, data = exact_lens(), Synthetic(100)
    res = run(lens, data, batch_size=7, codes=None, predictions=False, stats=False)
    good = [i for i in range(len(data)) if i != BAD]
    data.with_lens(lens)
    x = torch.stack([data[i].image for i in good])
    with capture(lens, LAYERS) as cap, torch.no_grad():
        lens(x)
    idx = np.array(good)
    truth = direction_truth(lens, 100, res)
    for layer in LAYERS:
        a = cap[layer]
        m = a.flatten(2) if a.dim() == 4 else a.unsqueeze(-1)
        w = a.shape[-1] if a.dim() == 4 else 1
        best, arg = m.max(2)  # the units: exact integers, so exactly the brute force
        best, arg = best.numpy(), arg.numpy()
        got = res.topk[layer]
        for c in range(best.shape[1]):
            order = np.lexsort((idx, -best[:, c]))[:5]
            np.testing.assert_array_equal(got["index"][c], idx[order], err_msg=f"{layer} {c}")
            np.testing.assert_array_equal(got["score"][c], best[order, c])
            np.testing.assert_array_equal(got["pos"][c], np.stack([arg[order, c] // w,
                                                                   arg[order, c] % w], 1))
        # the directions: float sums, so against the exact scores (see `assert_same`)
        check_directions(layer, res.directions[layer], truth[layer])
    v = res.directions["features.5"]["vectors"]
    assert v.shape == (2, 4) and np.allclose(np.linalg.norm(v, axis=1), 1)


class Twice(nn.Module):
    """One ReLU module run twice per forward (as torchvision's ResNet blocks do)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(2 * 28 * 28, 3)

    def forward(self, x):
        return self.fc(self.relu(self.conv2(self.relu(self.conv1(x)))).flatten(1))


def test_a_module_run_twice_counts_with_its_last_call():
    torch.manual_seed(0)
    lens = Lens(Twice(), mean=(0.5,), std=(0.5,), input_size=(1, 28, 28))
    res = run(lens, Synthetic(30), layers=["relu"], batch_size=8, directions=0, codes=None,
              predictions=False, stats=False)
    data = Synthetic(30, lens=lens)
    good = [i for i in range(30) if i != BAD]
    with capture(lens, "relu") as cap, torch.no_grad():
        lens(torch.stack([data[i].image for i in good]))
    assert len(cap.all("relu")) == 2
    best = cap["relu"].flatten(2).amax(2).numpy()  # the last call
    for c in range(2):
        want = np.array(good)[np.lexsort((good, -best[:, c]))[:5]]
        np.testing.assert_array_equal(res.topk["relu"]["index"][c], want)


@pytest.mark.slow
def test_same_result_for_batch_sizes_and_order_and_model_left_alone():
    lens = exact_lens()
    before = snapshot(lens)
    ref = run(lens, batch_size=64)
    assert_unchanged(lens, before)
    assert ref.n == 99 and ref.skipped == 1
    truth = direction_truth(lens, 100, ref)
    for kw in ({"batch_size": 1}, {"batch_size": 7},
               {"batch_size": 7, "indices": np.random.default_rng(3).permutation(100)}):
        assert_same(ref, run(lens, **kw), truth)
    assert_unchanged(lens, before)


def test_codes_are_each_images_own_activation():
    lens, data = exact_lens(), Synthetic(40)
    res = run(lens, data, batch_size=16, topk=1, directions=0, stats=False)
    assert res.params["code_layer"] == "classifier.2" == code_layer(lens)
    assert res.codes.dtype == np.float16 and res.codes.shape == (39, 6)
    assert BAD not in res.code_index and list(res.code_index) == sorted(res.code_index)
    data.with_lens(lens)
    for row, i in enumerate(res.code_index):
        with capture(lens, "classifier.2") as cap, torch.no_grad():
            lens(data[int(i)].image[None])
        np.testing.assert_array_equal(res.codes[row], cap["classifier.2"][0].half().numpy())
    # a real model: the input of its last linear layer, to float16 precision
    tiny = load_model("builtin:tiny")
    assert code_layer(tiny) == "classifier.2"
    res = run(tiny, Synthetic(20), layers=["features.1"], batch_size=8, topk=1, directions=0,
              stats=False, predictions=False)
    tiny_data = Synthetic(20, lens=tiny)
    for row, i in enumerate(res.code_index[:5]):
        with capture(tiny, "classifier.2") as cap, torch.no_grad():
            tiny(tiny_data[int(i)].image[None])
        np.testing.assert_allclose(res.codes[row].astype(np.float32),
                                   cap["classifier.2"][0].numpy(), rtol=2e-3, atol=1e-4)


def test_predictions_table_and_manifest(tmp_path):
    lens = exact_lens()
    res = run(lens, Synthetic(30), out=tmp_path / "scan", batch_size=8)
    p = res.predictions
    assert list(p.columns[:8]) == ["index", "label", "pred", "correct", "p_true", "p_pred",
                                   "top5", "top5_prob"]
    assert {"group", "bright", "tag"} <= set(p.columns) and not {"blob", "pair"} & set(p.columns)
    assert len(p) == 29 and BAD not in set(p["index"]) and p["index"].is_monotonic_increasing
    data = Synthetic(30, lens=lens)
    with torch.no_grad():
        logits = lens(torch.stack([data[int(i)].image for i in p["index"]]))
    prob = torch.softmax(logits, 1).numpy()
    np.testing.assert_allclose(p["p_true"], prob[np.arange(len(p)), p["label"]], rtol=1e-5)
    assert (p["pred"] == prob.argmax(1)).all() and (p["correct"] == (p["pred"] == p["label"])).all()
    assert all(len(t) == 3 for t in p["top5"])  # 3 classes: top-3
    from convlens.results import SavedResult
    saved = SavedResult(tmp_path / "scan")
    assert saved.kind == "scan"
    info = saved.info
    assert info["layers"] == LAYERS and info["topk"] == 5 and info["code_layer"] == "classifier.2"
    assert info["n"] == 29 and info["skipped"] == 1
    assert saved.array("codes").dtype == np.float16
    assert saved.array("topk_features.5_pos").shape == (4, 5, 2)
    assert saved.array("dirs_features.5_vectors").shape == (2, 4)
    assert set(saved.table("channels").layer) == set(LAYERS)
    assert not (tmp_path / "scan" / ".convlens-scan").exists()
    assert_same(res, ScanResult.load(tmp_path / "scan"))
    with pytest.raises(ConvlensError, match="different scan"):  # a checkpoint of another scan
        (tmp_path / "scan" / ".convlens-scan").mkdir()
        import shutil
        shutil.copy(_checkpoint(tmp_path / "other"), tmp_path / "scan" / ".convlens-scan")
        run(lens, Synthetic(30), out=tmp_path / "scan", batch_size=8)


def _checkpoint(out: Path) -> Path:
    """A checkpoint file of a different scan (topk=2), left as a kill would leave it."""
    from convlens.engine import Checkpoint, PassInfo
    path = out / "checkpoint.pt"
    Checkpoint(path, {"topk": 2}).save(8, [], PassInfo())
    return path


SCRIPT = """
import os, sys, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, {tests!r})
os.environ["CONVLENS_TEST_SLOW"] = "1"
from test_scan import exact_lens, Synthetic, LAYERS
from convlens.techniques.units.scan import scan
from convlens.engine.settings import RunSettings
scan(exact_lens(), Synthetic(120), LAYERS, topk=5, directions=2, out={out!r},
     run=RunSettings(batch_size=8, checkpoint_every=1, progress=False))
"""


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_same_result(tmp_path):
    out = tmp_path / "scan"
    # killed a few batches past the checkpoint: codes and parts written past it
    code = kill_after_checkpoint(SCRIPT.format(tests=TESTS, out=str(out)),
                                 out / ".convlens-scan" / "checkpoint.pt")
    assert code == -signal.SIGKILL
    assert not (out / "manifest.json").exists()  # killed mid-way
    # the batch size may differ on resume: it does not change the result
    resumed = run(exact_lens(), Synthetic(120), out=out, batch_size=5, checkpoint_every=1)
    assert 0 < resumed.params["resumed_from"] < 120
    whole = run(exact_lens(), Synthetic(120), batch_size=8)
    assert_same(resumed, whole, direction_truth(exact_lens(), 120, whole))


def test_cut_patch_and_unit_patches(tmp_path):
    img = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    fld = Field((3, 3), (1, 1), (0.0, 0.0))  # a 3×3 conv with padding 1
    fill = np.array([7, 7, 7], np.uint8)
    patch, box = cut_patch(img, fld, (0, 0), (5, 6), fill)
    assert box == (0, 0, 2, 2) and patch.shape == (3, 3, 3)
    assert (patch[0] == 7).all() and (patch[:, 0] == 7).all()
    assert np.array_equal(patch[1:, 1:], img[:2, :2])
    patch, box = cut_patch(img, fld, (2, 3), (5, 6), fill)
    assert box == (2, 1, 5, 4) and np.array_equal(patch, img[1:4, 2:5])
    whole, box = cut_patch(img, Field((5, 6), None, None, is_global=True), (0, 0), (1, 1), fill)
    assert box == (0, 0, 6, 5) and np.array_equal(whole, img)

    lens, data = exact_lens(), Synthetic(40)
    run(lens, data, out=tmp_path / "scan", batch_size=16, codes=None, predictions=False)
    res = unit_patches(tmp_path / "scan", "features.2", units=[0, 2], data=Synthetic(40), lens=lens)
    # conv 3×3 (padding 1) then ReLU: field 3×3 centred on the arg-max, clipped at the border
    top = ScanResult.load(tmp_path / "scan").topk["features.2"]
    data.with_lens(lens)
    for r, u in enumerate([0, 2]):
        for j in range(5):
            y, x = top["pos"][u, j]
            assert tuple(res.boxes[r, j]) == (max(0, x - 1), max(0, y - 1),
                                              min(28, x + 2), min(28, y + 2))
            image = res.images[res.image_of[r, j]]
            x0, y0, x1, y1 = res.boxes[r, j]
            oy, ox = y0 - (y - 1), x0 - (x - 1)
            assert np.array_equal(res.patches[r, j, oy:oy + y1 - y0, ox:ox + x1 - x0],
                                  image[y0:y1, x0:x1])
    res.save(tmp_path / "units")
    assert (tmp_path / "units" / "unit_features.2_2_boxes.png").is_file()
    assert (tmp_path / "units" / "units_features.2.png").is_file()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_engine_matches_local(local_ray):
    lens = exact_lens()
    local = run(lens, Synthetic(100), batch_size=8)
    remote = run(lens, Synthetic(100), batch_size=8, engine="ray", shard_size=24)
    assert remote.params["engine"] == "ray"
    assert_same(local, remote, direction_truth(lens, 100, local))


def test_cli_scan_then_units(tmp_path, capsys):
    from convlens.cli import main

    out = tmp_path / "scan"
    with _quiet():
        rc = main(["scan", "--model", "builtin:tiny", "--data", "builtin:shapes:test:30",
                   "--layers", "features.1,features.4", "--topk", "4", "--batch-size", "16",
                   "--out", str(out)])
    assert rc == 0
    assert "30 images scanned" in capsys.readouterr().out
    with _quiet():
        assert main(["unit-patches", "--scan", str(out), "--layer", "features.4",
                     "--unit", "3"]) == 0
    assert (out / "units_features.4" / "unit_features.4_3.png").is_file()
    assert main(["unit-patches", "--scan", str(out), "--layer", "features.9"]) == 2  # unknown layer


def test_scan_and_units_load_back(tmp_path):
    """A scan and a layer's units saved, loaded with `load_result` and saved again: the same
    arrays, tables and info; the scan's manifest is written once, with its big files."""
    from test_activations import assert_round_trip

    lens = exact_lens()
    res = run(lens, Synthetic(30), out=tmp_path / "scan", batch_size=8)
    back = assert_round_trip(res, tmp_path / "s")
    assert_same(res, back)
    assert back.params == res.params and back.stats.threshold == res.stats.threshold
    units = unit_patches(tmp_path / "scan", "features.5", units=[0, 1], data=Synthetic(30),
                         lens=lens)
    back = assert_round_trip(units, tmp_path / "u")
    np.testing.assert_array_equal(back.patches, units.patches)
    assert back.true.tolist() == units.true.tolist() and back.labels == units.labels
