"""`convlens demo`: every view that applies to a model and its data, then the report.

``convlens demo --model SPEC [--weights FILE] --data SPEC --out DIR`` runs each view on your
model and data, one progress line per view, saves each result under OUT/<model>/<view>, builds
the site in OUT/site and ends with a summary of what was skipped and why. Without ``--model`` it
runs on the built-in models and their data, offline: builtin:fashion-net on the real Fashion-MNIST
test set, builtin:shapes-net on procedural shapes and builtin:stamps-net on photographs (where
Tux Paint's stamps are installed). ``--quick`` uses fewer images, steps and units (fewer still
for inputs larger than 128 px).

The demo sizes its work to the model and the device (`budget`): on a CPU, a view whose full
settings would take a 2-core CPU more than about 10 s (the optimisation views of an ImageNet
model at 224 px) is cut to about that, and the summary says what was cut; on a GPU, or with
``--full``, every view runs its full settings. Before a view expected to take more than 10 s it
prints how long it expects.
"""
from __future__ import annotations

import math
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .common import (
    command,
    data_options,
    lens_from,
    model_options,
    options,
    positive_int,
)


def _demo_opts(p):
    model_options(p, required=False)
    data_options(p, required=False, n_help="8 images explained one by one")
    p.add_argument("--scan-n", type=positive_int, default=None, metavar="N",
                   help="items for the dataset pass (dead filters, top images, t-SNE, ...; "
                        "default all, at most 10,000)")
    p.add_argument("--out", metavar="DIR", default="convlens-demo",
                   help="folder for the results and the site (default: convlens-demo)")
    p.add_argument("--quick", action="store_true",
                   help="fewer images, steps and units (the built-in demo in about 2 "
                        "minutes on 2 cores; what the tests run)")
    p.add_argument("--full", action="store_true",
                   help="every view at its full settings, also on a CPU (where the demo "
                        "otherwise cuts the steps and units of views that would take long)")
    p.add_argument("--title", default=None, help="the site's title")


@command("demo", "run every view on a model and its data (default: the built-ins), then the report")
@options(_demo_opts)
def cmd_demo(args) -> int:
    """Run every view that applies to --model on --data and build the report in OUT/site, one
    progress line per view and a summary of what was cut, what was skipped and why. Without
    --model: the built-in models on their data (builtin:fashion-net on the real Fashion-MNIST
    test set, builtin:shapes-net on procedural shapes, builtin:stamps-net on photographs),
    offline; --quick uses fewer images, steps and units. On a CPU, views that would take a
    2-core CPU long (an ImageNet model at 224 px) are cut to about 10 s each; --full (or
    --device cuda) runs every view in full."""
    from ..errors import ConvlensError

    if bool(args.model) != bool(args.data):
        raise ConvlensError("give both --model SPEC and --data SPEC (or neither, for the "
                            "built-in demo)")
    if args.quick and args.full:
        raise ConvlensError("--quick and --full ask for opposite things: give one of them")
    if args.model:
        lens = lens_from(args)
        quick = args.quick
        setting = Setting(args.model, args.data, n_scan=args.scan_n or (500 if quick else 10_000),
                          n_images=args.n or (4 if quick else 8), sample=args.sample,
                          seed=args.seed)
        index, report = run_demo(args.out, quick=quick, full=args.full, settings_=[setting],
                                 lenses={args.model: lens},
                                 title=args.title or f"convlens: {args.model} on {args.data}")
    else:
        index, report = run_demo(args.out, quick=args.quick, full=args.full,
                                 title=args.title or "convlens demo")
    print(report)
    print(f"report: {index}\nopen it in a browser (file://{index.resolve()}), or run: "
          f"convlens serve {index.parent}")
    return 0


@dataclass
class Setting:
    model: str
    data: str            # the data spec
    n_scan: int          # items for the dataset pass (stats, scan, t-SNE)
    n_images: int        # images explained one by one (activations, maps)
    occlusion: dict = field(default_factory=dict)   # window/stride (default: from the size)
    sample: bool = False
    seed: int = 0
    attributes: list[str] | None = None   # for accuracy by attribute (default: all there are)
    pairs: str | None = None      # correspondence: "warp" or "intraclass" (default: by the data)
    close: dict | None = None     # correspondence: which intra-class pairs are comparable


def settings(quick: bool) -> list[Setting]:
    return [
        Setting("builtin:fashion-net", "builtin:fashion-mnist:test",
                n_scan=400 if quick else 10_000, n_images=4 if quick else 8,
                occlusion={"window": 6, "stride": 2}),
        Setting("builtin:shapes-net", "builtin:shapes:test:" + ("400" if quick else "5000"),
                n_scan=400 if quick else 5000, n_images=4 if quick else 8,
                occlusion={"window": 12, "stride": 4},
                attributes=["scale", "clutter", "occluded", "truncated", "contrast", "background"],
                pairs="intraclass", close={"rotation": (30, 360)}),
    ] + ([Setting("builtin:stamps-net", "builtin:stamps:test:" + ("240" if quick else "2000"),
                  n_scan=240 if quick else 2000, n_images=4 if quick else 8,
                  occlusion={"window": 16, "stride": 6},
                  attributes=["scale", "clutter", "occluded", "truncated", "background",
                              "brightness"], pairs="warp")]
         if stamps_available() else [])


def stamps_available() -> bool:
    """Whether Debian's tuxpaint-stamps-default (the photos of builtin:stamps) is installed."""
    from ..data import stamps
    try:
        stamps.find_root(None)
    except Exception:  # noqa: BLE001  missing: the demo runs without the photo model
        return False
    return True


def run_demo(out: str | Path = "convlens-demo", quick: bool = False, progress: bool = True,
             settings_: list[Setting] | None = None, lenses: dict | None = None,
             title: str = "convlens demo", full: bool = False) -> tuple[Path, str]:
    """Run every view of every setting, then the report; returns the report's index.html and the
    summary (what ran, what was cut, what was skipped and why). The views and their steps come
    from the view records (`convlens.views.View.demo`), in the seed's order; `full`: every view
    at its full settings, also on a CPU (see `budget`)."""
    from ..report.site import build_site
    from ..techniques import all_views
    from ..views import resolve

    out = Path(out)
    t_start = time.time()
    done: list[str] = []
    skipped: list[str] = []
    cut: list[str] = []

    def log(msg: str) -> None:
        print(f"[{time.time() - t_start:6.1f} s] {msg}", file=sys.stderr, flush=True)

    steps = [(v, resolve(v.demo)) for v in all_views() if v.demo]
    for s in settings_ or settings(quick):
        ctx = context(s, (lenses or {}).get(s.model), out, quick, progress, full=full)
        ctx.budget.log = lambda msg, model=s.model: log(f"{model}: {msg}")
        cmd = ["convlens", "demo", "--model", s.model, "--data", s.data]
        for view, step in steps:
            log(f"{s.model}: {view.title}")
            ctx.budget.view, t_view = view.title, time.time()
            try:
                detail = None
                for item in step(ctx):
                    if isinstance(item, str):
                        detail = item
                        continue
                    name, result = item
                    result.save(ctx.folder / name, lens=ctx.lens, command=cmd)
                done.append(f"{s.model}: {view.title}")
                ctx.budget.observe(time.time() - t_view)
                if detail:
                    log(f"{s.model}: {view.title}: {detail}")
            except Exception as e:  # noqa: BLE001  one view that does not apply skips, not stops
                ctx.budget.cuts.pop(view.title, None)  # nothing ran: nothing was cut
                ctx.budget.full_seconds.pop(view.title, None)
                why = reason(e)
                skipped.append(f"{s.model}: {view.title} was skipped: {why}")
                log(f"{s.model}: {view.title}: skipped: {why}")
        for line in ctx.budget.summary(s.model):
            if line not in cut:  # --quick's line: once
                cut.append(line)
    log("report")
    index = build_site([out], out / "site", title=title)
    log(f"done: {index}")
    lines = [f"{len(done)} views ran in {time.time() - t_start:.0f} s."] + cut
    if skipped:
        lines.append(f"{len(skipped)} skipped:")
        lines += [f"  {s}" for s in skipped]
    return index, "\n".join(lines)


def reason(e: BaseException) -> str:
    """Why a view was skipped, as a sentence: a `ConvlensError` or `Skip` says it itself (its
    first line); anything else is a bug, said so, with its traceback printed on stderr."""
    from ..errors import ConvlensError
    from ..views import Skip

    text = str(e).splitlines()[0].strip() if str(e).strip() else ""
    if isinstance(e, (ConvlensError, Skip)) and text:
        why = text
    else:
        traceback.print_exc(limit=3, file=sys.stderr)
        why = (f"it failed with an unexpected {type(e).__name__}"
               + (f" ({text.rstrip('.')})" if text else "") + "; the traceback is above")
    why = why[:1].lower() + why[1:] if why[1:2].islower() else why
    return why if why.endswith((".", "!", "?")) else why + "."


def context(s: Setting, lens, out: Path, quick: bool, progress: bool, full: bool = False):
    """The `DemoContext` of one model and its data: what every view's demo step gets."""
    from ..data import Loader, load_data
    from ..models import load_model
    from ..views import DemoContext

    lens = lens if lens is not None else load_model(s.model, seed=s.seed)
    slug = s.model.split(":")[-1].replace("/", "_")
    dataset = load_data(s.data, lens=lens)
    state: dict = {}

    def images():
        if "x" not in state:
            n = min(s.n_images, len(dataset))
            idx = list(range(n))
            if s.sample:
                import numpy as np
                idx = sorted(np.random.default_rng(s.seed).choice(len(dataset), n,
                                                                  replace=False).tolist())
            batch = next(iter(Loader(dataset, batch_size=n, indices=idx)))
            p = next(iter(lens.parameters()))
            state["x"] = batch.images.to(p.device, p.dtype)
        return state["x"]

    # the dataset pass covers at most the data there is (a folder of 12 photos: 12, not 500)
    return DemoContext(lens=lens, data=s.data, dataset=dataset, images=images,
                       folder=out / slug, quick=quick, budget=budget(lens, quick, full),
                       n_scan=min(s.n_scan, len(dataset)), n_images=s.n_images, setting=s,
                       progress=progress)


#: seconds of one image's pass (forward, then backward to the input) on a quiet 2-core CPU: per
#: G multiply-adds and per M activation values of the model at its input size (resnet18 at
#: 224 px: 1.8 G and 6.7 M, 0.042 s measured on the development machine, about 4/5 of it in
#: the multiply-adds; mobilenet_v2, 0.3 G and 19.5 M, is mostly its activations)
SECONDS_PER_GMAC = 0.0185
SECONDS_PER_MVALUE = 0.00125


def budget(lens, quick: bool = False, full: bool = False, measured: float | None = None):
    """How much of its work each demo step does on this model (`convlens.views.Budget`):
    ``--quick``: the quick settings; ``--full`` or a model on a GPU: the full settings; else
    (a CPU) each view whose full settings would take a quiet 2-core CPU more than `LONG_VIEW_S`
    cut to about that, by the model's cost (`pass_cost`). The announced times use one pass
    measured here (`pass_seconds`, or `measured`)."""
    import torch

    from ..views import Budget

    p = next(iter(lens.parameters()), None)
    device = p.device.type if p is not None else "cpu"
    level = "quick" if quick else "full" if full or device != "cpu" else "fit"
    if measured is None and device != "meta":
        measured = timed(lens)
    side = "x".join(map(str, dict.fromkeys(lens.input_size[1:])))
    cost = pass_cost(lens) if level == "fit" else measured
    return Budget(level=level, pass_cost=cost or 0.0, measured=measured,
                  large=math.prod(lens.input_size) > 3 * 128 * 128,
                  where=f"on the {'CPU' if device == 'cpu' else device} at {side} px",
                  gpu_here=device == "cpu" and torch.cuda.is_available())


def pass_cost(lens) -> float:
    """Seconds of one image's pass on a quiet 2-core CPU, estimated from the model's
    multiply-adds and activation values at its input size (`multiply_adds`); where the layer
    table has no shapes (a TorchScript model), measured here instead."""
    macs, values = multiply_adds(lens)
    if not macs:
        return timed(lens) or 0.0
    return macs / 1e9 * SECONDS_PER_GMAC + values / 1e6 * SECONDS_PER_MVALUE


def multiply_adds(lens) -> tuple[int, int]:
    """Multiply-adds of one image's forward pass through the model's conv and linear layers,
    and the values its modules without children output (from the layer table's output shapes;
    0 where the table has none)."""
    from torch import nn

    modules = dict(lens.model.named_modules())
    macs = values = 0
    for info in lens.layers(fields=False):
        m = modules.get(info.name)
        if info.shape is None or not info.per_image or m is None:
            continue
        out = math.prod(info.shape)
        if not any(True for _ in m.children()):
            values += out
        if isinstance(m, nn.modules.conv._ConvNd):
            macs += out * m.in_channels // m.groups * math.prod(m.kernel_size)
        elif isinstance(m, nn.Linear):
            macs += out * m.in_features
    return macs, values


def timed(lens) -> float | None:
    """`pass_seconds`, or None where the model cannot be timed so (the demo goes on: its steps
    say what does not apply)."""
    try:
        return pass_seconds(lens)
    except Exception:  # noqa: BLE001  e.g. a model with no gradient to its input
        return None


def pass_seconds(lens, n: int = 4, tries: int = 5, within: float = 2.0) -> float:
    """Seconds of one image's pass forward and backward to the input, as image optimisation
    makes it (parameters frozen, eval mode), measured here on `n` images: the best of up to
    `tries` passes after a warm-up, stopping once `within` seconds are spent (another program
    sharing the CPU slows some passes; the best is the model's own speed). The model is left as
    found."""
    import torch

    from ..hooks import preserved

    model = lens.model
    p = next(iter(model.parameters()), None)
    times: list[float] = []
    with preserved(model):
        model.eval()
        for q in model.parameters():
            q.requires_grad_(False)
        for _ in range(tries + 1):
            x = lens.example_input(n).requires_grad_(True)
            t = time.perf_counter()
            torch.autograd.grad(lens(x).float().sum(), x)
            if p is not None and p.device.type == "cuda":
                torch.cuda.synchronize(p.device)
            times.append(time.perf_counter() - t)
            if len(times) > 1 and sum(times) > within:
                break
    return min(times[1:] or times) / n
