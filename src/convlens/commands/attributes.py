"""`convlens attribute-performance` (the seed's §8: performance as a function of image
attributes)."""
from __future__ import annotations

import argparse

from ..errors import ConvlensError
from .common import (
    command,
    lens_from,
    model_options,
    name_list,
    open_fraction,
    options,
    output_options,
    positive_int,
    run_from,
    save_result,
)


def _edges(s: str) -> tuple[str, list[float]]:
    name, eq, rest = s.partition("=")
    try:
        edges = [float(v) for v in rest.split(",")]
    except ValueError:
        edges = []
    if not eq or not name.strip() or len(edges) < 2:
        raise argparse.ArgumentTypeError(f"expected ATTRIBUTE=E0,E1,..., got {s!r}")
    return name.strip(), edges


def _attribute_performance_opts(p):
    g = p.add_argument_group("predictions")
    g.add_argument("--scan", action="append", metavar="[NAME=]DIR", default=[],
                   help="a folder written by convlens scan (repeatable: models side by side, "
                        "over the same data); NAME= labels the model")
    model_options(p, required=False)  # with --seed (also the bootstrap's), --device, --dtype
    g = p.add_argument_group("data")
    g.add_argument("--data", metavar="SPEC", default=None,
                   help="the data: run --model over it, or compute image attributes for "
                        "--scan (default: the data the scan recorded)")
    g.add_argument("--n", type=positive_int, default=None, metavar="N",
                   help="--model: the first N items (default all)")
    g.add_argument("--batch-size", type=positive_int, default=64,
                   help="--model: images per batch (64)")
    a = p.add_argument_group("attributes")
    a.add_argument("--attributes", type=name_list("attribute names"), default=None, metavar="A,B",
                   help="attributes to bin by (default: every item attribute; the computed "
                        "ones where the items have none; every class attribute)")
    a.add_argument("--class-attributes", metavar="FILE", default=None,
                   help="a .csv/.parquet table: a 'label' column (class index or name) and one "
                        "column per class attribute (real-world size, texture, ...)")
    a.add_argument("--computed", dest="computed", action="store_true", default=None,
                   help="also compute object area, brightness, RMS contrast, colourfulness, "
                        "edge density and entropy from the pixels")
    a.add_argument("--no-computed", dest="computed", action="store_false",
                   help="never compute attributes from the pixels")
    a.add_argument("--bins", type=positive_int, default=5,
                   help="bins per numeric attribute, by quantiles (default 5)")
    a.add_argument("--edges", type=_edges, action="append", default=[], metavar="A=E0,E1,...",
                   help="bin edges for one attribute (repeatable)")
    s = p.add_argument_group("statistics")
    s.add_argument("--min-count", type=positive_int, default=30,
                   help="bins with fewer items are shown grey, without interval (default 30)")
    s.add_argument("--resamples", type=positive_int, default=1000,
                   help="bootstrap resamples (1000)")
    s.add_argument("--level", type=open_fraction, default=0.95,
                   help="interval level (default 0.95)")
    s.add_argument("--method", default="percentile", choices=("percentile", "basic", "BCa"),
                   help="bootstrap interval (default percentile)")
    s.add_argument("--no-regression", dest="regression", action="store_false",
                   help="skip the logistic regression on all attributes at once")
    s.add_argument("--control-class", action="store_true",
                   help="regression within classes: one indicator per class beside the "
                        "attributes")
    output_options(p, "attribute-performance")


@command("attribute-performance", "accuracy per bin of each image attribute, models side by side")
@options(_attribute_performance_opts)
def cmd_attribute_performance(args) -> int:
    """Accuracy (top-1 and top-5) per bin of each attribute of the items, with bootstrap
    intervals, for one or more models side by side (Russakovsky et al. 2015, §6.3), and a
    logistic regression of correctness on all attributes at once (which ones matter with the
    others held fixed). Predictions come from scan folders (convlens scan --out DIR), or from
    running --model over --data. Writes a table and a figure per attribute and the regression."""
    from ..techniques.attributes.attributes import attribute_performance

    if not args.scan and not args.model:
        raise ConvlensError("give --scan DIR (repeatable) or --model SPEC --data SPEC")
    names, preds = [], []
    for entry in args.scan:
        name, eq, folder = entry.partition("=")
        names.append(name if eq else None)
        preds.append(folder if eq else entry)
    lens = None
    if args.model:
        if not args.data:
            raise ConvlensError("--model needs --data SPEC: the data to run it over")
        lens = lens_from(args, cast=False)  # float32: --dtype runs the pass under autocast
        names.append(None)
        preds.append(lens)
    bins = {"*": args.bins, **dict(args.edges)} if args.edges else args.bins
    res = attribute_performance(
        preds if len(preds) > 1 else preds[0], args.attributes, bins, data=args.data,
        class_attributes=args.class_attributes, computed=args.computed,
        names=names if any(names) else None, min_count=args.min_count, level=args.level,
        n_resamples=args.resamples, method=args.method, regression=args.regression,
        control_class=args.control_class,
        seed=args.seed, n=args.n, run=run_from(args))
    _print(res)
    model = None if lens is not None else res.model
    save_result(res, args, lens=lens, model=model)
    return 0


def _print(res) -> None:
    level = res.params.get("level", 0.95)
    for a in res.attributes:
        t = res.table(a)
        units = res.summary.set_index("attribute").units.get(a, "")
        print(f"{a}" + (f" ({units})" if units else "") + f": top-1 accuracy, {level:.0%} interval")
        for _, r in t.iterrows():
            grey = "  (few)" if r.few else ""
            print(f"  {r.model[:28]:<28} {str(r.label)[:18]:<18} n={r.n:<6} {r.top1:.3f} "
                  f"[{r.top1_lo:.3f}, {r.top1_hi:.3f}]{grey}")
    if len(res.regression):
        print("regression of top-1 correctness on the standardised attributes (log-odds per SD):")
        reg = res.regression
        for _, r in reg[(reg.term != "intercept") & (reg.attribute != "class")].iterrows():
            print(f"  {r.model[:28]:<28} {r.term[:24]:<24} {r.coef:+.3f} [{r.lo:+.3f}, "
                  f"{r.hi:+.3f}]  p={r.p:.2g}")
    for n in res.notes:
        print(f"note: {n}")
