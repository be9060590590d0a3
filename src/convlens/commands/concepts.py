"""`convlens dissect`: which concept each unit detects (issue 27)."""
from __future__ import annotations

import argparse

from .common import (
    command,
    data_from,
    data_options,
    engine_options,
    item_indices,
    layer_list,
    lens_from,
    model_options,
    on_interrupt,
    open_fraction,
    options,
    output_options,
    run_from,
    save_result,
)


def _opts(p: argparse.ArgumentParser) -> None:
    model_options(p)
    data_options(p)
    g = p.add_argument_group("dissection")
    g.add_argument("--layers", type=layer_list, default=None, metavar="L1,L2,...",
                   help="layers to dissect (default: every ReLU with a spatial map; "
                        "`convlens layers` lists them)")
    g.add_argument("--quantile", type=open_fraction, default=0.005,
                   help="share of each unit's activations above its threshold (default 0.005, "
                        "the paper's)")
    g.add_argument("--rule", type=open_fraction, default=0.04,
                   help="IoU above which a unit detects its best concept (default 0.04)")
    g.add_argument("--no-colours", action="store_true",
                   help="leave out the 11 colour concepts")
    engine_options(p, checkpoint_every=20)
    output_options(p, "dissect")


@command("dissect", "which concept each unit detects: network dissection over a dataset")
@options(_opts)
def cmd_dissect(args) -> int:
    """Two passes over --data: each unit's threshold (the activation it exceeds on 0.5 % of
    the data's pixels), then its thresholded map's intersection over union with every concept
    the data labels per pixel: the object's mask by class and the background around it (items
    with a ``mask``), each pixel's colour name, and your own concepts. Prints the unique
    detectors per category and layer. Checkpoints as it goes (run the same command again after
    a crash).

    Your own concepts come as masks beside the images, in a CSV/Parquet manifest given as
    --data (paths relative to its folder; nonzero mask pixels are the concept): a column
    `mask`, the object's mask (the concept object:<label>; with a `background` column, the
    texture:<background> around it), and columns `mask:<category>:<name>` (mask:part:wheel,
    mask:material:wood), one mask file per row, an empty cell where the concept is absent. A
    mask has its image's size, or its shape at another scale (resized, nearest), and follows
    the image's resize and centre crop. A mask file that cannot be used is warned about,
    counted and taken as absent. See docs/concepts.md, "Your own concepts"."""
    from ..techniques.concepts.dissect import dissect

    lens = lens_from(args)
    data = data_from(args, lens)
    on_interrupt(args, f"progress is saved in {args.out}/.convlens-dissect every "
                       f"{args.checkpoint_every} batches: run the same command again to continue")
    res = dissect(lens, data, layers=args.layers, q=args.quantile, rule=args.rule,
                  colours=not args.no_colours, out=args.out,
                  indices=item_indices(args, len(data)), run=run_from(args))
    m = res.params
    print(f"{lens.name} on {args.data}: {m['images']} images in {m['seconds']:.1f} s"
          + (f" ({m['without_masks']} without object masks)" if m["without_masks"] else "")
          + (f"; {m['bad_masks']} mask files could not be used (taken as absent)"
             if m.get("bad_masks") else ""))
    for line in res.summary():
        print(line)
    save_result(res, args, lens)
    return 0


def _ints(s: str) -> list[int]:
    try:
        vals = [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected class indices separated by commas, got {s!r}")
    if not vals or min(vals) < 0:
        raise argparse.ArgumentTypeError("give class indices 0 or more")
    return vals


def _tcav_opts(p: argparse.ArgumentParser) -> None:
    from .common import positive_int

    model_options(p)
    data_options(p)
    g = p.add_argument_group("TCAV")
    g.add_argument("--concepts", required=True, metavar="DIR|meta:KEY[=V1,V2]",
                   help="a folder of concept folders (each a few dozen example images; a "
                        "folder named random... holds the random counterparts, else they come "
                        "from --data), or meta:KEY to draw example sets from the items of "
                        "--concept-data (default --data) by a metadata value "
                        "(meta:background on the builtin data; meta:background=stripes: that "
                        "value only, its counterparts drawn from items without it)")
    g.add_argument("--concept-data", default=None, metavar="SPEC",
                   help="with --concepts meta:KEY, the data the example sets come from "
                        "(default --data), e.g. builtin:shapes:test for a model of "
                        "builtin:shapes-planted")
    g.add_argument("--per-concept", type=positive_int, default=30, metavar="N",
                   help="with --concepts meta:KEY, example images per concept (default 30)")
    g.add_argument("--layers", type=layer_list, default=None, metavar="L1,L2,...",
                   help="layers (default: the last three ReLUs with a spatial map)")
    g.add_argument("--classes", type=_ints, default=None, metavar="K1,K2,...",
                   help="classes to test (default: every class among the first --n items)")
    g.add_argument("--runs", type=positive_int, default=10,
                   help="runs, each with two disjoint random sets: the concepts' counterparts "
                        "and a random-vs-random CAV (default 10; at least 2)")
    g.add_argument("--n-random", type=positive_int, default=50,
                   help="images per random set (default 50; fewer where the random images are "
                        "under twice as many)")
    g.add_argument("--alpha", type=open_fraction, default=0.05,
                   help="significance level before Bonferroni (default 0.05)")
    p.add_argument("--out", default="convlens-out/tcav", metavar="DIR",
                   help="folder for the result (default convlens-out/tcav)")


@command("tcav", "how much each class depends on concepts given as example images (TCAV)")
@options(_tcav_opts)
def cmd_tcav(args) -> int:
    """Concept activation vectors (Kim et al. 2018): for each concept and layer, the normal of
    a linear classifier separating the concept's examples from random images, once per random
    set; the TCAV score of a class is the share of its images (among the first --n of --data)
    whose score grows along it; a concept counts when its scores differ from random vectors'
    (two-sided t-test, Bonferroni)."""
    from ..techniques.concepts.testing import concept_sets, tcav

    lens = lens_from(args)
    data = data_from(args, lens)
    concepts = args.concepts
    if concepts.startswith("meta:"):
        key, _, values = concepts[5:].partition("=")
        source = data_from(args, lens, spec=args.concept_data) if args.concept_data else data
        concepts = concept_sets(source, key=key, per=args.per_concept,
                                values=[v for v in values.split(",") if v] or None)
    res = tcav(lens, data, concepts, layers=args.layers, classes=args.classes, runs=args.runs,
               n_random=args.n_random, n=args.n or 500, alpha=args.alpha, run=run_from(args))
    for line in res.summary():
        print(line)
    save_result(res, args, lens)
    return 0
