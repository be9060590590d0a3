"""Regenerate docs/attributes/: accuracy as a function of image attributes (METHODS.md §8).

    .venv/bin/python docs/make_attributes.py [--only shapes,fashion,stamps] [--threads 1]

Each entry of `ENTRIES` is one data set with its models: every model is scanned over the test
items (predictions only: `convlens.scan(..., topk=0, codes=None, stats=False)`), then
`attribute_performance` bins the items by each attribute, all models side by side, and fits
the regression. Per entry it writes `docs/attributes/<entry>_<attribute>.png`, the forest plot
`<entry>_regression.png`, the tables `<entry>_bins.csv` and `<entry>_regression.csv`, and it
prints the tables as Markdown. Entries whose model or data is not installed are skipped with
a note (stamps-net until `builtin:stamps-net` lands).

The weaker shapes model is shapes-net's recipe cut to one epoch over the first 20,000
training items (seed 0, one thread: the same weights each run); it is trained into the work
folder, not shipped. Scans and weights go to `--work` (default: a folder under /tmp), so a
second run reuses them.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

try:
    import convlens
except ImportError:  # a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import convlens
from convlens.engine.checkpoint import fingerprint_model
from convlens.engine.settings import RunSettings
from convlens.errors import ConvlensError
from convlens.techniques.attributes.attributes import attribute_performance
from convlens.techniques.units.scan import scan

QUIET = RunSettings(progress=False)

HERE = Path(__file__).resolve().parent
OUT = HERE / "attributes"

# per-class attributes in the spirit of Russakovsky et al. §6.3 (deformability, texture, ...)
SHAPES_CLASSES = pd.DataFrame({
    "label": ["circle", "square", "triangle", "star", "cross", "hexagon", "ring", "arrow"],
    "convex": ["yes", "yes", "yes", "no", "no", "yes", "no", "no"],
    "corners": [0, 4, 3, 10, 12, 6, 0, 7],
})
FASHION_CLASSES = pd.DataFrame({
    "label": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
              "Sneaker", "Bag", "Ankle boot"],
    "worn_on": ["upper body", "legs", "upper body", "body", "upper body", "feet", "upper body",
                "feet", "carried", "feet"],
})


@dataclass
class Model:
    name: str
    spec: str
    weights: str | None = None      # "weak-shapes": trained by `weak_shapes_net`


@dataclass
class Entry:
    name: str
    data: str
    models: list[Model]
    attributes: list[str] | None = None
    bins: dict = field(default_factory=dict)
    classes: pd.DataFrame | None = None
    computed: bool | None = None


ENTRIES = [
    Entry("shapes", "builtin:shapes:test:10000",
          [Model("shapes-net", "builtin:shapes-net"),
           Model("shapes-net, 1 epoch", "builtin:shapes-net", "weak-shapes")],
          ["scale", "clutter", "occluded", "truncated", "contrast", "background", "convex"],
          {"scale": [0.02, 0.04, 0.08, 0.16, 0.32, 0.6]}, SHAPES_CLASSES),
    Entry("fashion", "builtin:fashion-mnist:test",
          [Model("fashion-net", "builtin:fashion-net")],
          None, {}, FASHION_CLASSES, computed=True),
    Entry("stamps", "builtin:stamps:test",
          [Model("stamps-net", "builtin:stamps-net")],
          # stamps' own `brightness` is a jitter factor; `brightness_px` the measured mean luma
          ["scale", "truncated", "occluded", "clutter", "background", "brightness",
           "brightness_px"]),
]


def weak_shapes_net(path: Path) -> Path:
    """shapes-net's recipe for one epoch over 20,000 items, seeded (about a minute)."""
    if path.is_file():
        return path
    from convlens.models.builtin import BUILTIN_MODELS, Recipe
    from convlens.models.train import train_builtin

    base = BUILTIN_MODELS["shapes-net"].extra["recipe"]
    recipe = Recipe(epochs=1, batch_size=base.batch_size, lr=base.lr,
                    weight_decay=base.weight_decay, shift=base.shift, flip=base.flip,
                    train_items=20_000)
    t0 = time.time()
    _, result = train_builtin("shapes-net", out=path, seed=0, recipe=recipe, progress=False)
    print(f"weak shapes-net: {time.time() - t0:.0f} s, test top-1 {result.test_accuracy:.4f}",
          file=sys.stderr)
    return path


def run(entry: Entry, work: Path, resamples: int) -> None:
    folders = {}
    for m in entry.models:
        weights = None
        if m.weights == "weak-shapes":
            weights = str(weak_shapes_net(work / "shapes-net-1epoch.pt"))
        lens = convlens.load_model(m.spec, weights=weights)
        folder = work / f"{entry.name}-{m.name.replace(' ', '').replace(',', '-')}"
        # a saved scan is reused only if it was made with these weights (retrained models
        # keep their spec, so the spec alone would reuse stale predictions)
        stamp, weights_hash = folder / "weights.sha", fingerprint_model(lens)
        if not ((folder / "predictions.parquet").is_file() and stamp.is_file()
                and stamp.read_text() == weights_hash):
            shutil.rmtree(folder, ignore_errors=True)
            t0 = time.time()
            scan(lens, entry.data, topk=0, codes=None, stats=False, out=folder,
                 run=RunSettings(progress=False))
            stamp.write_text(weights_hash)
            print(f"scan {m.name} on {entry.data}: {time.time() - t0:.0f} s", file=sys.stderr)
        folders[m.name] = folder
    res = attribute_performance(folders, entry.attributes, {"*": 5, **entry.bins},
                                class_attributes=entry.classes, computed=entry.computed,
                                n_resamples=resamples, run=QUIET)
    save = work / f"{entry.name}-attributes"
    res.save(save)
    OUT.mkdir(exist_ok=True)
    for a in res.attributes:
        res.plot(a, str(OUT / f"{entry.name}_{a}.png"))
    if len(res.regression):
        res.plot_regression(str(OUT / f"{entry.name}_regression.png"))
    res.bins.to_csv(OUT / f"{entry.name}_bins.csv", index=False, float_format="%.4f")
    res.regression.to_csv(OUT / f"{entry.name}_regression.csv", index=False, float_format="%.4f")
    # the same regression within classes (one indicator per class beside the attributes)
    within = attribute_performance(folders, res.attributes, {"*": 5, **entry.bins},
                                   class_attributes=entry.classes, computed=entry.computed,
                                   n_resamples=100, control_class=True, run=QUIET)
    if len(within.regression):
        within.plot_regression(str(OUT / f"{entry.name}_regression_within_class.png"))
        within.regression.to_csv(OUT / f"{entry.name}_regression_within_class.csv",
                                 index=False, float_format="%.4f")
    print(markdown(entry, res, within))
    if entry.computed:
        print(per_class(entry, folders[entry.models[0].name]))


def per_class(entry: Entry, folder: Path) -> str:
    """Mean computed attributes and top-1 per class (the first model): which attributes only
    tell the classes apart."""
    from convlens.results import SavedResult
    from convlens.techniques.attributes.image_stats import image_attributes

    p = pd.read_parquet(folder / "predictions.parquet")
    stats = image_attributes(entry.data, indices=p["index"], progress=False).drop(columns="label")
    t = p.merge(stats, on="index")
    names = SavedResult(folder).info.get("labels") or []
    g = t.groupby("label")[["entropy", "brightness", "correct"]].mean().sort_values("entropy")
    lines = ["| class | entropy (bits) | brightness | top-1 |", "|---|---:|---:|---:|"]
    for k, r in g.iterrows():
        name = names[k] if k < len(names) else k
        lines.append(f"| {name} | {r.entropy:.2f} | {r.brightness:.3f} | {r.correct:.3f} |")
    return "\n".join(lines) + "\n"


def markdown(entry: Entry, res, within=None) -> str:
    lines = [f"## {entry.name}: {', '.join(res.params['models'])} on {entry.data}", ""]
    for m in res.params["models"]:
        t1, t5 = res.params["top1"][m], res.params["top5"][m]
        lines.append(f"- {m}: {res.params['items'][m]} items, top-1 {t1:.4f}"
                     + (f", top-5 {t5:.4f}" if t5 is not None else ""))
    lines.append("")
    models = res.params["models"]
    for a in res.attributes:
        t = res.table(a)
        units = res.summary.set_index("attribute").units.get(a, "")
        lines += [f"**{a}**" + (f" ({units})" if units else ""), "",
                  "| bin | n | " + " | ".join(f"{m} top-1 [95 %]" for m in models) + " |",
                  "|---|---:|" + "---:|" * len(models)]
        for b, g in t.groupby("bin", sort=True):
            g = g.set_index("model")
            cells = []
            for m in models:
                r = g.loc[m]
                if r.few:
                    what = ("class" if r.n == 1 else "classes") if r.level == "class" else "items"
                    cells.append(f"*{r.top1:.3f} ({int(r.n)} {what}, too few)*")
                else:
                    cells.append(f"{r.top1:.3f} [{r.top1_lo:.3f}, {r.top1_hi:.3f}]")
            lines.append(f"| {g.label.iloc[0]} | {int(g.n.iloc[0])} | " + " | ".join(cells) + " |")
        lines.append("")
    for title, r in (("all items", res), ("within classes", within)):
        if r is None or not len(r.regression):
            continue
        reg = r.regression[(r.regression.term != "intercept") & (r.regression.attribute != "class")]
        lines += [f"**regression, {title}** (log-odds per SD, 95 % Wald interval)", "",
                  "| term | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
        for term, g in reg.groupby("term", sort=False):
            g = g.set_index("model")
            cells = [f"{g.loc[m].coef:+.2f} [{g.loc[m].lo:+.2f}, {g.loc[m].hi:+.2f}]"
                     if m in g.index else "" for m in models]
            ref = g.reference.iloc[0]
            lines.append(f"| {term}{f' (vs {ref})' if ref else ''} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"note: {n}" for n in res.notes]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", default=None, help="entries to run, comma-separated")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    ap.add_argument("--work", default="/tmp/convlens-attributes-work",
                    help="scans and the weak model's weights")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    only = None if args.only is None else set(args.only.split(","))
    for entry in ENTRIES:
        if only is not None and entry.name not in only:
            continue
        t0 = time.time()
        try:
            run(entry, work, args.resamples)
        except ConvlensError as e:
            print(f"\n{entry.name}: skipped ({e})\n")
            continue
        print(f"\n({entry.name}: {time.time() - t0:.0f} s)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
