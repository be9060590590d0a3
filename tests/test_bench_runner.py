"""benchmarks/bench.py (issue 28): a row whose outputs differ beyond its tolerance, or that
raises, makes the run fail (exit 1) and says so in the table; a skipped row does not."""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import bench as module
    from suite.base import Row, Skipped

    def rows(ctx):
        x = torch.arange(4.0)
        return [
            Row("fake", "equal", "4 numbers", 4, "items", lambda: x * 2, lambda: x + x,
                "x + x", lambda a, b: float((a - b).abs().max()), 0.0, "max difference"),
            Row("fake", "differs", "4 numbers", 4, "items", lambda: x * 2, lambda: x,
                "x", lambda a, b: float((a - b).abs().max()), 1e-6, "max difference",
                goal=1.0),
            Row("fake", "raises", "4 numbers", 4, "items", lambda: 1 / 0, lambda: x,
                "x", lambda a, b: 0.0, 0.0, "max difference"),
            Skipped("fake", "skipped", "the peer is not installed"),
        ]

    fake = types.ModuleType("suite.fake")
    fake.rows = rows
    monkeypatch.setitem(sys.modules, "suite.fake", fake)
    monkeypatch.setattr(module, "FAMILIES", ("fake",))
    threads = torch.get_num_threads()
    yield module
    torch.set_num_threads(threads)  # main() sets its own


def test_differing_or_failing_rows_fail_the_run(bench, tmp_path, capsys):
    rc = bench.main(["--smoke", "--only", "fake", "--out", str(tmp_path)])
    assert rc == 1
    rows = {r["name"]: r for r in json.loads((tmp_path / "bench-smoke.json").read_text())["rows"]}
    assert rows["equal"]["status"] == "ok" and rows["equal"]["difference"] == 0.0
    assert rows["differs"]["status"] == "DIFFERS" and rows["differs"]["difference"] == 3.0
    assert rows["raises"]["status"] == "error" and "ZeroDivisionError" in rows["raises"]["reason"]
    assert rows["skipped"]["status"] == "skipped"
    md = (tmp_path / "bench-smoke.md").read_text()
    assert "| DIFFERS |" in md and "skipped: the peer is not installed" in md
    assert "FAILED: fake / differs" in capsys.readouterr().err


def test_bad_options_are_one_line_errors(bench, tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["--only", "nope", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        bench.main(["--smoke", "--precision", "fp8", "--out", str(tmp_path)])
