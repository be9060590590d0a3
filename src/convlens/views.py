"""The view record: one `View` per view, declared once inside its family
(``techniques/<family>/__init__.py``: ``VIEWS = [View(...), ...]``).

The public API (``convlens.<name>``), the command line (``convlens <name-with-dashes>``), the
demo (its `demo` step), the report (section, title and line, written into each saved result's
manifest) and the API tests all read these records, so a new view is a new family folder (or a
module and a record in one) and nothing else to edit.

This module imports neither torch nor any family: a record names its function, result type,
command and demo step as ``"module:attribute"`` strings (relative to ``convlens``), resolved on
first use. It sits beside `results`, at the bottom of the layers, so the report may read it.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

#: (section number, section title): the seed's sections, in its order; 10+ go beyond the seed
SECTIONS: list[tuple[int, str]] = [
    (1, "Layer activations and first-layer weights"),
    (2, "Images that maximally activate a neuron"),
    (3, "Embedding the codes with t-SNE"),
    (4, "Occluding parts of the image"),
    (5, "The data gradient and friends"),
    (6, "Reconstructing images from CNN codes"),
    (7, "How much spatial information is preserved"),
    (8, "Performance as a function of image attributes"),
    (9, "Fooling ConvNets"),
]


@dataclass(frozen=True)
class Option:
    """One command-line option of a view, as data: ``Option("--steps", type=int, default=50,
    help="...", kwarg="steps")``. `kwarg` is the function's parameter the value goes to (default:
    the option's name with underscores); ``kwarg=None`` keeps it for the command only.
    `type` is a callable or the name of one of the command line's shared types
    (``"positive_int"``, ``"positive_float"``, ``"fraction"``, ``"layer_list"``, ...)."""

    flag: str
    help: str
    type: Any = None
    default: Any = None
    choices: tuple | None = None
    metavar: str | None = None
    action: str | None = None
    kwarg: str | None = ""

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def parameter(self) -> str | None:
        return self.dest if self.kwarg == "" else self.kwarg


@dataclass(frozen=True)
class View:
    """One view, declared once in its family.

    Attributes:
        name: the API function's name; the command is the same with dashes
            (``guided_backprop`` -> ``convlens guided-backprop``).
        section: the seed's section (1-9; 10 and above: beyond the seed).
        title: the report's title of the view.
        line: one line on what it shows (the index, ``--help``).
        function: ``"techniques.gradients.gradients:saliency"``: the public function.
        result: ``"techniques.gradients.results:GradientMaps"``: the result type it returns.
        kinds: result kinds it saves under (the report groups them under this view); default
            ``(name,)``; a kind ending in ``*`` matches a prefix (``smoothgrad*``).
        inputs: what its command reads: ``"images"`` (``--image FILE`` or ``--data SPEC --n N``:
            the function is called as ``f(lens, x, **options)``), ``"model"`` (``f(lens,
            **options)``), or ``None`` when the command is hand-written in ``commands/``.
        options: the command's own options (beyond model, images, output).
        demo: ``"techniques.<family>.demo:step"``: the demo step, a function of a `DemoContext`
            that returns results (or raises `Skip` with the reason); None: not in the demo.
        exports: further public names the family offers through ``convlens.<name>`` (result
            types, helpers), as ``{"Name": "module:attribute"}``.
        takes: what the function takes after the model, for the API tests when `inputs` is
            None: ``"images"``, ``"model"`` (nothing), ``"data"`` (a dataset or a spec),
            ``"scan"`` (a scan's folder) or ``"codes"``; default: `inputs`.
        quick: keyword arguments that make a run small (the API tests use them).
        command_line: False for a view with no command of its own (the training monitor runs
            inside ``convlens train --monitor``).
        page: the report's page builder for results that need more than the generic page
            (``"scan"``, ``"units"``, ``"tsne"``: `convlens.report.pages.PAGE_BUILDERS`).
    """

    name: str
    section: int
    title: str
    line: str
    function: str
    result: str = ""
    kinds: tuple[str, ...] = ()
    inputs: str | None = "images"
    options: tuple[Option, ...] = ()
    demo: str | None = None
    exports: dict[str, str] = field(default_factory=dict)
    takes: str | None = None
    quick: dict[str, Any] = field(default_factory=dict)
    page: str | None = None
    command_line: bool = True

    @property
    def argument(self) -> str | None:
        """What the function takes after the model (see `takes`)."""
        return self.takes or self.inputs

    @property
    def command(self) -> str:
        return self.name.replace("_", "-")

    def matches(self, kind: str) -> bool:
        for k in self.kinds or (self.name,):
            if kind == k or (k.endswith("*") and kind.startswith(k[:-1])):
                return True
        return False

    def load(self) -> Callable:
        """The view's function (imports its family's compute module)."""
        return resolve(self.function)

    def info(self, order: int = 0) -> dict[str, Any]:
        """What a saved result's manifest says of its view (the report reads it)."""
        return {"name": self.name, "section": self.section, "title": self.title,
                "line": self.line, "order": order, "page": self.page}


def resolve(path: str):
    """``"techniques.x.y:attr"`` -> the attribute (``convlens.techniques.x.y.attr``)."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(f"convlens.{module}"), attr)


class Skip(Exception):
    """A demo step that does not apply to this model or data: the message says why."""


@dataclass
class DemoContext:
    """What a demo step gets: the model and its data, the images explained one by one, how
    much to do, and what earlier steps left (``state``: e.g. the scan's folder).

    Attributes:
        lens: the model (a `Lens`).
        data: the data spec (str) and `dataset` the dataset it names.
        images: a function returning the ``(N, C, H, W)`` batch explained one by one.
        quick: fewer images, steps and units; `lighter`: quick on a large input.
        folder: where this model's results go (``OUT/<model>``).
        n_scan: items for the dataset pass; `n_images`: images explained one by one.
        setting: the demo's setting of this model (occlusion window, attributes, pairs, ...).
        progress: show progress bars.
        state: what earlier steps left for later ones.
    """

    lens: Any
    data: str
    dataset: Any
    images: Callable[[], Any]
    folder: Any
    quick: bool = False
    lighter: bool = False
    n_scan: int = 500
    n_images: int = 4
    setting: Any = None
    progress: bool = True
    state: dict = field(default_factory=dict)


#: a demo step returns (folder name, result) pairs and, optionally, a detail line for the log
DemoOutput = Iterable[tuple[str, Any]]


#: every view declared so far, in the order the families declared them
REGISTRY: list[View] = []


def register(*views: View) -> list[View]:
    """Declare a family's views (``VIEWS = register(View(...), ...)`` in its ``__init__``)."""
    for v in views:
        if any(o.name == v.name for o in REGISTRY):
            raise ValueError(f"view {v.name!r} is declared twice")
        REGISTRY.append(v)
    return list(views)


def view_for(kind: str) -> View | None:
    """The declared view a result kind belongs to (None: none declared)."""
    return next((v for v in REGISTRY if v.matches(kind)), None)


def view_info(kind: str) -> dict[str, Any]:
    """The manifest's ``view`` entry for a result kind: section, title, line and its order."""
    v = view_for(kind)
    if v is None:
        return {"name": kind, "section": 99, "title": kind.replace("_", " "), "line": "",
                "order": 0, "page": None}
    return v.info(order=sorted(REGISTRY, key=lambda w: w.section).index(v))
