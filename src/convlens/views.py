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
import math
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


#: the demo cuts a view on a CPU whose full settings would take longer than this many seconds
#: on a 2-core CPU, to about this long; it announces a view expected to take over `ANNOUNCE_S`
LONG_VIEW_S = 10.0
ANNOUNCE_S = 10.0

#: how the summary says what a knob of a demo step was cut to (``{v}`` of ``{f}``)
PHRASES = {"steps": "{v} of {f} steps", "units": "on {v} of {f} units",
           "images": "on {v} of {f} images", "classes": "for {v} of {f} classes",
           "pairs": "on {v} of {f} pairs", "samples": "with {v} of {f} noisy copies",
           "items": "on {v} of {f} items"}


def duration(seconds: float) -> str:
    """``"40 s"``, ``"2 min 10 s"``."""
    s = max(1, round(seconds))
    return f"{s} s" if s < 60 else f"{s // 60} min {s % 60:02d} s" if s % 60 else f"{s // 60} min"


@dataclass
class Budget:
    """How much of its work each demo step does: decided here, once per model, from what one
    image's pass through it costs and the device it runs on (`convlens.commands.demo.budget`).

    A step declares its knobs and their values, ``ctx.budget.fit(steps=(200, 60),
    images=(4, 2, 1), per=3)``: each knob's full value, its ``--quick`` value and, optionally,
    its ``--quick`` value on an input over 128 px; the step's work is `per` times the product of
    the knobs, in passes of one image forward and backward to the input (a forward pass alone is
    about a third of one). `fit` returns the values to use:

    - ``level="full"`` (a GPU, or ``--full``): the full values;
    - ``"quick"`` (``--quick``): the quick values (the third on a large input);
    - ``"fit"`` (a CPU): the full values where they take at most about `LONG_VIEW_S` at
      `pass_cost`; else a share of the full work, a power of 2 (1/2, 1/4, ...: the nearest to
      `LONG_VIEW_S`), the knobs cut alike (the earlier ones rounded first, the last one taking
      up the rounding) and never below their quick values (on a large input, the third value
      where there is one: what ``--quick`` uses there). Each cut is kept for the summary.

    Attributes:
        level: ``"full"``, ``"quick"`` or ``"fit"``.
        pass_cost: seconds of one image's pass on a quiet 2-core CPU, estimated from the
            model's multiply-adds and activations at its input size: what ``"fit"`` cuts by,
            so that the same model and input get the same settings on every run and machine.
        measured: that pass's seconds as measured here when the model was loaded (None:
            `pass_cost`); the announced times use it, times how much slower than announced the
            views so far ran (`observe`: another program sharing the CPU, say).
        large: the input is over 128 px (3 x 128 x 128 values).
        where: where the model runs, for the summary (``"on the CPU at 224 px"``);
            `gpu_here`: a GPU is there, unused (the summary says how to use it).
        log: where a step's expected time is announced (None: nowhere).
        view: the title of the step being run (the demo sets it).
        cuts: view title -> what was cut (phrases); `full_seconds`: view title -> what its full
            settings would take here; `expected`: view title -> its expected seconds.
    """

    level: str = "full"
    pass_cost: float = 0.0
    measured: float | None = None
    large: bool = False
    where: str = ""
    gpu_here: bool = False
    log: Callable[[str], None] | None = None
    view: str = ""
    cuts: dict[str, list[str]] = field(default_factory=dict)
    full_seconds: dict[str, float] = field(default_factory=dict)
    expected: dict[str, float] = field(default_factory=dict)
    slowdowns: list[float] = field(default_factory=list)

    @property
    def here(self) -> float:
        """Seconds of one image's pass here: measured, times the median slowdown so far."""
        ratios = sorted(self.slowdowns)
        return self._base * (ratios[len(ratios) // 2] if ratios else 1.0)

    @property
    def _base(self) -> float:
        return self.measured if self.measured is not None else self.pass_cost

    def fit(self, per: float = 1.0, **knobs: tuple[int, ...]) -> dict[str, int]:
        """The values of a step's knobs (see the class); announces the step's expected time."""
        full = {k: int(v[0]) for k, v in knobs.items()}
        if self.level == "full":
            got = dict(full)
        elif self.level == "quick":
            got = {k: int(v[2] if self.large and len(v) > 2 else v[1]) for k, v in knobs.items()}
        else:
            got = self._cut(per, {k: (int(v[0]), int(v[2] if self.large and len(v) > 2
                                                    else v[1])) for k, v in knobs.items()})
        if got != full:
            self.cuts[self.view] = [PHRASES.get(k, "{v} of {f} " + k).format(v=got[k], f=full[k])
                                    for k in sorted(got, key=lambda k: k != "steps")
                                    if got[k] != full[k]]
            self.full_seconds[self.view] = per * math.prod(full.values()) * self.here
        self.expect(per * math.prod(got.values()))
        return got

    def _cut(self, per: float, knobs: dict[str, tuple[int, int]]) -> dict[str, int]:
        seconds = per * math.prod(f for f, _ in knobs.values()) * self.pass_cost
        if seconds <= LONG_VIEW_S * 2 ** 0.5:  # within the nearest power of 2 of it
            return {k: f for k, (f, _) in knobs.items()}
        ratio = 2.0 ** -round(math.log2(seconds / LONG_VIEW_S))
        got = {}
        for i, (k, (f, q)) in enumerate(knobs.items()):
            want = f * ratio ** (1 / (len(knobs) - i))
            got[k] = max(1, min(f, max(q, round(want))))
            ratio /= got[k] / f
        return got

    def expect(self, passes: float) -> None:
        """Announce a step's expected time when it is long: `passes` image passes (forward and
        backward; a forward pass alone is about a third of one)."""
        seconds = passes * self.here
        self.expected[self.view] = seconds
        if self.log is not None and seconds > ANNOUNCE_S:
            self.log(f"{self.view}: expect about {duration(seconds)}")

    def observe(self, seconds: float) -> None:
        """The step just run took `seconds`: how much slower (or faster) than expected it ran
        corrects the next announcements (views expected to take a second or more count)."""
        expected = self.expected.get(self.view)
        if expected is not None and expected >= 1.0 and self._base > 0:
            self.slowdowns.append(seconds / expected * self.here / self._base)

    def summary(self, model: str = "the model") -> list[str]:
        """What was cut, in sentences, and how to get the rest."""
        if self.level == "quick":
            return ["--quick ran every view small (fewer images, steps and units); run without "
                    "it for more, or with --full for the full settings."]
        if not self.cuts:
            return []
        lines = [f"{model} runs {self.where}, so the demo cut its longest views (to about "
                 f"{duration(LONG_VIEW_S)} each on a 2-core CPU):"]
        for view, parts in self.cuts.items():
            lines.append(f"  {view[:1].upper() + view[1:]} ran {' '.join(parts)}.")
        more = sum(self.full_seconds.values())
        gpu = ("this machine has a GPU: with --device cuda the demo runs them in full there"
               if self.gpu_here else "on a GPU (--device cuda) the demo runs them in full")
        lines.append(f"Run with --full for all of it (those views alone would take about "
                     f"{duration(more)} here; {gpu}).")
        return lines


@dataclass
class DemoContext:
    """What a demo step gets: the model and its data, the images explained one by one, how
    much to do, and what earlier steps left (``state``: e.g. the scan's folder).

    Attributes:
        lens: the model (a `Lens`).
        data: the data spec (str) and `dataset` the dataset it names.
        images: a function returning the ``(N, C, H, W)`` batch explained one by one.
        quick: fewer images, steps and units (``--quick``).
        budget: how much of its work each step does (`Budget`: its ``fit``).
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
    budget: Budget = field(default_factory=Budget)
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
    # every family declared first (cheap: their __init__ import no torch), so a view's order
    # does not depend on which families this process happened to import (the same dynamic
    # lookup as `resolve`)
    views = importlib.import_module("convlens.techniques").all_views()
    v = view_for(kind)
    if v is None:
        return {"name": kind, "section": 99, "title": kind.replace("_", " "), "line": "",
                "order": 0, "page": None}
    return v.info(order=views.index(v))
