"""`convlens demo`: every view that applies to a model and its data, then the report.

``convlens demo --model SPEC [--weights FILE] --data SPEC --out DIR`` runs each view on your
model and data, one progress line per view, saves each result under OUT/<model>/<view>, builds
the site in OUT/site and ends with a summary of what was skipped and why. Without ``--model`` it
runs on the built-in models and their data, offline: builtin:fashion-net on the real Fashion-MNIST
test set, builtin:shapes-net on procedural shapes and builtin:stamps-net on photographs (where
Tux Paint's stamps are installed). ``--quick`` uses fewer images, steps and units (fewer still
for inputs larger than 128 px).
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
    p.add_argument("--title", default=None, help="the site's title")


@command("demo", "run every view on a model and its data (default: the built-ins), then the report")
@options(_demo_opts)
def cmd_demo(args) -> int:
    """Run every view that applies to --model on --data and build the report in OUT/site, one
    progress line per view and a summary of what was skipped and why. Without --model: the
    built-in models on their data (builtin:fashion-net on the real Fashion-MNIST test set,
    builtin:shapes-net on procedural shapes, builtin:stamps-net on photographs), offline;
    --quick uses fewer images, steps and units."""
    from ..errors import ConvlensError

    if bool(args.model) != bool(args.data):
        raise ConvlensError("give both --model SPEC and --data SPEC (or neither, for the "
                            "built-in demo)")
    if args.model:
        lens = lens_from(args)
        quick = args.quick
        setting = Setting(args.model, args.data, n_scan=args.scan_n or (500 if quick else 10_000),
                          n_images=args.n or (4 if quick else 8), sample=args.sample,
                          seed=args.seed)
        index, report = run_demo(args.out, quick=quick, settings_=[setting],
                                 lenses={args.model: lens},
                                 title=args.title or f"convlens: {args.model} on {args.data}")
    else:
        index, report = run_demo(args.out, quick=args.quick, title=args.title or "convlens demo")
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
             title: str = "convlens demo") -> tuple[Path, str]:
    """Run every view of every setting, then the report; returns the report's index.html and the
    summary (what ran, what was skipped and why). The views and their steps come from the view
    records (`convlens.views.View.demo`), in the seed's order."""
    from ..errors import ConvlensError
    from ..report.site import build_site
    from ..techniques import all_views
    from ..views import Skip, resolve

    out = Path(out)
    t_start = time.time()
    done: list[str] = []
    skipped: list[str] = []

    def log(msg: str) -> None:
        print(f"[{time.time() - t_start:6.1f} s] {msg}", file=sys.stderr, flush=True)

    steps = [(v, resolve(v.demo)) for v in all_views() if v.demo]
    for s in settings_ or settings(quick):
        ctx = context(s, (lenses or {}).get(s.model), out, quick, progress)
        cmd = ["convlens", "demo", "--model", s.model, "--data", s.data]
        for view, step in steps:
            log(f"{s.model}: {view.title}")
            try:
                detail = None
                for item in step(ctx):
                    if isinstance(item, str):
                        detail = item
                        continue
                    name, result = item
                    result.save(ctx.folder / name, lens=ctx.lens, command=cmd)
                done.append(f"{s.model}: {view.title}")
                if detail:
                    log(f"{s.model}: {view.title}: {detail}")
            except Exception as e:  # noqa: BLE001  one view that does not apply skips, not stops
                why = str(e).splitlines()[0] if str(e) else type(e).__name__
                if not isinstance(e, (ConvlensError, Skip)):
                    why = f"{type(e).__name__}: {why}"
                    traceback.print_exc(limit=3, file=sys.stderr)
                skipped.append(f"{s.model}: {view.title}: {why}")
                log(f"{s.model}: {view.title}: skipped ({why})")
    log("report")
    index = build_site([out], out / "site", title=title)
    log(f"done: {index}")
    lines = [f"{len(done)} views ran in {time.time() - t_start:.0f} s"]
    if skipped:
        lines.append(f"{len(skipped)} skipped:")
        lines += [f"  {s}" for s in skipped]
    return index, "\n".join(lines)


def context(s: Setting, lens, out: Path, quick: bool, progress: bool):
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

    # --quick on a large input (ImageNet's 224 px): half the optimisation work again, where
    # each step costs ten times a built-in model's
    lighter = quick and math.prod(lens.input_size) > 3 * 128 * 128
    # the dataset pass covers at most the data there is (a folder of 12 photos: 12, not 500)
    return DemoContext(lens=lens, data=s.data, dataset=dataset, images=images,
                       folder=out / slug, quick=quick, lighter=lighter,
                       n_scan=min(s.n_scan, len(dataset)), n_images=s.n_images, setting=s,
                       progress=progress)
