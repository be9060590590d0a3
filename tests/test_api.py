"""The public API is even, and read from the view records: every view (`convlens.views.View`) is
`convlens.<name>` and `convlens <name-with-dashes>`; every function that takes data takes a
dataset or a spec string, every function that takes a model a `Lens` or a bare `nn.Module`
(anything else is a one-line `ConvlensError`); every result saves, loads back through the one
mechanism (`convlens.load_result`) and saves again to the same manifest; showing a result in a
notebook leaves matplotlib's backend alone; and no view changes the model."""
from __future__ import annotations

import inspect
import json
import re

import matplotlib
import pytest
import torch

import convlens
from conftest import assert_unchanged, snapshot
from convlens import ConvlensError
from convlens.techniques import all_views
from convlens.views import resolve

SPEC = "builtin:shapes:test:24"
VIEWS = {v.name: v for v in all_views()}
CALLED = sorted(n for n, v in VIEWS.items() if v.argument in ("images", "model", "data", "scan",
                                                                 "codes"))


@pytest.fixture(scope="module")
def tiny_rgb():
    """An untrained conv net for 3x64x64 input, as a bare module and as a Lens."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(4),
        torch.nn.Conv2d(4, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(24, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))
    lens = convlens.Lens(net, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(3, 64, 64))
    return net, lens


@pytest.fixture(scope="module")
def scan_folder(tiny_rgb, tmp_path_factory):
    out = tmp_path_factory.mktemp("scan")
    convlens.scan(tiny_rgb[1], SPEC, topk=2, out=out, run=convlens.RunSettings(progress=False))
    return out


def call(view, model, tiny_rgb, scan_folder, data=SPEC, quick=None):
    fn = view.load()
    arg = view.argument
    quick = view.quick if quick is None else quick
    if arg == "images":
        return fn(model, torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)),
                  **quick)
    if arg == "model":
        return fn(model, **quick)
    if arg == "data":
        return fn(model, data, **quick)
    if arg == "scan":  # a view of a scanned layer: the scan's last one unless quick names one
        layer = convlens.load_result(scan_folder).layers[-1]
        kw = {"layer": layer} if "layer" in inspect.signature(fn).parameters else {}
        return fn(scan_folder, **{**kw, **quick})
    if arg == "codes":
        return fn(convlens.cnn_codes(tiny_rgb[1], SPEC, run=convlens.RunSettings(progress=False)),
                  **quick)
    raise AssertionError(f"{view.name}: takes {arg!r}?")


def test_every_view_is_public_and_has_its_command():
    from convlens.cli import build_parser
    from convlens.commands.common import COMMANDS

    build_parser()
    for name, view in VIEWS.items():
        assert getattr(convlens, name) is view.load(), name
        assert view.command in COMMANDS or not view.command_line, f"{name}: no command"
        assert view.command == name.replace("_", "-")
        if view.result:
            resolve(view.result)
        for public, path in view.exports.items():
            assert getattr(convlens, public) is resolve(path)
        family = view.function.split(":")[0].split(".")[:2]
        assert family[0] == "techniques" or view.function.startswith("lens:"), view.function
    assert set(convlens.__all__) >= set(VIEWS)


@pytest.mark.parametrize("name", CALLED)
def test_a_view_takes_a_module_or_a_lens_leaves_it_alone_and_its_result_loads_back(
        name, tiny_rgb, scan_folder, tmp_path):
    net, lens = tiny_rgb
    view = VIEWS[name]
    before = snapshot(net)
    res = call(view, lens, tiny_rgb, scan_folder)
    if view.argument in ("images", "data"):  # a bare module (the images tell its input size)
        call(view, net, tiny_rgb, scan_folder)
    assert_unchanged(net, before)
    if view.result:
        assert isinstance(res, resolve(view.result))
    # one save/load mechanism: save, load by the recorded type, save again: the same manifest
    res.save(tmp_path / "a", lens=lens)
    back = convlens.load_result(tmp_path / "a")
    assert type(back) is type(res)
    back.save(tmp_path / "b", lens=lens)
    a, b = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in "ab")
    for key in ("kind", "info", "arrays", "tables", "fields", "view", "per_image", "figures"):
        assert a.get(key) == b.get(key), f"{name}: {key} differs after loading"
    for pics in a.get("per_image", []):
        assert all(p in a["pictures"] for p in pics), f"{name}: per_image names no picture"
    # ... and the same report page
    from convlens.report.site import build_site

    pages = []
    for d in "ab":
        build_site([tmp_path / d], tmp_path / f"site_{d}")
        page = next((tmp_path / f"site_{d}" / "runs").glob("*/index.html"))
        text = page.read_text().replace(str(tmp_path / d), "RESULT")
        pages.append(re.sub(r"\d{4}-\d\d-\d\dT[\d:]+\+00:00", "WHEN", text))  # when saved
    assert pages[0] == pages[1], f"{name}: the loaded result's report page differs"
    # a notebook shows it without switching matplotlib's backend
    matplotlib.use("svg")
    res._repr_html_()
    assert matplotlib.get_backend() == "svg", f"{name} switched the notebook's backend"


@pytest.mark.parametrize("name", sorted(n for n, v in VIEWS.items() if v.argument == "data"))
def test_data_views_take_a_spec_or_a_dataset(name, tiny_rgb, scan_folder):
    net, lens = tiny_rgb
    view = VIEWS[name]
    call(view, lens, tiny_rgb, scan_folder, data=convlens.load_data(SPEC))
    with pytest.raises(ConvlensError, match="data spec"):
        call(view, lens, tiny_rgb, scan_folder, data=42)
    with pytest.raises(ConvlensError, match="nn.Module"):
        call(view, "builtin:shapes-net", tiny_rgb, scan_folder)


@pytest.mark.parametrize("name", sorted(n for n, v in VIEWS.items() if v.argument == "images"))
def test_image_views_refuse_what_is_not_a_model(name, tiny_rgb, scan_folder):
    with pytest.raises(ConvlensError, match="nn.Module"):
        call(VIEWS[name], object(), tiny_rgb, scan_folder)


def test_filters_takes_a_module(tiny_rgb):
    net, lens = tiny_rgb
    assert convlens.filters(net).weights.shape == convlens.filters(lens).weights.shape


def test_scan_is_one_function():
    import types

    assert isinstance(convlens.scan, types.FunctionType)
    assert convlens.scan.__module__ == "convlens.techniques.units.scan"


class _Scores:
    """What a Hugging Face classifier returns: an object with `logits` (and more)."""

    def __init__(self, logits, hidden):
        self.logits, self.hidden_states = logits, hidden


class _ObjectOutput(torch.nn.Module):
    """The tiny net of `tiny_rgb`, returning an object with `logits` rather than a tensor."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        h = self.net[:7](x)
        return _Scores(self.net[7:](h), (h,))


@pytest.mark.parametrize("name", CALLED)
def test_a_model_whose_output_is_an_object_with_logits_runs_every_view(name, tiny_rgb,
                                                                       scan_folder, tmp_path):
    """The output selector (`Lens(output=...)`, default: the logits of an object or a dict,
    the first tensor of a tuple): every view runs on such a model and gives what it gives on
    the same net returning a tensor; the model is left as it was."""
    net, lens = tiny_rgb
    wrapped = _ObjectOutput(net)
    olens = convlens.Lens(wrapped, mean=lens.mean, std=lens.std, input_size=lens.input_size)
    before = snapshot(wrapped)
    view = VIEWS[name]
    if view.argument == "scan":  # a view of a saved scan: scan the object-output model
        scan_folder = tmp_path / "scan"
        convlens.scan(olens, SPEC, topk=2, out=scan_folder,
                      run=convlens.RunSettings(progress=False))
    # the quick settings' layer names, as the wrapper names them
    quick = {k: ([f"net.{n}" for n in v] if k == "layers" else
                 f"net.{v}" if k == "objective" else v) for k, v in view.quick.items()}
    call(view, olens, tiny_rgb, scan_folder, quick=quick)
    assert_unchanged(wrapped, before)


def test_output_selector():
    from convlens.lens import select_output

    t = torch.ones(2, 3)
    assert select_output(t) is t
    assert select_output({"logits": t, "aux": None}) is t
    assert select_output((t, torch.zeros(2))) is t
    assert select_output(_Scores(t, None)) is t
    assert select_output({"scores": t}, "scores") is t
    assert select_output((None, t), 1) is t
    assert select_output({"a": {"b": t}}, lambda o: o["a"]["b"]) is t
    with pytest.raises(ConvlensError, match="output="):
        select_output({"a": t})
    with pytest.raises(ConvlensError, match="has no 'logits'"):
        select_output({"a": t}, "logits")
