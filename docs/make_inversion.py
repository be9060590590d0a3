"""Regenerate the figures and tables of docs/inversion.md (METHODS.md §6).

    .venv/bin/python docs/make_inversion.py [--models fashion-net,shapes-net] [--steps 400]
        [--fv-steps 256] [--scan 5000] [--only inversion,paper,classes,featvis] [--threads 1]

For every model of MODELS (one entry per model/data pair; `--models` picks some):

* inversion: 8 test images (the first of each of the first 8 classes) reconstructed from every
  ReLU layer, all (layer, image) pairs in one batch, with convlens's default weights; "paper":
  the same with Mahendran & Vedaldi's depth-dependent TV weights (`lambda_tv="paper"`);
* classes: the class model of every class (Simonyan et al. 2014) and how the net classifies it;
* featvis: every channel of the model's middle conv layer in one batch (channel objective,
  then the centre-neuron objective), against the best of `--scan` test images per channel.

Writes docs/inversion_<model>.png, docs/inversion_errors_<model>.png,
docs/class_models_<model>.png, docs/featvis_<model>.png, and the tables docs/inversion.csv,
docs/class_models.csv, docs/featvis.csv; prints markdown tables for docs/inversion.md.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

try:
    import convlens  # noqa: F401
except ImportError:  # a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from convlens import load_data, load_model
from convlens.data import Loader
from convlens.hooks import capture
from convlens.techniques.synthesis.featvis import class_model, feature_visualization
from convlens.techniques.synthesis.inversion import invert

HERE = Path(__file__).resolve().parent

#: name, model spec, test data spec, the middle conv layer for feature visualisation
MODELS = [
    ("fashion-net", "builtin:fashion-net", "builtin:fashion-mnist:test", "features.6"),
    ("shapes-net", "builtin:shapes-net", "builtin:shapes:test", "features.6"),
    ("stamps-net", "builtin:stamps-net", "builtin:stamps:test", "layer2.relu2"),
]


def one_per_class(ds, n: int = 8) -> list[int]:
    """Indices of the first test item of each of the first `n` classes."""
    seen: dict[int, int] = {}
    for i in range(len(ds)):
        label = ds[i].label
        if label is not None and label not in seen:
            seen[int(label)] = i
        if len(seen) >= n:
            break
    return [seen[k] for k in sorted(seen)][:n]


def relu_layers(lens) -> list[str]:
    return [n for n, m in lens.model.named_modules() if isinstance(m, torch.nn.ReLU)]


def run_inversion(name, lens, ds, steps, work: Path, paper: bool) -> pd.DataFrame:
    idx = one_per_class(ds)
    x = next(iter(Loader(ds, batch_size=len(idx), indices=idx))).images
    layers = relu_layers(lens)
    tag = "paper" if paper else "default"
    t0 = time.time()
    res = invert(lens, x, layers, steps=steps, lambda_tv="paper" if paper else None,
                 names=[ds.source(i) for i in idx])
    secs = time.time() - t0
    out = res.save(work / f"inversion_{name}_{tag}", lens=lens)
    suffix = "" if not paper else "_paper"
    shutil.copy(out / "strip.png", HERE / f"inversion_{name}{suffix}.png")
    shutil.copy(out / "errors.png", HERE / f"inversion_errors_{name}{suffix}.png")
    t = res.layer_table()
    t.insert(0, "weights", tag)
    t.insert(0, "model", name)
    t["seconds"] = round(secs)
    print(f"{name} inversion ({tag}): {len(layers)} layers x {len(idx)} images, {steps} steps, "
          f"{secs:.0f} s", flush=True)
    return t


def run_classes(name, lens, work: Path) -> pd.DataFrame:
    t0 = time.time()
    res = class_model(lens)
    out = res.save(work / f"class_models_{name}", lens=lens)
    shutil.copy(out / "grid.png", HERE / f"class_models_{name}.png")
    t = res.tables()["targets"]
    t.insert(0, "model", name)
    print(f"{name} class models: {time.time() - t0:.0f} s", flush=True)
    return t


def best_of_data(lens, ds, layer: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel of `layer`: the largest spatial mean and the largest single activation over
    the first `n` items of `ds` (the scan's score is the latter)."""
    best_mean = best_max = None
    with torch.no_grad(), capture(lens, [layer]) as cap:
        lens.eval()
        for b in Loader(ds, batch_size=250, indices=range(min(n, len(ds)))):
            lens(b.images)
            a = cap[layer].flatten(2)
            m, mx = a.mean(2).amax(0), a.amax(2).amax(0)
            best_mean = m if best_mean is None else torch.maximum(best_mean, m)
            best_max = mx if best_max is None else torch.maximum(best_max, mx)
    return best_mean, best_max


def activations_of(lens, layer: str, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), capture(lens, [layer]) as cap:
        lens.eval()
        lo, hi = lens.value_range
        lens(lens.normalize(lo + images * (hi - lo)))
    return cap[layer]


def run_featvis(name, lens, ds, data_spec, layer, steps, scan, work: Path) -> pd.DataFrame:
    t0 = time.time()
    ch = feature_visualization(lens, layer, channels="all", steps=steps, data=data_spec)
    t_ch = time.time() - t0
    out = ch.save(work / f"featvis_{name}", lens=lens)
    shutil.copy(out / "grid.png", HERE / f"featvis_{name}.png")
    t0 = time.time()
    ne = feature_visualization(lens, layer, channels="all", steps=steps, data=data_spec,
                               unit="neuron")
    t_ne = time.time() - t0
    ne.save(work / f"featvis_neuron_{name}", lens=lens)
    best_mean, best_max = best_of_data(lens, ds, layer, scan)
    c = torch.arange(len(ch.channels))
    a = activations_of(lens, layer, ch.images)[c, c].flatten(1)
    b = activations_of(lens, layer, ne.images)[c, c]
    h, w = b.shape[1:]
    centre = b[:, h // 2, w // 2]
    t = pd.DataFrame({
        "model": name, "layer": layer, "channel": ch.channels,
        "fv_mean": a.mean(1).numpy(), "data_best_mean": best_mean.numpy(),
        "fv_max": a.amax(1).numpy(), "data_best_max": best_max.numpy(),
        "neuron_fv_centre": centre.numpy()})
    print(f"{name} featvis {layer}: {len(c)} channels, {steps} steps: channel objective "
          f"{t_ch:.0f} s, neuron objective {t_ne:.0f} s", flush=True)
    return t


def markdown(df: pd.DataFrame, floats: int = 3) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        cells = [f"{v:.{floats}f}" if isinstance(v, (float, np.floating)) else str(v)
                 for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", default="fashion-net,shapes-net")
    ap.add_argument("--only", default="inversion,paper,classes,featvis")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--fv-steps", type=int, default=256)
    ap.add_argument("--scan", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "convlens-docs-work"),
                    help="folder for the full saved results (arrays; not part of the docs)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    wanted = set(args.models.split(","))
    only = set(args.only.split(","))
    known = {m[0] for m in MODELS}
    if wanted - known:
        ap.error(f"unknown model(s) {sorted(wanted - known)}; known: {sorted(known)}")
    work = Path(args.work)
    tables: dict[str, list[pd.DataFrame]] = {"inversion": [], "classes": [], "featvis": []}
    for name, spec, data_spec, layer in MODELS:
        if name not in wanted:
            continue
        lens = load_model(spec)
        ds = load_data(data_spec, lens=lens)
        if "inversion" in only:
            tables["inversion"].append(run_inversion(name, lens, ds, args.steps, work, False))
        if "paper" in only:
            tables["inversion"].append(run_inversion(name, lens, ds, args.steps, work, True))
        if "classes" in only:
            tables["classes"].append(run_classes(name, lens, work))
        if "featvis" in only:
            tables["featvis"].append(run_featvis(name, lens, ds, data_spec, layer, args.fv_steps,
                                                 args.scan, work))
    files = {"inversion": "inversion.csv", "classes": "class_models.csv",
             "featvis": "featvis.csv"}
    for key, parts in tables.items():
        if not parts:
            continue
        new = pd.concat(parts, ignore_index=True)
        path = HERE / files[key]
        if path.exists():  # keep the rows of models not rerun this time
            old = pd.read_csv(path)
            keep = ~old.model.isin(new.model.unique())
            if key == "inversion":
                keep |= ~old.set_index(["model", "weights"]).index.isin(
                    new.set_index(["model", "weights"]).index)
            new = pd.concat([old[keep], new], ignore_index=True)
        new.to_csv(path, index=False, float_format="%.4f")
        print(f"\n## {files[key]}\n")
        if key == "featvis":
            s = new.groupby(["model", "layer"]).apply(lambda d: pd.Series({
                "channels": len(d),
                "mean: fv > best test image": f"{(d.fv_mean > d.data_best_mean).mean():.0%}",
                "max: fv > best test image": f"{(d.fv_max > d.data_best_max).mean():.0%}",
                "neuron fv > best test image (max)":
                    f"{(d.neuron_fv_centre > d.data_best_max).mean():.0%}"}),
                include_groups=False).reset_index()
            print(markdown(s))
        else:
            print(markdown(new))
    return 0


if __name__ == "__main__":
    sys.exit(main())
