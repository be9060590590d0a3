"""`convlens fool` and `convlens robustness` (the seed's "Fooling ConvNets", METHODS.md §9);
`convlens fgsm` and `convlens pgd` are built from their view records (`commands.views`)."""
from __future__ import annotations

import argparse

from .common import (
    command,
    data_from,
    data_options,
    engine_options,
    image_options,
    images_from,
    item_indices,
    lens_from,
    model_options,
    nonnegative_int,
    on_interrupt,
    options,
    output_options,
    positive_int,
    run_from,
    save_result,
    unit_interval,
)


def _eps_list(s: str) -> list[float]:
    try:
        vals = [float(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {s!r}")
    if not vals:
        raise argparse.ArgumentTypeError("give at least one eps")
    return vals


def _explain(p) -> None:
    p.add_argument("--explain", default="saliency",
                   choices=("saliency", "guided-backprop", "none"),
                   help="map of x and x_adv drawn side by side (default saliency)")


def _explain_arg(args) -> str | None:
    return None if args.explain == "none" else args.explain.replace("-", "_")


def _fool_opts(p: argparse.ArgumentParser) -> None:
    model_options(p)
    image_options(p)
    p.add_argument("--target", required=True, metavar="CLASS",
                   help="the class to turn every image into: an index or a label name")
    p.add_argument("--confidence", type=unit_interval, default=0.9,
                   help="target probability to reach, in (0, 1) (default 0.9)")
    p.add_argument("--method", default="adam", choices=("adam", "lbfgs"),
                   help="optimiser: adam (batched, default) or lbfgs (scipy L-BFGS-B, the paper's)")
    p.add_argument("--steps", type=positive_int, default=50,
                   help="iterations per value of c (default 50)")
    p.add_argument("--search", type=positive_int, default=6,
                   help="values of c tried (default 6)")
    _explain(p)
    output_options(p, "fool")


@command("fool", "the smallest change that makes the model answer a chosen class "
                 "(Szegedy et al. 2014)")
@options(_fool_opts)
def cmd_fool(args) -> int:
    """Szegedy et al. 2014: for each image, minimise c ||r||^2 + cross-entropy(x + r, target)
    with x + r in [0, 1], searching c for the smallest change (L2) whose target probability
    reaches --confidence. Prints each image's L2 and L-infinity change (pixels in [0, 1]);
    writes the images, the changes, a gallery (x | change, amplified | x_adv) and the saliency
    of x and x_adv."""
    from ..techniques.adversarial.fooling import fool

    lens = lens_from(args)
    x, names = images_from(args, lens)
    res = fool(lens, x, args.target, confidence=args.confidence, method=args.method,
               steps=args.steps, search=args.search, explain=_explain_arg(args))
    reached = res.extra["reached"]
    for i, name in enumerate(names):
        print(f"{name}: {res.label(int(res.predicted[i]))} ({float(res.confidence[i]):.3f}) -> "
              f"{res.label(int(res.adv_predicted[i]))} ({float(res.adv_confidence[i]):.3f}), "
              f"L2 {float(res.l2[i]):.3f}, Linf {float(res.linf[i]):.3f}"
              + ("" if bool(reached[i]) else "  [target not reached]"))
    save_result(res, args, lens)
    return 0


def _robustness_opts(p: argparse.ArgumentParser) -> None:
    model_options(p)
    data_options(p)
    g = p.add_argument_group("attack")
    g.add_argument("--eps", type=_eps_list, default=[0.0, 0.01, 0.03, 0.1], metavar="E1,E2,...",
                   help="largest change of a pixel, pixels in [0, 1] (default 0,0.01,0.03,0.1)")
    g.add_argument("--attack", default="fgsm", choices=("fgsm", "pgd"), help="default fgsm")
    g.add_argument("--steps", type=positive_int, default=10, help="PGD iterations (default 10)")
    g.add_argument("--alpha", type=float, default=None,
                   help="PGD step in pixel units (default 2.5 eps / steps)")
    g.add_argument("--norm", default="linf", choices=("linf", "l2"),
                   help="PGD's ball (default linf)")
    g.add_argument("--no-random-start", dest="random_start", action="store_false",
                   help="PGD from the image itself (the basic iterative method); else from a "
                        "random point of the eps-ball, seeded by --seed and each item's index")
    g.add_argument("--examples", type=nonnegative_int, default=8,
                   help="items shown attacked at the largest eps (default 8; 0: none)")
    _explain(g)
    engine_options(p, checkpoint_every=20)
    output_options(p, "robustness")


@command("robustness", "accuracy and confidence against eps (FGSM or PGD) over a dataset")
@options(_robustness_opts)
def cmd_robustness(args) -> int:
    """Attack every labelled item of --data at each --eps (FGSM, or PGD with --attack pgd),
    untargeted against its label, and report accuracy, error rate and mean confidence per eps
    (Goodfellow et al. 2015). Streams the data, checkpoints as it goes (run the same command
    again after a crash and it resumes), and draws the accuracy-against-eps curve and a gallery
    of the first --examples items at the largest eps."""
    from ..techniques.adversarial.robustness import robustness

    lens = lens_from(args)
    data = data_from(args, lens)
    on_interrupt(args, f"progress is saved in {args.out}/.convlens-robustness every "
                       f"{args.checkpoint_every} batches: run the same command again to continue")
    res = robustness(lens, data, eps=args.eps, attack=args.attack, steps=args.steps,
                     alpha=args.alpha, random_start=args.random_start, norm=args.norm,
                     seed=args.seed, examples=args.examples, explain=_explain_arg(args),
                     out=args.out, indices=item_indices(args, len(data)), run=run_from(args))
    m = res.params
    resumed = f", resumed after {m['resumed_from']} items" if m.get("resumed_from") else ""
    print(f"{lens.name} on {args.data}, {args.attack.upper()}: {m['images']} images "
          f"({m['unlabelled']} unlabelled, {m['skipped']} skipped) in {m['seconds']:.1f} s"
          f"{resumed}")
    for line in res.summary():
        print(line)
    save_result(res, args, lens)
    return 0
