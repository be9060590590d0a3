"""Build the static HTML site from saved results (manifest.json folders). Never imports torch.

``build_site(inputs, out)``: every input is a result folder, or a folder holding result folders
(searched recursively). Each result gets a page; kinds with more structure (a scan's units, the
t-SNE map) get pages of their own through `PAGE_BUILDERS`. Pictures are copied next to the pages
and load lazily. Every string from a user or a file (labels, layer names, file names) goes
through Jinja2's autoescaping.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from jinja2 import Environment, PackageLoader, select_autoescape

from ..results import MANIFEST, SavedResult, safe_name

TABLE_ROWS = 300


@dataclass
class Page:
    """One HTML page of the site: its path relative to the site root and what it shows."""

    path: str
    title: str
    template: str
    context: dict = field(default_factory=dict)


@dataclass
class Run:
    """A saved result as the site sees it."""

    id: str
    result: SavedResult
    pages: list[Page] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.result.kind

    @property
    def href(self) -> str:
        return f"runs/{self.id}/index.html"

    @property
    def model_name(self) -> str:
        return (self.result.manifest.get("model") or {}).get("name", "")


def find_results(inputs: list[str | os.PathLike]) -> list[Path]:
    """Result folders under the inputs, in a stable order."""
    found: list[Path] = []
    for inp in inputs:
        p = Path(inp)
        if (p / MANIFEST).is_file():
            found.append(p)
        elif p.is_dir():
            found += sorted(m.parent for m in p.rglob(MANIFEST))
        else:
            from ..errors import ConvlensError
            raise ConvlensError(f"{p} is neither a result folder nor a folder of results")
    seen, out = set(), []
    for f in found:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            out.append(f)
    return out


def _env() -> Environment:
    env = Environment(loader=PackageLoader("convlens.report", "templates"),
                      autoescape=select_autoescape(["html"]))
    env.filters["fmt"] = _fmt
    return env


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, dict)):
        s = json.dumps(v)
        return s if len(s) < 200 else s[:200] + "…"
    return "" if v is None else str(v)


def copy_file(src: Path, site: Path, run_id: str) -> str:
    """Copy a file into the run's folder of the site; returns its path relative to the run page."""
    dst = site / "runs" / run_id / "files" / src.name
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime:
        shutil.copy2(src, dst)
    return f"files/{src.name}"


def table_html_rows(df, limit: int = TABLE_ROWS) -> dict:
    """Columns and rows of a DataFrame for a template (values as display strings)."""
    rows = [[_fmt(v) for v in r] for r in df.head(limit).itertuples(index=False)]
    return {"columns": [str(c) for c in df.columns], "rows": rows, "total": len(df)}


def generic_page(run: Run, site: Path) -> Page:
    """Info, tables and pictures of any result."""
    res = run.result
    pictures = [{"name": name, "src": copy_file(res.picture(name), site, run.id)}
                for name in res.manifest.get("pictures", {})
                if res.picture(name).is_file()]
    tables = {}
    for name in res.manifest.get("tables", {}):
        try:
            tables[name] = table_html_rows(res.table(name))
        except Exception as e:  # a broken table must not break the site
            tables[name] = {"columns": ["error"], "rows": [[str(e)]], "total": 0}
    info = {k: v for k, v in res.info.items()}
    return Page(run.href, f"{run.kind}: {run.id}", "run.html",
                {"run": run, "info": info, "tables": tables, "pictures": pictures,
                 "manifest": res.manifest})


# kind -> function(run, site) -> extra pages (the run's own index page first)
PAGE_BUILDERS: dict[str, Callable[[Run, Path], list[Page]]] = {}


def page_builder(kind: str):
    def deco(fn):
        PAGE_BUILDERS[kind] = fn
        return fn
    return deco


def build_site(inputs: list[str | os.PathLike], out: str | os.PathLike, title: str = "convlens report") -> Path:
    """Write the site for the results under `inputs` into `out`; returns the index path."""
    from . import pages  # noqa: F401  registers the per-kind builders

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    roots = [Path(i) for i in inputs]
    folders = find_results(inputs)
    runs: list[Run] = []
    ids: set[str] = set()
    for f in folders:
        res = SavedResult(f)
        rel = next((f.relative_to(r) for r in roots if f != r and r in f.parents), Path(f.name))
        base = safe_name("_".join(rel.parts) if rel.parts and str(rel) != "." else res.kind)
        rid, k = base, 2
        while rid in ids:
            rid, k = f"{base}-{k}", k + 1
        ids.add(rid)
        runs.append(Run(rid, res))
    for run in runs:
        builder = PAGE_BUILDERS.get(run.kind)
        run.pages = builder(run, out) if builder else [generic_page(run, out)]
    env = _env()
    cross = pages.image_pages(runs, out)
    nav = [{"title": p.title, "href": p.path, "kind": "pages"} for p in cross]
    models = [{"name": r.model_name or r.id, "layers": table_html_rows(r.result.table("layers"), 1000)}
              for r in runs if r.kind == "layers"]
    index = Page("index.html", title, "index.html", {"runs": runs, "cross": cross, "models": models})
    for page in [index] + cross + [p for r in runs for p in r.pages]:
        depth = page.path.count("/")
        root = "../" * depth
        html = env.get_template(page.template).render(title=page.title, root=root, nav=nav,
                                                      site_title=title, **page.context)
        dst = out / page.path
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(html, encoding="utf-8")
    for asset in ("style.css", "site.js", "tsne.js"):
        src = Path(__file__).parent / "static" / asset
        shutil.copy2(src, out / asset)
    return out / "index.html"
