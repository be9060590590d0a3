"""Regenerate docs/correspondence.csv and its figures: do our nets learn correspondence?

    .venv/bin/python docs/make_correspondence.py [--only NAME ...] [--n 200] [--threads 1]

One entry of `SETTINGS` per model, data and kind of pairs. Each runs `correspondence` twice on
the same pairs: the method as defined (features searched on the layer's own cells, with the
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

try:
    import convlens
except ImportError:  # a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import convlens
from convlens.techniques.correspondence import correspondence
from convlens.techniques.correspondence_result import CorrespondenceResult

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
            {"close": {"rotation": (30, 360)}}, note="two shapes of one class, rotations within 30°"),
    Setting("fashion-warp", "builtin:fashion-net", "builtin:fashion-mnist:test", "warp",
            {"warp": "mixed"}, note="Fashion-MNIST and its affine / thin-plate warp"),
    Setting("stamps-warp", "builtin:stamps-net", "builtin:stamps:test", "warp",
            {"warp": "mixed"}, note="stamps photographs and their affine / thin-plate warp"),
]


def run(s: Setting, n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    lens = convlens.load_model(s.model)
    common = dict(data=s.data, n=n, seed=seed, progress=True, **s.options)
    t = time.time()
    cells = correspondence(lens, s.pairs, **common)
    grid = correspondence(lens, s.pairs, search="grid", baselines=(), examples=0, **common)
    seconds = time.time() - t
    both = CorrespondenceResult(pd.concat([cells.transfers, grid.transfers], ignore_index=True),
                                cells.layers, cells.params, cells.skipped, cells.dropped,
                                cells.examples, seed=seed)
    both._plot(str(HERE / f"correspondence_{s.name}.png"))
    best = cells.best()
    cells._examples("features", best["layer"], str(HERE / f"correspondence_{s.name}_examples.png"))
    loose = both.pck_table(2 * both.alpha)[["method", "layer", "pck", "ci_low", "ci_high"]]
    table = both.pck.merge(loose, on=["method", "layer"], suffixes=("", "_2alpha"))
    table.insert(0, "setting", s.name)
    table.insert(1, "model", s.model)
    table.insert(2, "data", s.data)
    table.insert(3, "pair_kind", s.pairs + (f" {s.options}" if s.options else ""))
    table["seconds"] = round(seconds, 1)
    t = both.transfers.assign(correct=both.transfers.error <= both.alpha * both.transfers.ref)
    by_name = t.groupby(["method", "layer", "name"]).correct.agg(["mean", "count"]).reset_index()
    by_name.insert(0, "setting", s.name)
    print(f"\n== {s.name}: {both.info()['pairs']} pairs, {both.info()['keypoints']} keypoints, "
          f"{seconds:.0f} s; skipped {cells.skipped}, dropped {cells.dropped}")
    print(table[["method", "layer", "rf_size", "stride", "pck", "ci_low", "ci_high",
                 "pck_2alpha"]].to_string(index=False))
    return table, by_name


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", nargs="+", metavar="NAME", help=f"settings to run "
                    f"({', '.join(s.name for s in SETTINGS)}); default all whose model loads")
    ap.add_argument("--n", type=int, default=200, help="pairs per setting (default 200)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out, out_names = HERE / "correspondence.csv", HERE / "correspondence_by_keypoint.csv"
    old = pd.read_csv(out) if out.is_file() else pd.DataFrame(columns=["setting"])
    old_names = pd.read_csv(out_names) if out_names.is_file() else pd.DataFrame(columns=["setting"])
    tables, names, done = [], [], set()
    for s in SETTINGS:
        if args.only and s.name not in args.only:
            continue
        try:
            table, by_name = run(s, args.n, args.seed)
        except convlens.ConvlensError as e:
            print(f"\n== {s.name}: not run ({e})")
            continue
        tables.append(table)
        names.append(by_name)
        done.add(s.name)
    keep = lambda df: df[~df.setting.isin(done)]  # noqa: E731
    order = {s.name: k for k, s in enumerate(SETTINGS)}
    pd.concat([keep(old)] + tables, ignore_index=True).sort_values(
        "setting", key=lambda c: c.map(order), kind="stable").to_csv(out, index=False)
    pd.concat([keep(old_names)] + names, ignore_index=True).to_csv(out_names, index=False)
    print(f"\nwrote {out} and {out_names}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
