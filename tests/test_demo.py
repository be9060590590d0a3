"""The demo's budget (issue 24): how much of its work each view's demo step does, chosen once per
model (full on a GPU or with --full, today's quick settings with --quick, cut to fit on a CPU at
a large input) and said in the closing summary; without running the long demo: the steps run
with their compute functions replaced by stubs that record what they were asked."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from convlens import Lens
from convlens.commands import demo as demo_cmd
from convlens.errors import ConvlensError
from convlens.views import LONG_VIEW_S, Budget, DemoContext, Skip


class WideNet(nn.Module):
    """Two strided convs (24 and 32 channels) and a linear layer to 20 classes: cheap at 224 px."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 24, 3, stride=4), nn.ReLU(),
                                      nn.Conv2d(24, 32, 3, stride=4), nn.ReLU())
        self.fc = nn.Linear(32, 20)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


def wide_lens(side: int = 224) -> Lens:
    torch.manual_seed(0)
    return Lens(WideNet(), mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(3, side, side),
                labels=[f"c{i}" for i in range(20)])


def make_ctx(budget: Budget, side: int = 224, n_images: int = 8) -> DemoContext:
    lens = wide_lens(side)
    x = torch.randn(n_images, 3, side, side)
    setting = demo_cmd.Setting("wide", "data", n_scan=5000, n_images=n_images, pairs="warp")
    return DemoContext(lens=lens, data="data", dataset=list(range(5000)), images=lambda: x,
                       folder=None, quick=budget.level == "quick", budget=budget,
                       n_scan=5000, n_images=n_images, setting=setting, progress=False)


@pytest.fixture
def asked(monkeypatch):
    """Every long step's compute function replaced by a stub; returns what each was asked."""
    from convlens.techniques.adversarial import fooling, robustness
    from convlens.techniques.correspondence import demo as corr_demo
    from convlens.techniques.gradients import smoothing
    from convlens.techniques.synthesis import demo as synth_demo

    calls: dict[str, dict] = {}

    def stub(name):
        def f(lens, *args, **kw):
            calls[name] = {"args": args, **kw}
            return object()
        return f

    for module, name in ((synth_demo, "invert"), (synth_demo, "class_model"),
                         (synth_demo, "feature_visualization"), (smoothing, "smoothgrad"),
                         (smoothing, "integrated_gradients"), (fooling, "fool"),
                         (robustness, "robustness"), (corr_demo, "correspondence")):
        monkeypatch.setattr(module, name, stub(name))
    return calls


def run_steps(ctx: DemoContext, calls: dict) -> dict:
    """Run the long views' demo steps on `ctx`; the settings each asked its function for."""
    from convlens.techniques.adversarial import demo as adv
    from convlens.techniques.correspondence import demo as corr
    from convlens.techniques.gradients import demo as grad
    from convlens.techniques.synthesis import demo as synth

    for title, step in (("inversion", synth.step_invert), ("class models", synth.step_class_model),
                        ("feature visualisation", synth.step_feature_visualization),
                        ("SmoothGrad", grad.smoothgrad_step),
                        ("integrated gradients", grad.integrated_gradients_step),
                        ("fooling", adv.step_fool), ("robustness", adv.step_robustness),
                        ("correspondence", corr.step_correspondence)):
        ctx.budget.view = title
        list(step(ctx))
    return {
        "invert": (len(calls["invert"]["args"][0]), calls["invert"]["steps"]),
        "class_model": (len(calls["class_model"]["args"][0]), calls["class_model"]["steps"]),
        "featvis": (list(calls["feature_visualization"]["channels"]),
                    calls["feature_visualization"]["steps"]),
        "smoothgrad": calls["smoothgrad"]["samples"],
        "ig": calls["integrated_gradients"]["steps"],
        "fool": (calls["fool"]["steps"], calls["fool"]["search"]),
        "robustness": len(calls["robustness"]["indices"]),
        "correspondence": calls["correspondence"]["n"],
    }


# today's settings (before the budget): full, --quick, and --quick on an input over 128 px
FULL = {"invert": (4, 200), "class_model": (8, 150), "featvis": (list(range(24)), 128),
        "smoothgrad": 32, "ig": 64, "fool": (50, 3), "robustness": 2000, "correspondence": 100}
QUICK_SMALL = {"invert": (2, 60), "class_model": (8, 40), "featvis": (list(range(12)), 32),
               "smoothgrad": 8, "ig": 32, "fool": (12, 2), "robustness": 200,
               "correspondence": 12}
QUICK_LARGE = {**QUICK_SMALL, "invert": (1, 60), "class_model": (4, 40),
               "featvis": (list(range(6)), 32), "correspondence": 6}


@pytest.mark.parametrize("level,side,expected", [
    ("full", 224, FULL), ("full", 64, FULL),
    ("quick", 64, QUICK_SMALL), ("quick", 224, QUICK_LARGE),
    ("fit", 224, FULL),  # a fast machine: nothing needs cutting
])
def test_full_and_quick_keep_the_old_settings(asked, level, side, expected):
    budget = Budget(level=level, pass_cost=1e-6, large=side > 128)
    assert run_steps(make_ctx(budget, side), asked) == expected
    assert budget.cuts == {} or level == "quick"  # --quick: said in one line, not per view


def test_a_slow_cpu_cuts_the_long_views_and_the_summary_says_what(asked):
    # resnet18 at 224 px on 2 cores: about 0.04 s an image's pass
    budget = Budget(level="fit", pass_cost=0.04, large=True, where="on the CPU at 224 px")
    got = run_steps(make_ctx(budget), asked)
    for view, value in got.items():  # between --quick's and the full settings
        quick, full = QUICK_LARGE[view], FULL[view]
        assert quick <= value <= full or (isinstance(value, tuple) and all(
            q <= v <= f for q, v, f in zip(quick, value, full))), view
    assert got["featvis"][1] < 128 and len(got["featvis"][0]) < 24
    assert got["invert"] != FULL["invert"] and got["fool"][0] < 50
    # each view's work now takes at most about LONG_VIEW_S (the power of 2 nearest to it), or
    # is as small as --quick makes it
    names = {"inversion": "invert", "class models": "class_model", "SmoothGrad": "smoothgrad",
             "feature visualisation": "featvis", "integrated gradients": "ig",
             "fooling": "fool", "robustness": "robustness", "correspondence": "correspondence"}
    for view, seconds in budget.expected.items():
        short = names[view]
        assert seconds <= 2 ** 0.5 * LONG_VIEW_S or got[short] == QUICK_LARGE[short], view
    lines = budget.summary("torchvision:resnet18")
    text = "\n".join(lines)
    assert lines[0].startswith("torchvision:resnet18 runs on the CPU at 224 px, so the demo cut")
    n, s = len(got["featvis"][0]), got["featvis"][1]
    assert f"  Feature visualisation ran {s} of 128 steps on {n} of 24 units." in lines
    assert f"  Inversion ran {got['invert'][1]} of 200 steps" in text
    assert "Run with --full for all of it" in lines[-1]
    assert "on a GPU (--device cuda) the demo runs them in full" in lines[-1]
    budget.gpu_here = True  # a GPU there, the model on the CPU
    assert "this machine has a GPU: with --device cuda" in budget.summary()[-1]
    assert all(line.rstrip().endswith((".", ":", ")")) for line in lines)


def test_cuts_are_powers_of_two_and_stable():
    """The share of the work kept is the power of 2 nearest to LONG_VIEW_S: a machine 20 %
    faster or slower gets the same settings."""
    def cut(cost):
        b = Budget(level="fit", pass_cost=cost)
        b.view = "feature visualisation"
        return b.fit(units=(24, 12), steps=(128, 32))

    assert cut(0.001) == {"units": 24, "steps": 128}   # 3 s: whole
    assert cut(0.04) == cut(0.04 * 1.2) == cut(0.04 / 1.2)
    got = cut(0.04)  # 123 s: 1/8 of the work
    assert got["units"] * got["steps"] == pytest.approx(24 * 128 / 8, rel=0.1)
    assert cut(10.0) == {"units": 12, "steps": 32}     # never below --quick


def test_expected_time_is_announced_for_long_views_only():
    said: list[str] = []
    b = Budget(level="full", pass_cost=0.05, log=said.append)
    b.view = "inversion"
    b.expect(100)   # 5 s: quiet
    b.expect(2400)  # 2 min
    assert said == ["inversion: expect about 2 min"]


def test_budget_of_a_model(monkeypatch):
    """--quick and --full win; on the CPU the model's size decides; a model on another device
    runs in full."""
    large = wide_lens(224)
    b = demo_cmd.budget(large, measured=0.5)
    assert (b.level, b.large, b.where) == ("fit", True, "on the CPU at 224 px")
    assert demo_cmd.multiply_adds(large) == (
        24 * 56 * 56 * 27 + 32 * 14 * 14 * 216 + 20 * 32,   # conv, conv, linear
        2 * 24 * 56 * 56 + 2 * 32 * 14 * 14 + 20)          # conv, ReLU, conv, ReLU, linear
    assert b.pass_cost == demo_cmd.pass_cost(large) < 0.005  # by its size, not as measured
    assert demo_cmd.budget(large, full=True, measured=0.5).level == "full"
    assert demo_cmd.budget(large, quick=True, measured=0.5).level == "quick"
    meta = Lens(WideNet().to("meta"), mean=(0.5,) * 3, std=(0.25,) * 3,
                input_size=(3, 224, 224))
    assert demo_cmd.budget(meta).level == "full"
    # a model that cannot be timed (no gradient to its input): the demo goes on
    frozen = Lens(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2)).requires_grad_(False),
                  mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(3, 8, 8))
    frozen.forward = lambda x: frozen.model(x.detach())
    assert demo_cmd.timed(frozen) is None and demo_cmd.budget(frozen).measured is None


@pytest.mark.slow
def test_pass_cost_of_resnet18_and_the_builtins(asked):
    """resnet18 at 224 px (its layer table, random weights): about 0.04 s; the built-ins at
    most a fiftieth of it: on a CPU their demo keeps every full setting."""
    from convlens.models import load_model

    assert 0.03 < demo_cmd.pass_cost(load_model("torchvision:resnet18", seed=0)) < 0.05
    for builtin in ("builtin:fashion-net", "builtin:shapes-net", "builtin:stamps-net"):
        cost = demo_cmd.pass_cost(load_model(builtin, seed=0))
        assert cost < 0.001, builtin
        budget = Budget(level="fit", pass_cost=cost)
        assert run_steps(make_ctx(budget, 64), asked) == FULL and budget.cuts == {}, builtin


def test_pass_seconds_leaves_the_model_as_found():
    from conftest import assert_unchanged, snapshot

    lens = wide_lens(32)
    lens.model.train()
    before = snapshot(lens.model)
    assert 0 < demo_cmd.pass_seconds(lens) < 5
    assert_unchanged(lens.model, before)


def test_reasons_read_as_sentences():
    assert demo_cmd.reason(ConvlensError("Accuracy unavailable: no labels")) == \
        "accuracy unavailable: no labels."
    assert demo_cmd.reason(Skip("no layer with spatial maps")) == "no layer with spatial maps."
    assert demo_cmd.reason(ConvlensError("FGSM is an L∞ attack.")) == "FGSM is an L∞ attack."
    try:
        raise RuntimeError("shapes do not match")
    except RuntimeError as e:
        assert demo_cmd.reason(e) == ("it failed with an unexpected RuntimeError (shapes do not "
                                      "match); the traceback is above.")


def test_run_demo_summary(monkeypatch, tmp_path):
    """The summary: what ran, what was cut and how to get it, what was skipped and why."""
    from convlens import views
    from convlens.report import site
    from convlens.views import View

    records = [View(name=n, section=9, title=t, line="", function="", demo=n)
               for n, t in (("long", "feature visualisation"), ("bug", "occlusion"),
                            ("nolabels", "robustness"))]

    def long(ctx):
        ctx.budget.fit(units=(24, 12), steps=(128, 32))
        yield "done"

    def bug(ctx):
        raise RuntimeError("boom")
        yield

    def nolabels(ctx):
        ctx.budget.fit(items=(2000, 200))  # cut, but the view is skipped: not reported as cut
        raise ConvlensError("robustness measures accuracy, but the data has no labels")
        yield

    steps = {"long": long, "bug": bug, "nolabels": nolabels}
    slow = wide_lens()
    monkeypatch.setattr(demo_cmd, "pass_cost", lambda lens: 0.04)  # as resnet18's
    monkeypatch.setattr("convlens.techniques.all_views", lambda: records)
    monkeypatch.setattr(views, "resolve", lambda path: steps[path])
    monkeypatch.setattr(site, "build_site", lambda *a, **k: tmp_path / "index.html")
    monkeypatch.setattr(demo_cmd, "context", lambda s, lens, out, quick, progress, full=False:
                        make_ctx(demo_cmd.budget(slow, quick, full, measured=0.04)))
    setting = demo_cmd.Setting("torchvision:wide", "photos/", n_scan=4, n_images=4)
    _, text = demo_cmd.run_demo(tmp_path, settings_=[setting], progress=False)
    lines = text.splitlines()
    assert lines[0].startswith("1 views ran in")
    assert lines[1] == ("torchvision:wide runs on the CPU at 224 px, so the demo cut its "
                        "longest views (to about 10 s each on a 2-core CPU):")
    assert lines[2].startswith("  Feature visualisation ran ") and "of 24 units." in lines[2]
    assert lines[3].startswith("Run with --full for all of it (those views alone would take ")
    assert lines[4:] == [
        "2 skipped:",
        "  torchvision:wide: occlusion was skipped: it failed with an unexpected RuntimeError "
        "(boom); the traceback is above.",
        "  torchvision:wide: robustness was skipped: robustness measures accuracy, but the data "
        "has no labels."]
    _, text = demo_cmd.run_demo(tmp_path, settings_=[setting], progress=False, full=True)
    assert "cut" not in text and "--full" not in text
    _, text = demo_cmd.run_demo(tmp_path, settings_=[setting], progress=False, quick=True)
    assert "--quick ran every view small" in text


def test_full_and_quick_flags(monkeypatch, tmp_path):
    from convlens.cli import main

    seen = {}

    def fake(out, quick=False, full=False, **kw):
        seen.update(quick=quick, full=full)
        return tmp_path / "index.html", "summary"

    monkeypatch.setattr(demo_cmd, "run_demo", fake)
    assert main(["demo", "--full", "--out", str(tmp_path)]) == 0
    assert seen == {"quick": False, "full": True}
    assert main(["demo", "--quick", "--full", "--out", str(tmp_path)]) == 2


def test_correspondence_on_a_small_folder(asked):
    """Warped copies make at most one pair per item: 20 photos give 20 pairs in full, and the
    summary counts the cut against those 20, not 100."""
    from convlens.techniques.correspondence import demo as corr

    for level, pairs in (("full", 20), ("fit", 6)):
        budget = Budget(level=level, pass_cost=0.04, large=True)
        ctx = make_ctx(budget)
        ctx.dataset = list(range(20))
        budget.view = "correspondence"
        list(corr.step_correspondence(ctx))
        assert asked["correspondence"]["n"] == pairs
    assert budget.cuts == {"correspondence": ["on 6 of 20 pairs"]}
