"""Regenerate docs/faithfulness.md and its figures: which map can I trust, on the seed models.

    .venv/bin/python docs/make_faithfulness.py [--n 1000] [--sets shapes,stamps]
        [--methods M1,M2,...] [--render-only] [--zero-only]

For each built-in model on its own test data (builtin:shapes-net on builtin:shapes:test,
builtin:stamps-net on builtin:stamps:test), `convlens.faithfulness` over the first `--n` items
with every metric, each image's predicted class; the result folders are kept under
docs/faithfulness/<set>/ (tables as CSV, the curves and ranking figures as PNG), and
faithfulness.md gets each model's table (mean and 95 % bootstrap interval, rank), its figures
and its verdict. `--render-only` rewrites the page from the saved folders. Checkpoints as it
goes: run the same command again after a kill and it resumes.

ROAD's zero-filling control (``road_zero_morf`` / ``road_zero_lerf``, for ROAD's rank
consistency claim) is scored in the same run; `--zero-only` scores only it, into
docs/faithfulness/<set>-zero/, for a set whose main run predates it (the maps and images are
the same: every map and every noise draw is seeded by the image's dataset index).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

try:
    import convlens
except ImportError:  # a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import convlens

HERE = Path(__file__).resolve().parent
SETS = {"shapes": ("builtin:shapes-net", "builtin:shapes:test"),
        "stamps": ("builtin:stamps-net", "builtin:stamps:test")}
#: the maps scored here: every method but SmoothGrad and integrated gradients (50 gradients
#: each, times max-sensitivity's redraws), which a run of 1,000 images on one core cannot
#: afford; the CLI and the API score them by default
METHODS = ["saliency", "deconvnet", "guided_backprop", "grad_cam", "guided_grad_cam",
           "grad_cam_plus_plus", "xgrad_cam", "hires_cam", "layer_cam", "score_cam",
           "ablation_cam", "eigen_cam", "input_x_gradient", "random"]


ZERO = ["road_zero_morf", "road_zero_lerf"]


def run(name: str, n: int, methods: list[str], zero_only: bool = False) -> None:
    from convlens.techniques.faithfulness.faithfulness import DEFAULT_METRICS

    model, data = SETS[name]
    out = HERE / "faithfulness" / (f"{name}-zero" if zero_only else name)
    metrics = ZERO if zero_only else list(DEFAULT_METRICS) + ZERO
    t0 = time.time()
    res = convlens.faithfulness(convlens.load_model(model), data, methods=methods, n=n,
                                metrics=metrics, out=out, run=convlens.RunSettings(resume=True,
                                                                  checkpoint_every=2))
    res.save(out, lens=convlens.load_model(model))
    (out / "by_image.csv").unlink(missing_ok=True)  # 1.3 MB at 1,000 images: the parquet stays
    print(f"{name}: {res.params['images']} images in {time.time() - t0:.0f} s")


def table_md(t: pd.DataFrame) -> list[str]:
    from convlens.techniques.faithfulness.results import TITLES

    metrics = [k for k in dict.fromkeys(t.metric) if k not in ZERO]  # in the findings
    methods = list(dict.fromkeys(t.method))
    head = "| method | " + " | ".join(f"{TITLES[k]} ({t[t.metric == k].better.iloc[0]})"
                                      for k in metrics) + " |"
    lines = [head, "|---|" + "---:|" * len(metrics)]
    for m in methods:
        cells = []
        for k in metrics:
            r = t[(t.method == m) & (t.metric == k)].iloc[0]
            cells.append("–" if r["images"] == 0 else
                         f"{r['mean']:.3g} [{r['low']:.3g}, {r['high']:.3g}] #{int(r['rank'])}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def consistency_interval(per_image: pd.DataFrame | None, n_boot: int = 1000
                         ) -> dict[str, tuple[float, float, float]]:
    """ROAD's rank consistency with a bootstrap over images: resample the images, average each
    method's values, rank the methods by MoRF and by LeRF and take the Spearman correlation.
    -> ``{"noisy linear" | "zero" | "difference": (2.5 %, 97.5 %, share of resamples where
    imputation is the more consistent)}`` (the share only on "difference")."""
    import numpy as np
    from scipy.stats import spearmanr

    need = ["road_morf", "road_lerf", "road_zero_morf", "road_zero_lerf"]
    if per_image is None or not set(need) <= set(per_image.columns):
        return {}
    wide = {k: per_image.pivot(index="index", columns="method", values=k) for k in need}
    arr = {k: v.to_numpy() for k, v in wide.items()}  # (images, methods)
    rng = np.random.default_rng(0)
    n = arr["road_morf"].shape[0]
    rhos = {"noisy linear": [], "zero": []}
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        for name, (a, b) in (("noisy linear", ("road_morf", "road_lerf")),
                             ("zero", ("road_zero_morf", "road_zero_lerf"))):
            # MoRF: lower is better; LeRF: higher is better -> rank both best first
            rhos[name].append(spearmanr(arr[a][idx].mean(0), -arr[b][idx].mean(0))[0])
    lin, zero = np.asarray(rhos["noisy linear"]), np.asarray(rhos["zero"])
    q = lambda v: tuple(float(x) for x in np.nanquantile(v, [0.025, 0.975]))  # noqa: E731
    return {"noisy linear": q(lin), "zero": q(zero),
            "difference": (*q(lin - zero), float(np.mean(lin > zero)))}


def findings(t: pd.DataFrame, per_image: pd.DataFrame | None = None) -> list[str]:
    """The papers' findings, checked on this table in words."""
    def mean(method, metric):
        r = t[(t.method == method) & (t.metric == metric)]
        return None if r.empty else float(r["mean"].iloc[0])
    out = ["The papers' findings on this model:", ""]
    rho = {m: mean(m, "randomisation") for m in ("guided_backprop", "deconvnet", "saliency",
                                                 "grad_cam")}
    if all(v is not None for v in rho.values()):
        holds = rho["guided_backprop"] > 0.5 and rho["deconvnet"] > 0.5
        out.append(
            "- Randomisation (Adebayo et al. 2018: guided backprop and DeconvNet barely change "
            "when the weights are randomised): rank correlation with the randomised model's "
            f"map: guided backprop {rho['guided_backprop']:.2f}, DeconvNet "
            f"{rho['deconvnet']:.2f}, saliency {rho['saliency']:.2f}, Grad-CAM "
            f"{rho['grad_cam']:.2f}. " + (
                "It holds here: both stay above 0.5." if holds else
                "It does not hold as strongly here: neither stays above 0.5, though guided "
                "backprop changes less than saliency (not tested why; the paper's ImageNet "
                "models are far deeper than this one)."
                if rho["guided_backprop"] > rho["saliency"] else
                "It does not hold here: neither stays above 0.5."))
    inf = t[t.metric == "infidelity"]
    if not inf.empty:
        out.append(f"- Infidelity (optimally scaled) spans only {inf['mean'].min():.3g} to "
                   f"{inf['mean'].max():.3g} over the methods, the noise map included: with "
                   "Gaussian noise of 0.1 on every pixel the score change is dominated by what "
                   "no map predicts linearly, so this metric does not tell these maps apart.")
    from convlens.techniques.faithfulness.results import FaithfulnessResult

    rho = FaithfulnessResult(t, pd.DataFrame(), pd.DataFrame(), {}).road_consistency()
    if len(rho) == 2:
        zm, zl = (t[t.metric == k].set_index("method")["mean"] for k in ZERO)
        ci = consistency_interval(per_image)
        if ci and ci["difference"][0] > 0:
            verdict = "It holds here: the bootstrap interval of the difference excludes 0."
        elif ci and ci["difference"][1] < 0:
            verdict = ("It does not hold here: the orders agree better without the imputation "
                       "(the bootstrap interval of the difference is below 0).")
        elif ci:
            verdict = ("Not established here: the bootstrap interval of the difference "
                       "includes 0.")
        else:
            verdict = ("The point estimates " + ("agree with it" if rho["noisy linear"] >
                                                 rho["zero"] else "do not agree with it")
                       + " (no per-image values for an interval).")
        out.append(
            "- ROAD's claim (Rong et al. 2022: removing the most and the least relevant pixels "
            "first rank the methods consistently under noisy linear imputation, not under a "
            "fixed value): Spearman correlation of the two orders' rankings over the methods "
            f"{rho['noisy linear']:.2f} with noisy linear imputation, {rho['zero']:.2f} with "
            "the removed pixels set to the data mean (zero in the normalised space). "
            + verdict)
        if ci:
            lo, hi, share = ci["difference"]
            out.append(
                "  Bootstrap over images (1,000 resamples, 95 %): noisy linear "
                f"[{ci['noisy linear'][0]:.2f}, {ci['noisy linear'][1]:.2f}], zero "
                f"[{ci['zero'][0]:.2f}, {ci['zero'][1]:.2f}], their difference "
                f"[{lo:.2f}, {hi:.2f}]; imputation the more consistent in {100 * share:.0f} % "
                "of the resamples. With " + str(t.method.nunique()) + " methods (the noise "
                "map, last everywhere, among them) a correlation moves in large steps.")
        out.append("  Zero-filled means, most / least relevant first: "
                   + "; ".join(f"{m} {zm[m]:.3g} / {zl[m]:.3g}" for m in zm.index) + ".")
    else:
        out.append("- ROAD's claim (most- and least-relevant-first orders agree better under "
                   "noisy linear imputation than under zero filling): not scored for this "
                   "model (run `docs/make_faithfulness.py --zero-only`).")
    return out


def render() -> None:
    from convlens.results import load_result

    parts = ["# Which map can I trust? Faithfulness on the seed models", "",
             "Regenerated by `docs/make_faithfulness.py` (issue 26). Each cell: the mean over "
             "images, its 95 % bootstrap interval (2,000 resamples) and the method's rank "
             "among the methods on that metric (#1 best; the direction is in the header). "
             "Every map explains the image's predicted class. Deletion and insertion in 28 "
             "steps, ROAD at 10 %, ..., 90 % removed with noisy linear imputation (noise 0.01 "
             "of the pixel range), infidelity from 16 Gaussian perturbations (sigma 0.1, "
             "optimally scaled: the maps' units differ), max-sensitivity from 4 uniform draws "
             "(radius 0.02), randomisation: the Spearman correlation with the same method's "
             "map on the model with every weight layer re-initialised. `random` is a map of "
             "uniform noise: the floor. Each table scores the methods it lists (the command and "
             "the API score all 16 by default; these runs, on one core, took 7: "
             "`docs/make_faithfulness.py --methods ...`). ROAD's fixed-value control (the same "
             "removed pixels set to the data mean, no noise) is scored beside ROAD for its "
             "rank-consistency claim; its means are in the findings, not the table.", ""]
    for name in SETS:
        folder = HERE / "faithfulness" / name
        if not (folder / "manifest.json").is_file():
            continue
        res = load_result(folder)
        # saved again: the pictures and the page's layout follow the code, not the run's
        res.save(folder, lens=convlens.load_model(res.params["model"]))
        (folder / "by_image.csv").unlink(missing_ok=True)
        p = res.params
        table, per_image = res.table, res.by_image
        if (HERE / "faithfulness" / f"{name}-zero" / "manifest.json").is_file():
            extra = load_result(HERE / "faithfulness" / f"{name}-zero")
            if extra.params["images"] == p["images"]:
                table = pd.concat([table, extra.table], ignore_index=True)
                per_image = per_image.merge(extra.by_image, on=["index", "method"])
        parts += [f"## {p['model']} on {p['data']} ({p['images']} images)", "",
                  f"{p['seconds']:.0f} s, {p['images_per_s']} images per second "
                  f"({len(p['methods'])} methods, every metric).", ""]
        parts += table_md(res.table) + [""]
        parts += [f"- {line}" for line in res.verdict()] + [""]
        parts += findings(table, per_image) + [""]
        for pic in ("ranking", "curve_deletion", "curve_insertion", "curve_road_morf",
                    "curve_road_lerf"):
            if (folder / f"{pic}.png").is_file():
                parts.append(f"![{pic}](faithfulness/{name}/{pic}.png)")
        parts.append("")
    (HERE / "faithfulness.md").write_text("\n".join(parts))
    print(HERE / "faithfulness.md")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--sets", default="shapes,stamps")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--render-only", action="store_true")
    ap.add_argument("--zero-only", action="store_true",
                    help="score only ROAD's zero-filling control, into <set>-zero/")
    args = ap.parse_args(argv)
    if not args.render_only:
        for name in args.sets.split(","):
            run(name, args.n, args.methods.split(","), args.zero_only)
    render()
    return 0


if __name__ == "__main__":
    sys.exit(main())
