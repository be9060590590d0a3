"""The faithfulness view (issue 26): on a linear model gradient times input is the exact
attribution and ranks first on deletion and ROAD (most relevant first), a map of noise ranks
last with intervals apart from it; the pass leaves the model as found, does not depend on the
batch size, checkpoints its state, saves and loads back, runs from the command line."""
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

from conftest import all_hooks, assert_loads_back, assert_unchanged, kill_after_checkpoint, snapshot
from convlens import ConvlensError, Lens, RunSettings
from convlens.data import ImageDataset
from convlens.techniques.faithfulness.faithfulness import Faithfulness, faithfulness

pytestmark = pytest.mark.usefixtures("one_thread")
QUIET = RunSettings(progress=False, batch_size=8)


class Opposed(nn.Module):
    """Logits ``(s, -s)`` with ``s = w . x``: the probability of either class is monotone in
    its own logit, whose exact attribution is ``x * dS/dx`` (zero baseline)."""

    def __init__(self, d: int):
        super().__init__()
        self.fc = nn.Linear(d, 1, bias=False)

    def forward(self, x):
        s = self.fc(x.flatten(1))
        return torch.cat([s, -s], 1)


def linear_lens() -> Lens:
    torch.manual_seed(0)
    net = Opposed(1 * 8 * 8).eval()
    with torch.no_grad():
        net.fc.weight.copy_(torch.randn(1, 64) * 0.5)
    return Lens(net, mean=(0.0,), std=(1.0,), input_size=(1, 8, 8), labels=["a", "b"])


class Noise(ImageDataset):
    """Grey 8x8 images, uint8, seeded per item; label 0."""

    classes = ["a", "b"]

    def __init__(self, n: int, lens=None):
        super().__init__(lens)
        self.n = n

    def __len__(self):
        return self.n

    def load(self, i):
        if os.environ.get("CONVLENS_TEST_SLOW"):
            time.sleep(0.03)
        return np.random.default_rng(i).integers(0, 256, (8, 8)).astype(np.uint8), 0, {}


@pytest.mark.slow
def test_gradient_times_input_ranks_first_and_noise_last_on_a_linear_model():
    res = faithfulness(linear_lens(), Noise(40),
                       methods=["input_x_gradient", "saliency", "random"],
                       metrics=["deletion", "road_morf"], steps=16, n_boot=1000, run=QUIET)
    for metric in ("deletion", "road_morf"):
        r = res.ranking(metric)
        assert r.method.iloc[0] == "input_x_gradient", r
        assert r.method.iloc[-1] == "random", r
        assert res.clearly_better(metric, "input_x_gradient", "random"), r
    assert res.params["images"] == 40
    assert (res.curves.groupby(["curve", "method"]).size() > 0).all()


def test_deletion_of_the_exact_attribution_is_the_steepest_ordering():
    """Per image, deleting in the order of x * w removes the largest contributions to the
    target's logit first: after every step its probability is at most that of any other
    order (here: |w|, the saliency order, and the noise order)."""
    res = faithfulness(linear_lens(), Noise(12),
                       methods=["input_x_gradient", "saliency", "random"],
                       metrics=["deletion"], steps=8, n_boot=50, run=QUIET)
    c = res.curves.set_index(["method", "x"])["mean"]
    exact = c.loc["input_x_gradient"].to_numpy()
    for other in ("saliency", "random"):
        assert (exact <= c.loc[other].to_numpy() + 1e-9).all(), other


def test_model_left_as_found_and_batches_do_not_matter():
    lens = linear_lens()
    net = lens.model
    net.train()
    net.fc.weight.grad = torch.ones_like(net.fc.weight)
    before = snapshot(net)
    kw = dict(methods=["input_x_gradient", "saliency", "random"], steps=4, fractions=[0.5],
              samples=3, sensitivity_samples=1, n_boot=100)
    a = faithfulness(lens, Noise(10), run=QUIET.but(batch_size=3), **kw)
    assert_unchanged(net, before)
    assert all_hooks(net) == 0
    b = faithfulness(lens, Noise(10), run=QUIET.but(batch_size=10), **kw)
    pd.testing.assert_frame_equal(a.table, b.table, rtol=1e-5, atol=1e-7)
    # no masks in this data: the mask scores are not measured, and the result says so
    assert a.params["without_masks"] == 10
    assert a.ranking("pointing_game")["images"].max() == 0
    assert any("no masks" in line for line in a.summary())
    with pytest.raises(ConvlensError, match="unknown method"):
        faithfulness(lens, Noise(2), methods=["saliency", "nope"], run=QUIET)
    with pytest.raises(ConvlensError, match="unknown metric"):
        faithfulness(lens, Noise(2), metrics=["deletoin"], run=QUIET)
    with pytest.raises(ConvlensError, match="steps"):
        faithfulness(lens, Noise(2), steps=0, run=QUIET)
    assert_unchanged(net, before)


def test_reducer_state_round_trip_and_merge():
    from convlens.data import Loader
    from convlens.engine import run_local  # noqa: F401  (the pass the view runs)

    lens = linear_lens()
    data = Noise(6)
    data.with_lens(lens)
    kw = dict(methods=["input_x_gradient", "random"], metrics=["deletion", "randomisation"],
              steps=3)
    parts = []
    for batch in Loader(data, batch_size=3):
        r = Faithfulness(**kw)
        r.attach(lens)
        with torch.no_grad():
            logits = lens(batch.images)
        r.update(batch, {}, logits)
        parts.append(r)
    merged = parts[1].merge(parts[0])  # any order
    fresh = Faithfulness(**kw)
    fresh.load_state_dict(merged.state_dict())
    t1, p1, c1 = merged.finalize(n_boot=50)
    t2, p2, c2 = fresh.finalize(n_boot=50)
    pd.testing.assert_frame_equal(t1, t2)
    assert list(p1[p1.method == "random"]["index"]) == list(range(6))
    import pickle
    assert pickle.loads(pickle.dumps(merged))._lens is None
    with pytest.raises(ConvlensError, match="runs the model"):
        Faithfulness(**kw).update(next(iter(Loader(data, batch_size=2))), {}, torch.zeros(2, 2))


@pytest.mark.slow
def test_saves_loads_back_and_runs_from_the_command_line(tmp_path, capsys):
    from convlens import load_model
    from convlens.cli import main

    res = faithfulness(load_model("builtin:shapes-net"), "builtin:shapes:test", n=4,
                       methods=["saliency", "grad_cam", "random"], steps=3, fractions=[0.5],
                       samples=2, sensitivity_samples=1, n_boot=50, run=QUIET)
    assert res.ranking("pointing_game")["images"].min() == 4  # shapes carry masks
    assert_loads_back(res, tmp_path / "saved")
    out = tmp_path / "cli"
    assert main(["faithfulness", "--model", "builtin:shapes-net", "--data",
                 "builtin:shapes:test", "--n", "3", "--methods", "saliency,random",
                 "--metrics", "deletion,insertion", "--steps", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "deletion AUC" in printed and (out / "manifest.json").is_file()
    assert (out / "curve_deletion.png").is_file() and (out / "ranking.png").is_file()
    assert main(["faithfulness", "--model", "builtin:shapes-net", "--data",
                 "builtin:shapes:test", "--n", "2", "--methods", "nope",
                 "--out", str(tmp_path / "x")]) == 2
    assert "unknown method" in capsys.readouterr().err


SCRIPT = """
import os, sys, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, {tests!r})
os.environ["CONVLENS_TEST_SLOW"] = "1"
from test_faithfulness_view import linear_lens, Noise, KW
from convlens import RunSettings
from convlens.techniques.faithfulness.faithfulness import faithfulness
faithfulness(linear_lens(), Noise(60), out={out!r},
             run=RunSettings(batch_size=4, checkpoint_every=1, progress=False), **KW)
"""
KW = dict(methods=["input_x_gradient", "random"], metrics=["deletion", "road_morf",
                                                           "infidelity"],
          steps=4, fractions=[0.5], samples=3, n_boot=100)


@pytest.mark.slow
def test_resumes_after_sigkill(tmp_path):
    out = tmp_path / "faith"
    code = kill_after_checkpoint(SCRIPT.format(tests=str(Path(__file__).parent), out=str(out)),
                                 out / ".convlens-faithfulness" / "checkpoint.pt")
    assert code == -signal.SIGKILL
    assert not (out / "manifest.json").exists()
    resumed = faithfulness(linear_lens(), Noise(60), out=out, run=QUIET.but(batch_size=7), **KW)
    assert 0 < resumed.params["resumed_from"] < 60
    whole = faithfulness(linear_lens(), Noise(60), run=QUIET.but(batch_size=60), **KW)
    pd.testing.assert_frame_equal(resumed.table, whole.table, rtol=1e-5, atol=1e-7)
    assert (out / "manifest.json").is_file() and not (out / ".convlens-faithfulness").exists()


def test_road_consistency_by_hand():
    """ROAD's rank consistency: Spearman over methods of the MoRF ranks (lower better) and
    the LeRF ranks (higher better), per filling; the verdict says whether imputation agrees
    better. By hand: with imputation the orders agree exactly (rho 1); zero filling reverses
    them (rho -1)."""
    from convlens.techniques.faithfulness.results import FaithfulnessResult

    rows = []
    for m, morf, lerf, zm, zl in (("a", 0.1, 0.9, 0.3, 0.6), ("b", 0.2, 0.8, 0.2, 0.5),
                                  ("c", 0.3, 0.7, 0.1, 0.4)):
        for k, v, better in (("road_morf", morf, "lower"), ("road_lerf", lerf, "higher"),
                             ("road_zero_morf", zm, "lower"), ("road_zero_lerf", zl, "higher")):
            rows.append({"method": m, "metric": k, "mean": v, "low": v, "high": v,
                         "images": 1, "better": better, "rank": 1.0})
    res = FaithfulnessResult(pd.DataFrame(rows), pd.DataFrame(), pd.DataFrame(
        columns=["curve", "method", "x", "mean", "low", "high"]), {})
    rho = res.road_consistency()
    assert rho["noisy linear"] == pytest.approx(1.0)
    assert rho["zero"] == pytest.approx(-1.0)
    assert any("agree better with imputation, as Rong" in line for line in res.verdict())
    only = FaithfulnessResult(pd.DataFrame(rows[:2]), pd.DataFrame(), res.curves, {})
    assert only.road_consistency() == {}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_on_ray_matches_local(local_ray):
    """The engine's Ray dispatch gives the local pass's table: the per-image noise is seeded by
    the dataset index, not by the shard an image lands in."""
    kw = dict(methods=["input_x_gradient", "random"],
              metrics=["deletion", "road_morf", "road_zero_lerf", "infidelity"], steps=4,
              fractions=[0.3, 0.6], samples=3, n_boot=100)
    local = faithfulness(linear_lens(), Noise(12), run=QUIET.but(batch_size=4), **kw)
    remote = faithfulness(linear_lens(), Noise(12),
                          run=QUIET.but(batch_size=4, engine="ray", shard_size=6), **kw)
    assert remote.params["engine"] == "ray"
    pd.testing.assert_frame_equal(local.table, remote.table, rtol=1e-6, atol=1e-9)
    pd.testing.assert_frame_equal(local.curves, remote.curves, rtol=1e-6, atol=1e-9)


def test_cam_layer_found_once_per_lens(monkeypatch):
    """The CAM family's default layer is found once per lens and kept (as its layer table),
    not on every batch, noisy copy (max-sensitivity) and the weight-randomised copy (a forward
    and backward pass each on a transformer), nor for each CAM method anew."""
    from convlens.techniques.gradients import cam

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    lens = Lens(net, mean=(0.0,), std=(1.0,), input_size=(1, 8, 8), labels=["a", "b"])
    before = snapshot(net)
    kw = dict(methods=["grad_cam", "score_cam", "saliency"], steps=2, fractions=[0.5],
              samples=2, sensitivity_samples=2, n_boot=20, run=QUIET.but(batch_size=3))
    found = []
    real = cam.find_cam_layer
    monkeypatch.setattr(cam, "find_cam_layer", lambda lz: found.append(1) or real(lz))
    faithfulness(lens, Noise(7), **kw)
    faithfulness(lens, Noise(3), **kw)
    assert len(found) == 1, found  # before: 40 lookups in the first call
    assert cam.default_cam_layer(lens) == "3"  # the last conv's ReLU
    assert_unchanged(net, before)
    lens.input_size = (1, 16, 16)  # another input size: found anew
    assert cam.default_cam_layer(lens) == "3" and len(found) == 2


def test_pass_takes_a_few_images_at_a_time_and_shows_the_maps_scored(monkeypatch, capsys):
    """Each image costs tens of forward passes per method: the pass hands the reducer at most
    `PASS_BATCH` images (its bar and checkpoints move every few images, whatever the batch
    size of the perturbed rows), and a second bar counts the maps scored, naming the method."""
    from convlens.techniques.faithfulness.faithfulness import PASS_BATCH

    sizes = []
    real = Faithfulness.update
    monkeypatch.setattr(Faithfulness, "update",
                        lambda self, b, a, lg: sizes.append(len(b)) or real(self, b, a, lg))
    faithfulness(linear_lens(), Noise(PASS_BATCH + 3), methods=["saliency", "random"],
                 metrics=["deletion"], steps=2, n_boot=10,
                 run=RunSettings(batch_size=64, progress=True))
    assert sizes == [PASS_BATCH, 3]
    err = capsys.readouterr().err
    assert "maps scored" in err and "saliency" in err and "random" in err
