"""Results on disk: ``DIR/manifest.json`` beside ``.npy`` arrays, ``.parquet`` tables and ``.png``
pictures.

A technique returns a `Result` (tensors on the CPU plus metadata). ``result.save(dir)`` writes
its arrays, tables and pictures and a manifest that says what was run, with which versions, and
which file holds what. `read_manifest` / `SavedResult` read them back without torch, for the
report.

A subclass implements ``arrays()``, and optionally ``tables()``, ``pictures()``, ``info()``,
and for the report ``about`` (one or two sentences: what the view shows and how to read it) and
``figures()``: rows of `panel`s, each a picture with what a reader needs beside it — its colour
scale with units (`scale`), or the legend of a class map, and the lines under it (target,
prediction). The report draws colour bars and legends from these, so every map has its scale.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import platform
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .views import view_info

MANIFEST = "manifest.json"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(name: str) -> str:
    """A file-name-safe version of a layer or item name (``features.3`` stays,
    ``a/b`` → ``a_b``)."""
    return _SAFE.sub("_", str(name)).strip("._") or "x"


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if hasattr(v, "tolist"):  # torch tensors without importing torch
        return v.tolist()
    return str(v)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("convlens", "torch", "torchvision", "numpy"):
        m = sys.modules.get(mod)
        if m is not None:
            out[mod] = getattr(m, "__version__", "?")
    return out


def lens_info(lens) -> dict[str, Any]:
    """What the manifest says about a model."""
    if lens is None:
        return {}
    return {"name": lens.name, "weights": getattr(lens, "weights", None),
            "input_size": list(lens.input_size), "mean": list(lens.mean),
            "std": list(lens.std), "value_range": list(lens.value_range),
            "labels": lens.labels}


def as_numpy(a) -> np.ndarray:
    """A tensor (detached, on the CPU) or array-like as a numpy array."""
    if hasattr(a, "detach"):
        a = a.detach().cpu()
        if str(a.dtype) == "torch.bfloat16":
            a = a.float()
        a = a.numpy()
    return np.asarray(a)


class Result:
    """Base of every result: what to save and how."""

    kind: str = "result"
    #: what the view shows and how to read it, for the report (one or two sentences)
    about: str = ""

    def arrays(self) -> dict[str, Any]:
        return {}

    def figures(self) -> list[dict[str, Any]]:
        """Rows of panels for the report: ``[figure(title, [panel(...), ...], note), ...]``."""
        return []

    def tables(self) -> dict[str, Any]:  # name -> pandas DataFrame
        return {}

    def pictures(self) -> dict[str, np.ndarray | Callable[[str], None]]:
        """name -> uint8 image, or a function that writes the PNG to the path it is given."""
        return {}

    def info(self) -> dict[str, Any]:
        return {}

    def files(self) -> dict[str, tuple[str, Path]]:
        """Arrays and tables already on disk, too large to hold in memory: ``name ->
        ("arrays" | "tables", path)``. `save` copies each file (never loading it) unless the
        folder already holds it, and lists it in the manifest under `name`."""
        return {}

    def _repr_html_(self, limit: int = 12) -> str:
        """Jupyter shows a result as its pictures (the first `limit`) and a few facts."""
        import html
        import tempfile

        from PIL import Image

        pics = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name, pic in list(self.pictures().items())[:limit]:
                if callable(pic):
                    path = os.path.join(tmp, "p.png")
                    pic(path)
                    pic = np.asarray(Image.open(path).convert("RGB"))
                pics[name] = pic
        facts = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))[:200]}</li>"
                        for k, v in list(self.info().items())[:8])
        return (f"<div><b>convlens {html.escape(self.kind)}</b><ul>{facts}</ul>"
                + pictures_html(pics, limit) + "</div>")

    def show(self) -> None:
        """Display in a notebook (IPython), or print where there is none."""
        try:
            from IPython.display import HTML, display
        except ImportError:
            print(f"convlens {self.kind}: {self.info()}")
            return
        display(HTML(self._repr_html_()))

    def save(self, out: str | os.PathLike, lens=None, command: list[str] | None = None,
             pictures: bool = True, model: dict | None = None) -> Path:
        """Write arrays, tables, pictures and ``manifest.json`` into `out`; returns the folder.

        `model`: the manifest's model entry when there is no `lens` (a view computed from
        another saved result, e.g. a scan, records that result's model)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        manifest: dict[str, Any] = {
            "kind": self.kind,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": versions(),
            "command": command,
            "model": lens_info(lens) if lens is not None else (model or {}),
            "info": _jsonable(self.info()),
            "arrays": {}, "tables": {}, "pictures": {},
            "about": self.about, "figures": _jsonable(self.figures()) if pictures else [],
        }
        manifest["view"] = view_info(self.kind)
        manifest["view"]["title"] = self.view_title() or manifest["view"]["title"]
        manifest["result"] = f"{type(self).__module__}:{type(self).__qualname__}"
        manifest["per_image"] = [list(p) for p in self.per_image()] if pictures else []
        manifest["per_unit"] = _jsonable(self.per_unit()) if pictures else {}
        arrays, tables = dict(self.arrays()), dict(self.tables())
        manifest["fields"] = self._fields(arrays, tables)
        for name, a in arrays.items():
            f = f"{safe_name(name)}.npy"
            np.save(out / f, as_numpy(a), allow_pickle=False)
            manifest["arrays"][name] = f
        for name, df in tables.items():
            f = f"{safe_name(name)}.parquet"
            df.to_parquet(out / f, index=False)
            if not name.startswith("_field_"):
                df.to_csv(out / f"{safe_name(name)}.csv", index=False)
            manifest["tables"][name] = f
        for name, (where, src) in self.files().items():  # placed by copying, never loaded
            dst = out / Path(src).name
            if not (dst.exists() and os.path.samefile(src, dst)):
                shutil.copyfile(src, dst)
            manifest[where][name] = dst.name
        if pictures:
            from .draw import save_png
            for name, pic in self.pictures().items():
                f = f"{safe_name(name)}.png"
                if callable(pic):
                    pic(str(out / f))
                else:
                    save_png(out / f, pic)
                manifest["pictures"][name] = f
        tmp = out / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, out / MANIFEST)  # a reader never sees half a manifest
        return out


    def per_unit(self) -> dict[str, dict[str, dict[str, Any]]]:
        """For the report's page of each unit: ``{layer: {channel: {"picture": name, "value":
        v}}}``, a picture of this result that belongs to that unit (e.g. the image optimised to
        excite it). Default: none."""
        return {}

    def view_title(self) -> str | None:
        """The report's title of this result when it differs from its view's (e.g. the top
        images of random directions rather than of units); None: the view's title."""
        return None

    # -- the one save/load mechanism ----------------------------------------------------------
    def per_image(self) -> list[list[str]]:
        """For the report's page of each image: per input image, the names of its pictures:
        first the input as shown (the report tells images apart by its pixels), then the picture
        the images page shows for this view (an overlay, say), then any others. Default: none
        (not a per-image view)."""
        return []

    def _fields(self, arrays: dict, tables: dict) -> dict[str, dict]:
        """How each dataclass field is stored: a reference to an array or a table of `arrays` /
        `tables` (the same object), else its own ``_field_NAME`` array or table (added to
        them), else a JSON value. `load` reads them back."""
        if not dataclasses.is_dataclass(self):
            return {}
        out: dict[str, dict] = {}
        for f in dataclasses.fields(self):
            if not f.init:
                continue
            v = getattr(self, f.name)
            if v is None:
                out[f.name] = {"value": None}
            elif _is_array(v) or _is_table(v):
                how, store = ("array", arrays) if _is_array(v) else ("table", tables)
                # the same object under the name arrays()/tables() gave it, else its own file
                name = next((k for k, a in store.items() if a is v), f"_field_{f.name}")
                store[name] = v
                out[f.name] = {how: name}
            elif isinstance(v, (list, tuple)) and v and all(_is_array(a) for a in v):
                names = []
                for j, a in enumerate(v):
                    names.append(f"_field_{f.name}_{j}")
                    arrays[names[-1]] = a
                out[f.name] = {"arrays": names}
            else:
                out[f.name] = {"value": _jsonable(v)}
        return out

    @classmethod
    def load(cls, folder: str | os.PathLike, mmap: bool = False):
        """A saved result read back as this type, through the fields its manifest lists
        (arrays as tensors where torch is loaded and the field is a tensor; with `mmap`, large
        arrays stay on disk until read)."""
        saved = SavedResult(folder)
        return saved.load_as(cls, mmap=mmap)


def _is_array(v) -> bool:
    return (isinstance(v, np.ndarray)
            or type(v).__module__.startswith("torch") and hasattr(v, "shape"))


def _is_table(v) -> bool:
    return type(v).__name__ == "DataFrame" and type(v).__module__.startswith("pandas")


def load_result(folder: str | os.PathLike, mmap: bool = False) -> Result:
    """Any saved result read back as the type that saved it (``manifest.json``'s ``result``)."""
    import importlib

    from .errors import ConvlensError

    saved = SavedResult(folder)
    path = saved.manifest.get("result")
    if not path:
        raise ConvlensError(f"{saved.folder}: saved before results recorded their type; save "
                            "it again to load it")
    module, _, qualname = path.partition(":")
    if not module.startswith("convlens."):
        raise ConvlensError(f"{saved.folder}: {path!r} is not a convlens result type")
    cls = importlib.import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    return cls.load(saved.folder, mmap=mmap)


class SavedResult:
    """A saved result read back (no torch): ``.manifest``, ``.array(name)``, ``.table(name)``."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if not path.is_file():
            from .errors import ConvlensError
            raise ConvlensError(f"{self.folder} holds no {MANIFEST}: not a convlens result")
        self.manifest = json.loads(path.read_text())

    @property
    def kind(self) -> str:
        return self.manifest.get("kind", "?")

    @property
    def info(self) -> dict:
        return self.manifest.get("info", {})

    @property
    def about(self) -> str:
        return self.manifest.get("about") or ""

    @property
    def figures(self) -> list[dict]:
        return self.manifest.get("figures") or []

    def array(self, name: str, mmap: bool = False) -> np.ndarray:
        return np.load(self.folder / self.manifest["arrays"][name],
                       mmap_mode="r" if mmap else None, allow_pickle=False)

    def table(self, name: str):
        import pandas as pd
        return pd.read_parquet(self.folder / self.manifest["tables"][name])

    def picture(self, name: str) -> Path:
        return self.folder / self.manifest["pictures"][name]

    @property
    def view(self) -> dict:
        """Section, title, line and order of the view that saved it (`convlens.views`)."""
        return self.manifest.get("view") or view_info(self.kind)

    @property
    def per_unit(self) -> dict[str, dict[str, dict]]:
        """Per layer and channel, a picture of this result that belongs to that unit."""
        return self.manifest.get("per_unit") or {}

    @property
    def per_image(self) -> list[list[str]]:
        """Per input image, the names of its pictures (`Result.per_image`)."""
        return self.manifest.get("per_image") or []

    def load_as(self, cls, mmap: bool = False):
        """Build `cls` (a dataclass `Result`) from the fields the manifest lists."""
        from .errors import ConvlensError

        fields = self.manifest.get("fields")
        if fields is None or not dataclasses.is_dataclass(cls):
            raise ConvlensError(f"{self.folder}: not a result that {cls.__name__} can load")
        want = self.manifest.get("result", "").rpartition(":")[2]
        if want and want != cls.__qualname__ and not any(
                b.__qualname__ == want for b in cls.__mro__):
            raise ConvlensError(f"{self.folder} holds a {want} ({self.kind!r}), not a "
                                f"{cls.__name__}")
        torch = sys.modules.get("torch")  # never imported here: the report reads without torch
        hints = {f.name: str(f.type) for f in dataclasses.fields(cls)}
        kwargs = {}
        for name, how in fields.items():
            if name not in hints:
                continue
            tensor = torch is not None and "Tensor" in hints[name]
            if "array" in how:
                kwargs[name] = self._array(how["array"], mmap, tensor)
            elif "arrays" in how:
                kwargs[name] = [self._array(a, mmap, tensor) for a in how["arrays"]]
            elif "table" in how:
                kwargs[name] = self.table(how["table"])
            else:
                v = how.get("value")
                kwargs[name] = tuple(v) if isinstance(v, list) and hints[name].startswith(
                    "tuple") else v
        obj = cls(**kwargs)
        restored = getattr(obj, "_loaded", None)
        if callable(restored):
            restored(self)
        return obj

    def _array(self, name: str, mmap: bool, tensor: bool):
        a = self.array(name, mmap=mmap)
        if tensor:
            import importlib
            return importlib.import_module("torch").from_numpy(np.array(a))
        return a


def scale(lo: float, hi: float, label: str, cmap: str = "inferno",
          marks: dict[str, float] | None = None) -> dict[str, Any]:
    """A panel's colour scale: the colour map from `lo` to `hi`, and what the values are
    (`label`, with units). `marks` are values to point out on the bar (e.g. the clean image's
    probability)."""
    return {"cmap": cmap, "lo": float(lo), "hi": float(hi), "label": label,
            "marks": {k: float(v) for k, v in (marks or {}).items()}}


def panel(picture: str, title: str = "", caption: Sequence[str] = (),
          scale: dict[str, Any] | None = None,
          legend: Sequence[tuple[Sequence[int], str]] | None = None,
          kind: str = "map") -> dict[str, Any]:
    """One picture of a figure. `kind`: ``"image"`` (an input), ``"map"`` (values through a
    colour map: give `scale`, or `legend` for a class map) or ``"plot"`` (a chart with its own
    axes, shown at its natural size)."""
    return {"picture": picture, "title": title, "caption": [str(c) for c in caption],
            "scale": scale, "kind": kind,
            "legend": None if legend is None else [
                ["#%02x%02x%02x" % tuple(int(v) for v in colour[:3]), str(name)]
                for colour, name in legend]}


def figure(title: str, panels: Sequence[dict[str, Any]], note: str = "") -> dict[str, Any]:
    """A row of panels (one image and its maps, say) under a title."""
    return {"title": title, "panels": list(panels), "note": note}


def read_manifest(folder: str | os.PathLike) -> SavedResult:
    return SavedResult(folder)


def png_data_uri(image: np.ndarray) -> str:
    """An uint8 image as a ``data:image/png;base64,...`` URI."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def pictures_html(pictures: dict, limit: int = 24) -> str:
    """Notebook HTML: a flex row of titled pictures (arrays only; callables are skipped), every
    string escaped."""
    import html

    cells = []
    for name, pic in list(pictures.items())[:limit]:
        if callable(pic):
            continue
        cells.append(f'<figure style="margin:4px"><img src="{png_data_uri(pic)}" '
                     f'style="image-rendering:pixelated;max-width:320px"/>'
                     f'<figcaption style="font-size:11px">{html.escape(str(name))}</figcaption>'
                     f'</figure>')
    return '<div style="display:flex;flex-wrap:wrap">' + "".join(cells) + "</div>"
