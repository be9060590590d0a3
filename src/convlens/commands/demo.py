"""`convlens demo`: every view on the built-in models and data, then the report.

Two models, offline: builtin:fashion-net on the real Fashion-MNIST test set and builtin:shapes-net
on procedural shapes. Each step saves a result folder under OUT/<model>/<view>; the site goes to
OUT/site. `quick` uses fewer images so that the whole demo takes about two minutes on 2 cores.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .common import command, options


def _demo_opts(p):
    p.add_argument("--out", metavar="DIR", default="convlens-demo",
                   help="folder for the results and the site (default: convlens-demo)")
    p.add_argument("--quick", action="store_true",
                   help="fewer images (about 2 minutes on 2 cores; what the tests run)")


@command("demo", "run every view on the built-in models and data, then build the report")
@options(_demo_opts)
def cmd_demo(args) -> int:
    """Run every view on builtin:fashion-net with the real Fashion-MNIST test set and on
    builtin:shapes-net with procedural shapes (offline), save each result under OUT/<model>/,
    and build the report in OUT/site. About 10 minutes on 2 CPU cores; --quick about 2."""
    index = run_demo(args.out, quick=args.quick)
    print(f"report: {index}\nopen it in a browser (file://{index.resolve()}), or run: "
          f"convlens serve {index.parent}")
    return 0


@dataclass
class Setting:
    model: str
    data: str            # the full test split
    n_scan: int          # images for the dataset pass (stats, scan, t-SNE)
    n_images: int        # images explained one by one (activations, maps)
    occlusion: dict


def settings(quick: bool) -> list[Setting]:
    return [
        Setting("builtin:fashion-net", "builtin:fashion-mnist:test",
                n_scan=1000 if quick else 10_000, n_images=4 if quick else 8,
                occlusion={"window": 6, "stride": 2}),
        Setting("builtin:shapes-net", "builtin:shapes:test:" + ("600" if quick else "5000"),
                n_scan=600 if quick else 5000, n_images=4 if quick else 8,
                occlusion={"window": 12, "stride": 4}),
    ]


def run_demo(out: str | Path = "convlens-demo", quick: bool = False, progress: bool = True) -> Path:
    """Run the demo; returns the path of the report's index.html."""
    from ..data import Loader, load_data
    from ..lens import LayersResult
    from ..models import load_model
    from ..report.site import build_site
    from ..techniques.activations import activation_stats, activations
    from ..techniques.cam import grad_cam
    from ..techniques.filters import filters
    from ..techniques.gradients import deconvnet, guided_backprop, saliency
    from ..techniques.occlusion import occlusion

    out = Path(out)
    t_start = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t_start:6.1f} s] {msg}", file=sys.stderr, flush=True)

    for s in settings(quick):
        lens = load_model(s.model)
        slug = s.model.split(":")[-1]
        base = out / slug
        data = load_data(s.data, lens=lens)
        first = next(iter(Loader(data, batch_size=s.n_images, indices=range(s.n_images))))
        x = first.images
        cmd = ["convlens", "demo"]

        def save(res, name, lens=lens, base=base):
            res.save(base / name, lens=lens, command=cmd)

        log(f"{s.model}: layers")
        save(LayersResult(lens.layers()), "layers")
        log(f"{s.model}: activations of {len(x)} images")
        save(activations(lens, x), "activations")
        log(f"{s.model}: filters")
        save(filters(lens), "filters")
        log(f"{s.model}: dead filters and sparsity over {s.n_scan} images")
        save(activation_stats(lens, data, limit=s.n_scan, progress=progress), "stats")
        for fn in (saliency, deconvnet, guided_backprop, grad_cam):
            log(f"{s.model}: {fn.__name__}")
            save(fn(lens, x, target="auto"), fn.__name__)
        log(f"{s.model}: occlusion")
        save(occlusion(lens, x, target="auto", **s.occlusion), "occlusion")
        _scan_steps(lens, s, base, log, progress)
    log("report")
    index = build_site([out], out / "site", title="convlens demo")
    log(f"done: {index}")
    return index


def _scan_steps(lens, s: Setting, base: Path, log, progress: bool) -> None:
    """The dataset pass (top-k images per unit, codes, predictions), unit pages, t-SNE."""
    from ..results import SavedResult
    from ..techniques.codes import codes_from_scan
    from ..techniques.scan import scan
    from ..techniques.tsne import tsne_grid
    from ..techniques.units import unit_patches

    log(f"{s.model}: scan of {s.n_scan} images (top-9 of every ReLU, codes, predictions)")
    scan(lens, s.data, topk=9, directions=4, limit=s.n_scan, out=base / "scan", progress=progress,
         resume=False)
    model = SavedResult(base / "scan").manifest.get("model")
    for layer in ("features.4", "features.11"):
        log(f"{s.model}: units of {layer}")
        unit_patches(base / "scan", layer, max_units=24).save(
            base / f"units_{layer}", model=model, command=["convlens", "demo"])
    log(f"{s.model}: t-SNE of {s.n_scan} codes")
    res = tsne_grid(codes_from_scan(base / "scan"))
    res.params["scan"] = str(base / "scan")
    res.save(base / "tsne", model=model, command=["convlens", "demo"])
