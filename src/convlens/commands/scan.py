"""`convlens scan` and `convlens unit-patches` (the seed's §2: images that maximally activate a
unit)."""
from __future__ import annotations

from pathlib import Path

from ..errors import ConvlensError
from .common import (
    ExtendAction,
    command,
    data_from,
    data_options,
    engine_options,
    item_indices,
    layer_list,
    lens_from,
    model_options,
    nonnegative_int,
    on_interrupt,
    options,
    output_options,
    positive_int,
    run_from,
    save_result,
)


def _names(s: str) -> list[str] | str:
    if s in ("relu", "conv"):
        return [s]
    return layer_list(s)


def _scan_opts(p):
    model_options(p)
    data_options(p)
    g = p.add_argument_group("scan")
    g.add_argument("--layers", type=_names, action=ExtendAction, default=None,
                   metavar="L1,L2|relu|conv",
                   help="layers to rank images for, comma-separated; 'relu' (default: every "
                        "ReLU, post-ReLU maps) or 'conv' (every conv layer)")
    g.add_argument("--topk", type=positive_int, default=9, help="images kept per unit (default 9)")
    g.add_argument("--directions", type=nonnegative_int, default=0, metavar="D",
                   help="also rank images along D random directions per layer (Szegedy et al.; "
                        "seeded by --seed)")
    g.add_argument("--code-layer", default="auto", metavar="LAYER|auto|none",
                   help="layer whose output is each image's code (default auto: the input of "
                        "the last linear layer); 'none' for no codes")
    g.add_argument("--no-predictions", dest="predictions", action="store_false",
                   help="do not collect the predictions table")
    g.add_argument("--no-stats", dest="stats", action="store_false",
                   help="do not collect the activation statistics")
    g.add_argument("--channels-last", action="store_true", help="feed NHWC input")
    engine_options(p, checkpoint_every=50)
    output_options(p, "scan")


@command("scan", "one pass over a dataset: top-k images per unit, codes, predictions, stats")
@options(_scan_opts)
def cmd_scan(args) -> int:
    """Stream a dataset through the model once and keep, for every unit of the chosen layers,
    the k images that activate it most (max over positions) with the arg-max position; along
    the way, per-channel statistics, each image's code (float16, for t-SNE) and predictions
    with the items' metadata (for accuracy by attribute). Checkpoints as it goes: run the same
    command again after a crash and it resumes. Then
    `convlens unit-patches --scan DIR --layer L`."""
    from ..techniques.units.scan import scan

    lens = lens_from(args, cast=False)  # --dtype runs the pass under autocast
    # its spec is recorded, so `convlens unit-patches` can read it again
    data = data_from(args, lens)
    layers = args.layers[0] if args.layers and args.layers[0] in ("relu", "conv") else args.layers
    codes = None if str(args.code_layer).lower() == "none" else args.code_layer
    on_interrupt(args, f"progress is saved in {args.out}/.convlens-scan every "
                       f"{args.checkpoint_every} batches: run the same command again to continue")
    res = scan(lens, data, layers, topk=args.topk, directions=args.directions, codes=codes,
               predictions=args.predictions, stats=args.stats, out=args.out, seed=args.seed,
               indices=item_indices(args, len(data)), run=run_from(args))
    m = res.params
    rate = f", {m['images_per_s']:.0f} images/s" if m.get("images_per_s") else ""
    resumed = f", resumed after {m['resumed_from']} items" if m.get("resumed_from") else ""
    print(f"{lens.name} on {args.data}: {res.n} images scanned, {res.skipped} skipped "
          f"in {m['seconds']:.1f} s{rate}{resumed}")
    for layer in res.layers:
        top = res.topk.get(layer)
        if top is not None and top["score"].size:
            best = top["score"][:, 0]
            print(f"  {layer:<24} {best.shape[0]:>5} units, "
                  f"best score median {float(_median(best)):.3g}")
    if res.folder is not None and (res.folder / "predictions.parquet").is_file() and res.n:
        import pyarrow.parquet as pq
        correct = pq.read_table(res.folder / "predictions.parquet", columns=["correct"]).column(0)
        known = correct.drop_null().to_numpy(zero_copy_only=False)
        if len(known):
            print(f"  top-1 accuracy {known.mean():.4f} ({len(known)} labelled images)")
        else:
            print("  top-1 accuracy unavailable: the data's labels name none of the model's "
                  "classes")
    save_result(res, args, lens)
    return 0


def _median(a):
    import numpy as np
    return np.median(a)


def _units_opts(p):
    p.add_argument("--scan", required=True, metavar="DIR", help="a folder written by convlens scan")
    p.add_argument("--layer", required=True, metavar="NAME", help="a scanned layer")
    p.add_argument("--unit", type=nonnegative_int, action="append", metavar="U",
                   help="unit (channel) to show (repeatable); default the first --max-units")
    p.add_argument("--max-units", type=positive_int, default=64, help="units shown by default (64)")
    p.add_argument("--directions", action="store_true",
                   help="show the random directions' top images instead of the units'")
    p.add_argument("--data", metavar="SPEC", default=None,
                   help="the data (default: the spec saved by the scan)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (default: SCAN/units_LAYER, or SCAN/units_dirs_LAYER)")


@command("unit-patches", "top-k grids of a scanned layer: receptive-field patches and boxed images")
@options(_units_opts)
def cmd_unit_patches(args) -> int:
    """Cut, for each unit of a scanned layer, the patch of every top image under the unit's
    receptive field at its arg-max (clipped at the border, padded with the mean colour the
    network saw there), and draw a grid of patches and a grid of the images with the field's
    box; plus one overview with a row of patches per unit. Re-reads the images from the data
    spec the scan saved (or --data)."""
    from ..results import safe_name
    from ..techniques.units.patches import unit_patches

    if not (Path(args.scan) / "manifest.json").is_file():
        raise ConvlensError(
            f"{args.scan} holds no manifest.json: run convlens scan --out DIR first")
    res = unit_patches(args.scan, args.layer, args.unit, data=args.data,
                       directions=args.directions, max_units=args.max_units)
    what = "units_dirs" if args.directions else "units"
    args.out = args.out or str(Path(args.scan) / f"{what}_{safe_name(args.layer)}")
    from ..results import SavedResult
    save_result(res, args, model=SavedResult(args.scan).manifest.get("model"))
    print(f"{len(res.units)} {'directions' if args.directions else 'units'} of {args.layer}: "
          f"patches {res.patches.shape[2]}x{res.patches.shape[3]} px, {res.index.shape[1]} "
          "images each")
    return 0
