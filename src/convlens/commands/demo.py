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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

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
        index, report = run_demo(args.out, quick=quick, settings_=[setting], lenses={args.model: lens},
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


@dataclass
class Step:
    """One view of the demo: its name and the function that runs and saves it."""

    name: str
    run: Callable[[], str | None]   # returns a detail for the log, or raises to skip


def run_demo(out: str | Path = "convlens-demo", quick: bool = False, progress: bool = True,
             settings_: list[Setting] | None = None, lenses: dict | None = None,
             title: str = "convlens demo") -> tuple[Path, str]:
    """Run every view of every setting, then the report; returns the report's index.html and the
    summary (what ran, what was skipped and why)."""
    from ..report.site import build_site

    out = Path(out)
    t_start = time.time()
    done: list[str] = []
    skipped: list[str] = []

    def log(msg: str) -> None:
        print(f"[{time.time() - t_start:6.1f} s] {msg}", file=sys.stderr, flush=True)

    for s in settings_ or settings(quick):
        lens = (lenses or {}).get(s.model)
        for step in _steps(s, lens, out, quick, progress):
            log(f"{s.model}: {step.name}")
            try:
                detail = step.run()
                done.append(f"{s.model}: {step.name}")
                if detail:
                    log(f"{s.model}: {step.name}: {detail}")
            except Exception as e:  # noqa: BLE001  one view that does not apply skips, not stops
                why = str(e).splitlines()[0] if str(e) else type(e).__name__
                from ..errors import ConvlensError
                if not isinstance(e, ConvlensError):
                    why = f"{type(e).__name__}: {why}"
                    traceback.print_exc(limit=3, file=sys.stderr)
                skipped.append(f"{s.model}: {step.name}: {why}")
                log(f"{s.model}: {step.name}: skipped ({why})")
    log("report")
    index = build_site([out], out / "site", title=title)
    log(f"done: {index}")
    lines = [f"{len(done)} views ran in {time.time() - t_start:.0f} s"]
    if skipped:
        lines.append(f"{len(skipped)} skipped:")
        lines += [f"  {s}" for s in skipped]
    return index, "\n".join(lines)


def _steps(s: Setting, lens, out: Path, quick: bool, progress: bool) -> list[Step]:
    """The views of one model and its data, in the seed's order."""
    import torch

    from ..data import Loader, load_data
    from ..lens import LayersResult
    from ..models import load_model
    from ..results import SavedResult
    from ..techniques.activity.activations import activation_stats, activations, default_layers
    from ..techniques.gradients.cam import grad_cam, guided_grad_cam
    from ..techniques.units.codes import codes_from_scan
    from ..techniques.activity.filters import filters
    from ..techniques.gradients.gradients import deconvnet, guided_backprop, saliency
    from ..techniques.occlusion.occlusion import occlusion
    from ..techniques.units.scan import scan
    from ..techniques.gradients.smoothing import integrated_gradients, smoothgrad
    from ..techniques.tsne.tsne import tsne_grid
    from ..techniques.units.patches import unit_patches

    lens = lens if lens is not None else load_model(s.model, seed=s.seed)
    slug = s.model.split(":")[-1].replace("/", "_")
    base = out / slug
    cmd = ["convlens", "demo", "--model", s.model, "--data", s.data]
    state: dict = {}
    # --quick on a large input (ImageNet's 224 px): half the optimisation work again, where
    # each step costs ten times a built-in model's
    lighter = quick and math.prod(lens.input_size) > 3 * 128 * 128
    dataset = load_data(s.data, lens=lens)
    # the dataset pass covers at most the data there is (a folder of 12 photos: 12, not 500)
    s = replace(s, n_scan=min(s.n_scan, len(dataset)))

    def save(res, name: str, model: dict | None = None) -> None:
        res.save(base / name, lens=None if model else lens, command=cmd, model=model)

    def images():
        if "x" not in state:
            n = min(s.n_images, len(dataset))
            idx = list(range(n))
            if s.sample:
                import numpy as np
                idx = sorted(np.random.default_rng(s.seed).choice(len(dataset), n, replace=False).tolist())
            batch = next(iter(Loader(dataset, batch_size=n, indices=idx)))
            p = next(iter(lens.parameters()))
            state["x"] = batch.images.to(p.device, p.dtype)
        return state["x"]

    def spatial_layers() -> list[str]:
        return [n for n in default_layers(lens, spatial_only=True)
                if len(next(i.shape for i in lens.layers() if i.name == n) or ()) == 3]

    def window() -> dict:
        if s.occlusion:
            return s.occlusion
        side = lens.input_size[-1]
        w = max(2, round(side / 5))
        return {"window": w, "stride": max(1, round(w / 3))}

    def step_scan():
        layers = default_layers(lens)
        try:
            res = scan(lens, s.data, layers, topk=9, directions=4, limit=s.n_scan,
                       out=base / "scan", progress=progress, resume=False)
        except Exception as e:  # a model without a code layer: scan without codes
            if "code" not in str(e):
                raise
            res = scan(lens, s.data, layers, topk=9, directions=4, limit=s.n_scan, codes=None,
                       out=base / "scan", progress=progress, resume=False)
        res.save(base / "scan", lens=lens, command=cmd)  # with its pictures
        state["scan"] = res
        return res.accuracy_note()

    def step_units():
        if "scan" not in state:
            raise RuntimeError("needs the scan")
        model = SavedResult(base / "scan").manifest.get("model")
        spatial = spatial_layers()
        if not spatial:
            raise RuntimeError("no layer with spatial maps")
        picks = list(dict.fromkeys([spatial[len(spatial) // 2], spatial[-1]]))
        for layer in picks:
            save(unit_patches(base / "scan", layer, max_units=units), f"units_{layer}", model)
        save(unit_patches(base / "scan", picks[-1], max_units=4, directions=True),
             f"units_dirs_{picks[-1]}", model)
        return ", ".join(picks) + f"; 4 random directions of {picks[-1]}"

    def step_tsne():
        if "scan" not in state or state["scan"].codes is None:
            raise RuntimeError("the scan has no codes (the model has no linear classifier layer)")
        model = SavedResult(base / "scan").manifest.get("model")
        codes = codes_from_scan(base / "scan")
        res = tsne_grid(codes, k=min(10, max(1, len(codes.codes) // 3)))
        res.params["scan"] = str(base / "scan")
        save(res, "tsne", model)
        return f"kNN accuracy {res.metrics['knn_accuracy_2d']:.3f}"

    def step_attributes():
        if "scan" not in state or state["scan"].predictions is None:
            raise RuntimeError("needs the scan's predictions")
        from ..techniques.attributes.attributes import attribute_performance
        if not len(state["scan"].predictions["correct"].dropna()):  # nothing to bin
            raise RuntimeError("it measures accuracy: " + state["scan"].accuracy_note())
        model = SavedResult(base / "scan").manifest.get("model")
        res = attribute_performance(base / "scan", attributes=s.attributes, progress=progress,
                                    n_resamples=300 if quick else 1000)
        save(res, "attributes", model)
        return ", ".join(res.attributes)

    def step_robustness():
        from ..techniques.adversarial.robustness import robustness
        res = robustness(lens, s.data, eps=[0, 0.01, 0.03, 0.1], indices=range(min(s.n_scan, 200 if quick else 2000)),
                         examples=6, progress=progress)
        save(res, "robustness")
        return None

    def step_fool():
        from ..techniques.adversarial.fooling import fool
        x = images()[:4]
        k = lens.num_classes or 2
        with torch.no_grad():
            pred = lens(x).argmax(1)
        save(fool(lens, x, target=(pred + 1) % k, steps=12 if quick else 50, search=2 if quick else 3), "fool")
        return None

    def step_inversion():
        from ..techniques.synthesis.inversion import invert
        layers = default_layers(lens)
        picks = list(dict.fromkeys([layers[0], layers[len(layers) // 2], layers[-1]]))
        res = invert(lens, images()[:1 if lighter else 2 if quick else 4], picks, steps=60 if quick else 200,
                     progress=progress)
        save(res, "inversion")
        return ", ".join(picks)

    def step_class_model():
        from ..techniques.synthesis.featvis import class_model
        k = lens.num_classes or 0
        targets = None  # every class, when there are few
        if not k or k > 12:  # e.g. ImageNet's 1,000: the classes predicted for the demo's images
            with torch.no_grad():
                predicted = lens(images()).argmax(1).tolist()
            most = 4 if lighter else 8
            targets = sorted(set(predicted) | set(range(min(k or most, most))))[:most]
        res = class_model(lens, targets, steps=40 if quick else 150, progress=progress)
        save(res, "class_model")
        return None if targets is None else f"{len(targets)} of {k} classes"

    def step_featvis():
        from ..techniques.synthesis.featvis import feature_visualization
        spatial = spatial_layers()
        if not spatial:
            raise RuntimeError("no layer with spatial maps")
        layer = spatial[-1]  # the layer whose units the scan shows: one image per unit
        res = feature_visualization(lens, layer, channels=range(6 if lighter else units),
                                    steps=32 if quick else 128,
                                    data=s.data, progress=progress)
        save(res, "featvis")
        return layer

    def step_correspondence():
        from ..techniques.correspondence.correspondence import correspondence
        from ..techniques.correspondence.pairs import has_keypoints
        kind = s.pairs or ("intraclass" if has_keypoints(dataset) else "warp")
        extra = {"close": s.close} if kind == "intraclass" and s.close else (
            {"warp": "mixed"} if kind == "warp" else {})
        res = correspondence(lens, kind, data=s.data, n=6 if lighter else 12 if quick else 100,
                             progress=progress,
                             **extra)
        save(res, "correspondence")
        return kind

    def per_image(fn, name: str, **kw):
        def run():
            save(fn(lens, images(), target="auto", **kw), name)
        return Step(name.replace("_", " "), run)

    samples = 8 if quick else 32
    units = 12 if quick else 24  # units shown per layer (and feature-visualised)
    return [
        Step("layers", lambda: save(LayersResult(lens.layers()), "layers")),
        Step(f"activations of {s.n_images} images", lambda: save(activations(lens, images()), "activations")),
        Step("filters", lambda: save(filters(lens), "filters")),
        Step(f"dead filters and sparsity over {s.n_scan} images",
             lambda: save(activation_stats(lens, s.data, limit=s.n_scan, progress=progress), "stats")),
        Step(f"scan of {s.n_scan} images (top-9 of every ReLU, 4 random directions, codes, "
             "predictions)", step_scan),
        Step("units and random directions", step_units),
        Step("t-SNE of the scan's codes", step_tsne),
        Step("accuracy by image attribute", step_attributes),
        Step("occlusion", lambda: save(occlusion(lens, images(), target="auto", **window()), "occlusion")),
        per_image(saliency, "saliency"),
        per_image(deconvnet, "deconvnet"),
        per_image(guided_backprop, "guided_backprop"),
        per_image(grad_cam, "grad_cam"),
        per_image(guided_grad_cam, "guided_grad_cam"),
        per_image(smoothgrad, "smoothgrad", samples=samples),
        per_image(integrated_gradients, "integrated_gradients", steps=32 if quick else 64),
        Step("inversion: images from codes", step_inversion),
        Step("class models", step_class_model),
        Step("feature visualisation", step_featvis),
        Step("correspondence", step_correspondence),
        Step("fooling: the smallest change to another class", step_fool),
        Step("robustness against FGSM", step_robustness),
    ]
