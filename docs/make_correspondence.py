"""Regenerate docs/correspondence.csv and its figures: do our nets learn correspondence?

    .venv/bin/python docs/make_correspondence.py [--only NAME ...] [--n 200] [--threads 1]

One entry of `SETTINGS` per model, data and kind of pairs, scored at every conv layer (pre-ReLU)
and every ReLU (post-ReLU) with a spatial map. Each runs `correspondence` twice on the same pairs:
the method as defined (features searched on the layer's own cells, with the
pixel and SIFT baselines) and the features searched on the baselines' pixel grid (interpolated),
so that all descriptors are compared at one precision. Rows of settings not run keep their
previous values in the CSV (so ``--only stamps-warp`` adds the stamps rows). Figures:
``correspondence_<name>.png`` (PCK against depth) and ``correspondence_<name>_examples.png``
(features at their best layer). The per-keypoint breakdown is printed.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn

try:
    import convlens
except ImportError:  # a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import convlens
from convlens.techniques.correspondence.correspondence import correspondence
from convlens.techniques.correspondence.figures import examples_figure, pck_plot
from convlens.techniques.correspondence.results import CorrespondenceResult, pck_interval

HERE = Path(__file__).resolve().parent


@dataclass
class Setting:
    name: str
    model: str
    data: str
    pairs: str
    options: dict = field(default_factory=dict)
    note: str = ""


SETTINGS = [
    Setting("shapes-intraclass", "builtin:shapes-net", "builtin:shapes:test", "intraclass",
            note="two shapes of one class, any rotation"),
    Setting("shapes-intraclass-rot30", "builtin:shapes-net", "builtin:shapes:test", "intraclass",
            {"close": {"rotation": (30, 360)}},
            note="two shapes of one class, rotations within 30°"),
    Setting("fashion-warp", "builtin:fashion-net", "builtin:fashion-mnist:test", "warp",
            {"warp": "mixed"}, note="Fashion-MNIST and its affine / thin-plate warp"),
    Setting("stamps-warp", "builtin:stamps-net", "builtin:stamps:test", "warp",
            {"warp": "mixed"}, note="stamps photographs and their affine / thin-plate warp"),
]


def _per_pair(t: pd.DataFrame, alpha: float):
    """Correct and total keypoints per pair at `alpha`."""
    per = (t.error <= alpha * t.ref).groupby(t.pair).agg(["sum", "count"])
    return per["sum"].to_numpy(), per["count"].to_numpy()


def conv_and_relu(lens) -> list[str]:
    """Every Conv2d and ReLU module with a spatial output: pre- and post-ReLU maps."""
    shapes = {i.name: i.shape for i in lens.layers()}
    return [n for n, m in lens.model.named_modules() if isinstance(m, (nn.Conv2d, nn.ReLU))
            and shapes.get(n) is not None and len(shapes[n]) == 3]


def run(s: Setting, n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    lens = convlens.load_model(s.model)
    common = dict(data=s.data, n=n, seed=seed, layers=conv_and_relu(lens),
                  **s.options)
    t = time.time()
    cells = correspondence(lens, s.pairs, **common)
    grid = correspondence(lens, s.pairs, search="grid", baselines=(), examples=0, **common)
    seconds = time.time() - t
    # "no motion": guess that the point stays where it was in A, a floor for any descriptor
    first = cells.transfers[cells.transfers.layer == cells.layers.layer.iloc[0]]
    still = first[first.method == "features"].assign(
        method="no motion", layer="(none)", x_pred=first.x_a, y_pred=first.y_a,
        error=((first.x_a - first.x_b) ** 2 + (first.y_a - first.y_b) ** 2) ** 0.5)
    s_1, s_2 = _per_pair(still, cells.alpha), _per_pair(still, 2 * cells.alpha)
    s_pck, s_lo, s_hi = pck_interval(*s_1, seed)
    both = CorrespondenceResult(pd.concat([cells.transfers, grid.transfers], ignore_index=True),
                                cells.layers, cells.params, cells.skipped, cells.dropped,
                                **CorrespondenceResult.example_fields(cells.examples), seed=seed)
    pck_plot(both, str(HERE / f"correspondence_{s.name}.png"))
    best = cells.best()
    examples_figure(cells, "features", best["layer"],
                    str(HERE / f"correspondence_{s.name}_examples.png"))
    loose = both.pck_table(2 * both.alpha)[["method", "layer", "pck", "ci_low", "ci_high"]]
    table = both.pck.merge(loose, on=["method", "layer"], suffixes=("", "_2alpha"))
    table.insert(0, "setting", s.name)
    table.insert(1, "model", s.model)
    table.insert(2, "data", s.data)
    table.insert(3, "pair_kind", s.pairs + (f" {s.options}" if s.options else ""))
    table = pd.concat([table, pd.DataFrame([{
        "setting": s.name, "model": s.model, "data": s.data, "pair_kind": table.pair_kind.iloc[0],
        "method": "no motion", "layer": "(none)", "pck": s_pck, "ci_low": s_lo, "ci_high": s_hi,
        "correct": int(s_1[0].sum()),
        "keypoints": len(still), "pairs": still.pair.nunique(),
        "median_error_px": float(still.error.median()),
        "pck_2alpha": float(s_2[0].sum() / s_2[1].sum())}])], ignore_index=True)
    table["seconds"] = round(seconds, 1)
    diffs = pd.concat([both.difference(a, b) for a in ("features", "features_grid")
                       for b in ("pixels", "sift")], ignore_index=True)
    diffs.insert(0, "setting", s.name)
    t = both.transfers.assign(correct=both.transfers.error <= both.alpha * both.transfers.ref)
    by_name = t.groupby(["method", "layer", "name"]).correct.agg(["mean", "count"]).reset_index()
    by_name.insert(0, "setting", s.name)
    print(f"\n== {s.name}: {both.info()['pairs']} pairs, {both.info()['keypoints']} keypoints, "
          f"{seconds:.0f} s; skipped {cells.skipped}, dropped {cells.dropped}")
    print(table[["method", "layer", "rf_size", "stride", "pck", "ci_low", "ci_high",
                 "pck_2alpha"]].to_string(index=False))
    print(diffs.to_string(index=False))
    return table, by_name, diffs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", nargs="+", metavar="NAME", help=f"settings to run "
                    f"({', '.join(s.name for s in SETTINGS)}); default all whose model loads")
    ap.add_argument("--n", type=int, default=200, help="pairs per setting (default 200)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    outs = [HERE / f"correspondence{x}.csv" for x in ("", "_by_keypoint", "_differences")]
    olds = [pd.read_csv(o) if o.is_file() else pd.DataFrame(columns=["setting"]) for o in outs]
    new: list[list[pd.DataFrame]] = [[], [], []]
    done = set()
    for s in SETTINGS:
        if args.only and s.name not in args.only:
            continue
        try:
            got = run(s, args.n, args.seed)
        except convlens.ConvlensError as e:
            print(f"\n== {s.name}: not run ({e})")
            continue
        for lst, df in zip(new, got):
            lst.append(df)
        done.add(s.name)
    order = {s.name: k for k, s in enumerate(SETTINGS)}
    for out, old, frames in zip(outs, olds, new):
        pd.concat([old[~old.setting.isin(done)]] + frames, ignore_index=True).sort_values(
            "setting", key=lambda c: c.map(order), kind="stable").to_csv(out, index=False)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
