"""What every page builder of the site shares: the page and run records, copying files,
tables as rows, and the generic page of a result. Never imports torch."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from ..results import SavedResult

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

    @property
    def model_weights(self) -> str:
        """Where the model's weights came from ("random weights, seed 0", a file, ...)."""
        return (self.result.manifest.get("model") or {}).get("weights") or ""

    @property
    def random_weights(self) -> bool:
        return self.model_weights.startswith("random weights")


def template_env() -> Environment:
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
