"""The house rules that hold the code together (docs/architecture.md).

The direction of imports between packages is checked by import-linter's contracts in
pyproject.toml (`lint-imports`, run by `make test`); here: no import cycle between any two files,
no file over 500 lines, every family folder shaped alike, and the README's Python examples run as
written.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def import_graph() -> dict[str, set[str]]:
    """Module -> the convlens modules it imports (at module level or inside functions)."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("convlens")
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_files():
    graph = import_graph()
    # a package's __init__ re-exporting its own modules is not a cycle of ideas
    graph = {m: {d for d in deps if not (m.startswith(d + ".") and d != "convlens")}
             for m, deps in graph.items()}
    graph["convlens"] = set()  # the root imports lazily (importlib), by name only
    assert cycles(graph) == []


def test_no_source_file_over_500_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "src").rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500}
    assert long == {}, "cut these along their seams (docs/architecture.md)"


def test_every_family_folder_has_its_records_results_and_figures():
    """One family, one folder: records in __init__ (no torch), results.py, figures.py, demo.py."""
    from convlens.techniques import families

    fams = families()
    assert len(fams) >= 9
    for fam in fams:
        folder = ROOT / "src" / "convlens" / "techniques" / fam
        for name in ("__init__.py", "results.py", "figures.py", "demo.py"):
            assert (folder / name).is_file(), f"{fam}/{name}"
        init = (folder / "__init__.py").read_text()
        assert "register(" in init and "import torch" not in init, fam
    # listing the views imports no torch (the report and --help stay light)
    code = ("import sys; from convlens.techniques import all_views; all_views(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_no_pyplot_state():
    """Pictures are drawn with matplotlib's Figure: no pyplot, no matplotlib.use (a notebook's
    backend is the notebook's)."""
    bad = [str(p.relative_to(ROOT)) for p in (ROOT / "src").rglob("*.py")
           if re.search(r"^\s*(import matplotlib\.pyplot|from matplotlib import pyplot|"
                        r"matplotlib\.use\()", p.read_text(encoding="utf-8"), re.M)]
    assert bad == []


def test_import_contracts_hold():
    """The same check `make test` runs, so that a plain `pytest` notices a broken arrow too."""
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.skip("import-linter is not installed (pip install import-linter)")
    r = subprocess.run([str(exe), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


def readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, re.S)


@pytest.mark.slow
def test_readme_python_examples_run_as_written(tmp_path, monkeypatch):
    """Every ```python block of the README, in order, in one namespace, in a folder holding
    what the examples name: `photos/` (class folders of images) and `r18.pth` (a ResNet-18
    state dict, random weights)."""
    import torch
    import torchvision

    from conftest import photo_folder

    photo_folder(tmp_path / "photos", 3, lambda i: (160 + 20 * i, 200))
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    monkeypatch.chdir(tmp_path)
    blocks = readme_blocks()
    assert blocks, "the README has no Python example"
    namespace: dict = {}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as e:  # say which block failed
            raise AssertionError(f"README python block {i + 1} failed: {type(e).__name__}: {e}"
                                 f"\n{code}") from e
