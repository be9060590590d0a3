"""The zoo (issue 24): every torchvision classification model up to 150 M parameters and a list
of timm CNNs, with random seeded weights at a small input, through every view on its defaults
with minimal settings. Each model: no crash, no timeout, a refusal only where the method is
undefined for that model (`UNDEFINED`, each with its reason), and the model's parameters,
buffers, gradients, training flags and hooks as they were. The sweep's machinery is
docs/make_zoo.py, which writes the same sweep as the table in docs/zoo.md.

Part of `make test` (the slow tier; `make zoo` runs it alone). Each model runs with one torch
thread: the models are small at these inputs, so a second thread gains little, and one thread
keeps the sweep's time steady when something else shares the CPU (two threads on a shared
2-core machine took 1 h 43 min once, against about half an hour alone). README.md gives its
measured duration.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_zoo():
    spec = importlib.util.spec_from_file_location("make_zoo", ROOT / "docs" / "make_zoo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_zoo", module)
    spec.loader.exec_module(module)
    return module


zoo = _load_zoo()


def _models() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models) + zoo.TIMM_MODELS


#: refusals where the method is not defined for the model: message pattern -> why
UNDEFINED: dict[str, str] = {
    r"^robustness measures accuracy, but the data's .* none of the model's \d+ labels":
        "accuracy needs data labelled with the model's classes; the sweep's data "
        "(builtin:shapes, 8 shape classes) is not ImageNet's",
}


def _views():
    return zoo.swept_views()


@pytest.mark.slow
@pytest.mark.parametrize("name", _models())
def test_every_view_runs_on(name, tmp_path, one_thread):
    if name.startswith("timm:"):
        pytest.importorskip("timm")
    if zoo.count_params(name) > zoo.MAX_PARAMS:
        pytest.skip(f"over {zoo.MAX_PARAMS / 1e6:.0f} M parameters")
    r = zoo.sweep_model(name, _views(), "builtin:shapes:test:8", timeout=300, train=False,
                        work=tmp_path)
    assert "error" not in r, r.get("error")
    failed = {v: f"{rec['outcome']}: {rec.get('message')} ({rec.get('where', '')})"
              for v, rec in r["views"].items() if rec["outcome"] in ("crash", "timeout")}
    assert not failed, failed
    unexplained = {v: rec["message"] for v, rec in r["views"].items()
                   if rec["outcome"] in ("refused", "skipped")
                   and not any(re.search(p, rec["message"]) for p in UNDEFINED)}
    assert not unexplained, unexplained
    changed = {v: rec["changed"] for v, rec in r["views"].items() if not rec["unchanged"]}
    assert not changed, changed
