"""Regenerate docs/cams.md, docs/cams.csv and its figures: the CAM family side by side.

    .venv/bin/python docs/make_cams.py [--n 300] [--threads 1] [--render-only]

1. Figures: every CAM (Grad-CAM and the seven of issue 25) at each model's default layer, on
   the first test images of builtin:stamps (stamps-net, photographs) and builtin:shapes
   (shapes-net), and on a folder of photos (the first stamps test composites written as JPEG
   files in class folders, read back as a folder spec) through torchvision resnet18 with
   **random weights** (no pretrained weights on this machine: its maps show the method, not a
   trained model's reasons).
2. Scores: on the first N items of builtin:stamps:test and builtin:shapes:test, each map
   explaining the true class: the pointing game (strict, and with a tolerance of 15 px at 224
   scaled to the image), the energy in the object's mask, with 95 % bootstrap intervals
   (2,000 resamples of the images, seeded); baseline: a uniform map (hit rate and energy =
   the mask's share of the image).

`--render-only` rewrites cams.md from cams.csv. Some minutes on one core.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

try:
    import convlens
except ImportError:  # a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import convlens
from convlens.data import Loader
from convlens.techniques.cams.figures import side_by_side
from convlens.techniques.gradients.localisation import energy_in_mask, pointing_game

HERE = Path(__file__).resolve().parent
ORDER = ["grad_cam", "grad_cam_plus_plus", "xgrad_cam", "hires_cam", "layer_cam", "score_cam",
         "ablation_cam", "eigen_cam"]
TITLES = {"grad_cam": "Grad-CAM", "grad_cam_plus_plus": "Grad-CAM++", "xgrad_cam": "XGrad-CAM",
          "hires_cam": "HiResCAM", "layer_cam": "Layer-CAM", "score_cam": "Score-CAM",
          "ablation_cam": "Ablation-CAM", "eigen_cam": "Eigen-CAM"}
SETS = {"stamps": ("builtin:stamps-net", "builtin:stamps:test"),
        "shapes": ("builtin:shapes-net", "builtin:shapes:test")}


def run_all(lens, x, t):
    out = []
    for m in ORDER:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out.append(getattr(convlens, m)(lens, x, target=t))
    return out


def figure(lens, x, t, path: Path, labels=None) -> None:
    fig = side_by_side(run_all(lens, x, t), [TITLES[m] for m in ORDER], row_labels=labels)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def figures(n: int = 4) -> None:
    for name, (model, data) in SETS.items():
        lens = convlens.load_model(model)
        ds = convlens.load_data(f"{data}:{n}", lens=lens)
        batch = next(iter(Loader(ds, batch_size=n)))
        names = [lens.label(int(k)) for k in batch.labels]
        figure(lens, batch.images, batch.labels.tolist(), HERE / f"cams_{name}.png", names)
    # a folder of photos: stamps test composites as JPEG files in class folders
    lens = convlens.load_model("torchvision:resnet18", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        from PIL import Image

        from convlens.data.stamps import CLASSES
        src = convlens.load_data(f"builtin:stamps:test:{n}")
        for i in range(n):
            item = src[i]
            folder = Path(tmp) / CLASSES[int(item.label)]
            folder.mkdir(exist_ok=True)
            pixels = (item.image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(pixels).resize((224, 224), Image.BICUBIC).save(
                folder / f"photo{i}.jpg", quality=92)
        ds = convlens.load_data(tmp, lens=lens)
        batch = next(iter(Loader(ds, batch_size=n)))
        figure(lens, batch.images, "auto", HERE / "cams_folder_resnet18.png")


def interval(values: np.ndarray, seed: int = 0, reps: int = 2000) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean over images."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), (reps, len(values)))
    means = values[idx].mean(1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def scores(name: str, n: int, batch_size: int) -> list[dict]:
    model, data = SETS[name]
    lens = convlens.load_model(model)
    ds = convlens.load_data(f"{data}:{n}", lens=lens)
    size = lens.input_size[-1]
    tol = round(15 * size / 224)
    per = {m: {"hit": [], "hit_tol": [], "energy": []} for m in ORDER}
    seconds = dict.fromkeys(ORDER, 0.0)
    area, correct = [], []
    for batch in Loader(ds, batch_size=batch_size):
        masks = torch.stack([torch.as_tensor(m["mask"]) for m in batch.meta]).bool()
        t = batch.labels.tolist()
        with torch.no_grad():
            correct.append((lens(batch.images).argmax(1) == batch.labels).numpy())
        area.append(masks.flatten(1).float().mean(1).numpy())
        for m in ORDER:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                maps = getattr(convlens, m)(lens, batch.images, target=t).map
            seconds[m] += time.perf_counter() - t0
            per[m]["hit"].append(pointing_game(maps, masks).numpy())
            per[m]["hit_tol"].append(pointing_game(maps, masks, tolerance=tol).numpy())
            per[m]["energy"].append(energy_in_mask(maps, masks).numpy())
    count = sum(len(a) for a in area)
    acc = float(np.concatenate(correct).mean())
    a = np.concatenate(area)
    rows = []
    for m in ORDER + ["baseline"]:
        if m == "baseline":
            vals = {"hit": a, "hit_tol": None, "energy": a}
        else:
            vals = {k: np.concatenate(v).astype(np.float64) for k, v in per[m].items()}
        row = {"data": data, "model": model, "n": count, "accuracy": acc, "tolerance_px": tol,
               "method": m, "seconds_per_image": seconds.get(m, 0.0) / count}
        for k, v in vals.items():
            if v is None:
                row[k], row[k + "_lo"], row[k + "_hi"] = np.nan, np.nan, np.nan
                continue
            row[k] = float(v.mean())
            row[k + "_lo"], row[k + "_hi"] = interval(v)
        rows.append(row)
    print(f"{name}: {count} images, accuracy {acc:.3f}, mean mask area {a.mean():.3f}")
    return rows


def fmt(row, k) -> str:
    if pd.isna(row[k]):
        return "–"
    return f"{row[k]:.3f} [{row[k + '_lo']:.3f}, {row[k + '_hi']:.3f}]"


def render(table: pd.DataFrame) -> str:
    parts = []
    for data, g in table.groupby("data", sort=False):
        first = g.iloc[0]
        parts.append(f"### `{data}` ({first['model']}, {int(first['n'])} images, accuracy "
                     f"{first['accuracy']:.3f}; tolerance {int(first['tolerance_px'])} px)\n")
        parts.append("| method | pointing game | pointing game, ± tolerance | energy in mask "
                     "| s / image |")
        parts.append("|---|---|---|---|---:|")
        for _, r in g.iterrows():
            name = TITLES.get(r["method"], "baseline: uniform map (the mask's area)")
            s = f"{r['seconds_per_image']:.3f}" if r["method"] != "baseline" else "–"
            parts.append(f"| {name} | {fmt(r, 'hit')} | {fmt(r, 'hit_tol')} "
                         f"| {fmt(r, 'energy')} | {s} |")
        parts.append("")
    return "\n".join(parts)


def write_md(table: pd.DataFrame) -> None:
    text = (HERE / "cams_template.md").read_text(encoding="utf-8")
    (HERE / "cams.md").write_text(text.replace("<!-- SCORES -->", render(table)),
                                  encoding="utf-8")
    print(f"wrote {HERE / 'cams.md'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="test images per data set (default 300)")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--render-only", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    csv = HERE / "cams.csv"
    if not args.render_only:
        figures()
        rows = scores("stamps", args.n, args.batch_size) + scores("shapes", args.n,
                                                                  args.batch_size)
        pd.DataFrame(rows).to_csv(csv, index=False, float_format="%.4f")
        print(f"wrote {csv}")
    write_md(pd.read_csv(csv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
