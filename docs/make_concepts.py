"""The numbers of docs/concepts.md: network dissection and TCAV on the seed models.

    .venv/bin/python docs/make_concepts.py [--n-shapes 2000] [--n-stamps 1000] [--seeds 3]
        [--only dissect,rotation,tcav] [--out /tmp/concepts]

* dissect: `convlens.dissect` of builtin:shapes-net on builtin:shapes:test and of
  builtin:stamps-net on builtin:stamps:test, every ReLU with a spatial map: unique detectors
  per category and layer (Bau et al.'s Fig. 5 question: do object detectors grow with depth
  and colour detectors shrink?). The results are saved under ``--out`` (their pictures are a
  few MB: not kept in docs/).
* rotation: Bau et al. §3.2: each model's layers dissected again after a random orthogonal
  rotation of their units (`dissect.rotated`, ``--seeds`` rotations per layer): unique
  detectors and detector units, axes vs rotated.
* tcav: the planted concept (builtin:shapes-planted-net vs builtin:shapes-net, the stripes as
  a concept) and stamps-net with its backgrounds as concepts.

Prints Markdown tables and writes them, with the run's timing, to ``--out``/concepts.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

try:
    import convlens
except ImportError:  # a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import convlens

from convlens.data import load_data
from convlens.engine.settings import RunSettings
from convlens.techniques.concepts.dissect import dissect, rotated
from convlens.techniques.concepts.testing import concept_sets, tcav

SETS = {"shapes-net": ("builtin:shapes-net", "builtin:shapes:test"),
        "stamps-net": ("builtin:stamps-net", "builtin:stamps:test")}
QUIET = RunSettings(progress=False)


def detectors_table(res) -> list[dict]:
    rows = []
    for layer, g in res.detectors.groupby("layer", sort=False):
        u = res.units[res.units.layer == layer]
        row = {"layer": layer, "units": len(u), "detector units": int(u.detector.sum())}
        row.update({f"unique {r.category}": int(r.unique) for r in g.itertuples()})
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    if not rows:
        return "(none)"
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c])
                                     for c in cols) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-shapes", type=int, default=2000)
    ap.add_argument("--n-stamps", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--only", default="dissect,rotation,tcav")
    ap.add_argument("--out", default="/tmp/concepts")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))
    n = {"shapes-net": args.n_shapes, "stamps-net": args.n_stamps}
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "n": n}
    if "dissect" in only:
        for name, (model, data) in SETS.items():
            t = time.time()
            res = dissect(convlens.load_model(model), f"{data}:{n[name]}", out=out / name,
                          run=QUIET)
            rows = detectors_table(res)
            report[f"dissect {name}"] = {"rows": rows, "seconds": round(time.time() - t, 1)}
            print(f"\n## dissect {name} ({n[name]} images, {time.time() - t:.0f} s)\n")
            print(markdown(rows))
    if "rotation" in only:
        for name, (model, data) in SETS.items():
            lens = convlens.load_model(model)
            spec = f"{data}:{n[name]}"
            rows = []
            t = time.time()
            base = dissect(lens, spec, show=0, run=QUIET)
            for layer in base.params["layers"]:
                u = base.units[base.units.layer == layer]
                row = {"layer": layer, "units": len(u),
                       "unique (axes)": int(u[u.detector].concept.nunique()),
                       "detector units (axes)": int(u.detector.sum())}
                uniq, dets = [], []
                for seed in range(args.seeds):
                    r = dissect(rotated(lens, layer, seed), spec, layers=[layer], show=0,
                                run=QUIET)
                    uniq.append(int(r.units[r.units.detector].concept.nunique()))
                    dets.append(int(r.units.detector.sum()))
                row["unique (rotated)"] = " / ".join(map(str, uniq))
                row["detector units (rotated)"] = " / ".join(map(str, dets))
                rows.append(row)
            report[f"rotation {name}"] = {"rows": rows, "seconds": round(time.time() - t, 1)}
            print(f"\n## rotation {name} ({args.seeds} rotations, {time.time() - t:.0f} s)\n")
            print(markdown(rows))
    if "tcav" in only:
        layers = ["features.4", "features.7", "features.9", "features.11"]
        for model in ("builtin:shapes-planted-net", "builtin:shapes-net"):
            lens = convlens.load_model(model)
            cons = concept_sets(load_data("builtin:shapes:test", lens=lens),
                                values=["stripes"], per=100, random=300)
            t = time.time()
            res = tcav(lens, "builtin:shapes-planted:test:800", cons, layers=layers,
                       classes=[0, 1], runs=10, run=QUIET)
            res.save(out / f"tcav-{model.split(':')[1]}", lens=lens)
            rows = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                    for r in res.table.drop(columns=["class", "concept"]).to_dict("records")]
            report[f"tcav {model}"] = {"rows": rows, "seconds": round(time.time() - t, 1)}
            print(f"\n## tcav {model}, stripes ({time.time() - t:.0f} s)\n")
            print(markdown(rows))
        t = time.time()
        lens = convlens.load_model("builtin:stamps-net")
        res = tcav(lens, "builtin:stamps:test:600", runs=10, run=QUIET)
        res.save(out / "tcav-stamps-net", lens=lens)
        sig = res.table[res.table.significant]
        rows = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                for r in sig.drop(columns=["class"]).to_dict("records")]
        report["tcav stamps-net"] = {"rows": rows, "tests": len(res.table),
                                     "seconds": round(time.time() - t, 1)}
        print(f"\n## tcav stamps-net, backgrounds ({len(res.table)} tests, "
              f"{time.time() - t:.0f} s): significant\n")
        print(markdown(rows))
    (out / "concepts.json").write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
