"""Build the static HTML site from saved results (manifest.json folders). Never imports torch.

``build_site(inputs, out)``: every input is a result folder, or a folder holding result folders
(searched recursively). Each result gets a page; kinds with more structure (a scan's units, the
t-SNE map) get pages of their own through `PAGE_BUILDERS`. Pictures are copied next to the pages
and load lazily. Every string from a user or a file (labels, layer names, file names) goes
through Jinja2's autoescaping.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..results import MANIFEST, SavedResult, safe_name
from . import pages
from .common import Page, Run, generic_page, template_env


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


def build_site(inputs: list[str | os.PathLike], out: str | os.PathLike,
               title: str = "convlens report") -> Path:
    """Write the site for the results under `inputs` into `out`; returns the index path."""
    out = Path(out)
    roots = [Path(i) for i in inputs]
    folders = find_results(inputs)
    if not folders:
        from ..errors import ConvlensError
        raise ConvlensError("no convlens results (folders with manifest.json) under "
                            + ", ".join(str(i) for i in inputs)
                            + ": run a view with --out DIR first")
    out.mkdir(parents=True, exist_ok=True)
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
        builder = pages.PAGE_BUILDERS.get(run.view.get("page") or "")
        run.pages = builder(run, out, runs) if builder else [generic_page(run, out)]
    env = template_env()
    cross = pages.image_pages(runs, out)
    nav = [{"title": p.title, "href": p.path, "kind": "pages"} for p in cross]
    models = pages.model_sections(runs, cross)
    index = Page("index.html", title, "index.html",
                 {"runs": runs, "cross": cross, "models": models})
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
