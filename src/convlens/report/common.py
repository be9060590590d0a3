"""What every page builder of the site shares: the page and run records, copying files, tables,
pictures at a readable size, colour bars and legends, and the generic page of a result.
Never imports torch."""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from ..results import SavedResult

TABLE_ROWS = 300
#: pictures narrower than this are enlarged by a whole factor (pixels stay square and sharp)
MIN_DISPLAY = 192


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
    def model(self) -> dict:
        return self.result.manifest.get("model") or {}

    @property
    def model_name(self) -> str:
        return self.model.get("name", "")

    @property
    def model_weights(self) -> str:
        """Where the model's weights came from ("random weights, seed 0", a file, ...)."""
        return self.model.get("weights") or ""

    @property
    def random_weights(self) -> bool:
        return self.model_weights.startswith("random weights")

    @property
    def view(self) -> dict:
        """The view that saved it (its record, as the manifest holds it: `convlens.views`)."""
        return self.result.view

    @property
    def title(self) -> str:
        """The view's name ("occlusion", "guided backprop", ...)."""
        return self.view.get("title") or self.kind.replace("_", " ")

    @property
    def line(self) -> str:
        return self.view.get("line") or ""

    @property
    def order(self) -> tuple[int, int]:
        """Sort key: the seed's order of sections, then the order the records declare."""
        return int(self.view.get("section", 99)), int(self.view.get("order", 0))


def template_env() -> Environment:
    env = Environment(loader=PackageLoader("convlens.report", "templates"),
                      autoescape=select_autoescape(["html"]))
    env.filters["fmt"] = fmt
    return env


def fmt(v) -> str:
    """A value as the command line shows it: 4 significant digits, '-' for none."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, dict)):
        s = json.dumps(v)
        return s if len(s) < 200 else s[:200] + "…"
    if hasattr(v, "tolist"):  # numpy values and arrays from Parquet
        return fmt(v.tolist())
    return str(v)


def copy_file(src: Path, site: Path, run_id: str) -> str:
    """Copy a file into the run's folder of the site; returns its path relative to the run page."""
    dst = site / "runs" / run_id / "files" / src.name
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime:
        shutil.copy2(src, dst)
    return f"files/{src.name}"


def table_html_rows(df, limit: int = TABLE_ROWS) -> dict:
    """Columns and rows of a DataFrame for a template (values as display strings)."""
    rows = [[fmt(v) for v in r] for r in df.head(limit).itertuples(index=False)]
    return {"columns": [str(c) for c in df.columns], "rows": rows, "total": len(df)}


def picture_entry(res: SavedResult, name: str, site: Path, run_id: str, kind: str = "map",
                  prefix: str = "") -> dict | None:
    """A picture copied into the site with the width to show it at: small maps enlarged by a
    whole factor, nothing ever shrunk below its natural width."""
    path = res.picture(name)
    if not path.is_file():
        return None
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
    scale = 1 if kind == "plot" or w >= MIN_DISPLAY else math.ceil(MIN_DISPLAY / max(w, 1))
    return {"name": name, "src": prefix + copy_file(path, site, run_id), "width": w * scale,
            "height": h * scale, "natural": [w, h], "pixelated": scale > 1}


def colorbar(scale: dict, width: int) -> dict:
    """What the template needs to draw a colour bar: CSS gradient, ticks, marks, label."""
    from ..draw import colormap_stops

    lo, hi = float(scale["lo"]), float(scale["hi"])
    span = hi - lo
    marks = [{"name": k, "left": 100.0 * (v - lo) / span if span else 0.0}
             for k, v in (scale.get("marks") or {}).items()]
    return {"gradient": "linear-gradient(to right, "
                        + ", ".join(colormap_stops(scale["cmap"])) + ")",
            "ticks": [fmt(lo), fmt(lo + span / 2), fmt(hi)], "label": scale.get("label", ""),
            "marks": marks, "width": width}


def figures_context(run: Run, site: Path, prefix: str = "") -> list[dict]:
    """The result's figures with their pictures copied and their colour bars ready."""
    res = run.result
    out = []
    for fig in res.figures:
        panels = []
        for p in fig.get("panels", []):
            pic = picture_entry(res, p["picture"], site, run.id, p.get("kind", "map"), prefix)
            if pic is None:
                continue
            bar = colorbar(p["scale"], pic["width"]) if p.get("scale") else None
            panels.append({**p, "pic": pic, "colorbar": bar})
        if panels:
            out.append({"title": fig.get("title", ""), "note": fig.get("note", ""),
                        "panels": panels})
    return out


def downloads(run: Run, site: Path) -> list[dict]:
    """The result's tables as files to download (CSV where saved, else Parquet)."""
    res = run.result
    out = []
    for name, fname in res.manifest.get("tables", {}).items():
        src = res.folder / fname
        csv = src.with_suffix(".csv")
        src = csv if csv.is_file() else src
        if src.is_file():
            try:
                rows = len(res.table(name))
            except Exception:  # noqa: BLE001  a broken table must not break the site
                rows = None
            out.append({"name": name, "href": copy_file(src, site, run.id), "rows": rows,
                        "format": src.suffix.lstrip(".")})
    return out


def generic_page(run: Run, site: Path, figures_only: bool = False) -> Page:
    """A result's page: what it shows and how to read it, its figures (each map with its colour
    bar or legend), the pictures no figure names, the tables as downloads (a few rows shown,
    folded), and the parameters."""
    res = run.result
    figs = figures_context(run, site)
    shown = {p["picture"] for f in figs for p in f["panels"]}
    pictures = [] if figures_only else [
        e for e in (picture_entry(res, name, site, run.id, "plot")
                    for name in res.manifest.get("pictures", {}) if name not in shown
                    and name != "sprites")
        if e is not None]
    tables = {}
    for name in res.manifest.get("tables", {}):
        try:
            tables[name] = table_html_rows(res.table(name), 50)
        except Exception as e:  # noqa: BLE001  a broken table must not break the site
            tables[name] = {"columns": ["error"], "rows": [[str(e)]], "total": 0}
    return Page(run.href, f"{run.title} · {run.model_name or run.id}", "run.html",
                {"run": run, "info": dict(res.info), "tables": tables, "pictures": pictures,
                 "figures": figs, "about": res.about, "downloads": downloads(run, site),
                 "manifest": res.manifest})
