"""Compare two trees of saved results (e.g. ``convlens demo --quick`` before and after a
refactoring): every result folder of A must be in B at the same relative path, with the same
arrays, tables and info. Prints one line per difference and a summary; exits 1 if any.

    python scripts/compare_results.py OLD_DEMO NEW_DEMO [--rtol 1e-6] [--atol 1e-7]

Timings (``seconds``, ``created``, throughput) and paths to the output folder are ignored.
Arrays and float table columns are compared with the tolerances given (0 by default: exact);
the largest difference of every array is printed with ``-v``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

IGNORED = {"seconds", "cpu_seconds", "images_per_s", "created", "images_per_second", "elapsed",
           "time", "scan", "folder", "out"}


def _clean(v, root_a: str, root_b: str):
    if isinstance(v, dict):
        return {k: _clean(x, root_a, root_b) for k, x in v.items() if k not in IGNORED}
    if isinstance(v, list):
        return [_clean(x, root_a, root_b) for x in v]
    if isinstance(v, str):
        return v.replace(root_a, "ROOT").replace(root_b, "ROOT")
    return v


def _renames_for(rel: Path, renames: dict) -> dict:
    """The renames of the view whose folder `rel` is (the longest matching name prefix)."""
    name = rel.name
    keys = [k for k in renames if not k.startswith("_") and name.startswith(k)]
    return renames[max(keys, key=len)] if keys else {}


def compare(a: Path, b: Path, rtol: float, atol: float, verbose: bool,
            renames: dict | None = None) -> list[str]:
    diffs: list[str] = []
    folders = sorted(m.parent for m in a.rglob("manifest.json"))
    n_arrays = n_tables = 0
    for fa in folders:
        rel = fa.relative_to(a)
        fb = b / rel
        if not (fb / "manifest.json").is_file():
            diffs.append(f"{rel}: missing in {b}")
            continue
        ma, mb = (json.loads((f / "manifest.json").read_text()) for f in (fa, fb))
        ren = _renames_for(rel, renames or {})
        for part in ("arrays", "info", "tables"):
            old = ma.get(part, {})
            ma[part] = {ren.get(part, {}).get(k, k): v for k, v in old.items()}
        ia, ib = (_clean(m.get("info", {}), str(a), str(b)) for m in (ma, mb))
        if json.dumps(ia, sort_keys=True) != json.dumps(ib, sort_keys=True):
            keys = sorted(k for k in set(ia) | set(ib) if ia.get(k) != ib.get(k))
            diffs.append(f"{rel}: info differs in {keys}")
        for name, file in ma.get("arrays", {}).items():
            if name not in mb.get("arrays", {}):
                diffs.append(f"{rel}: array {name} missing")
                continue
            x, y = np.load(fa / file), np.load(fb / mb["arrays"][name])
            n_arrays += 1
            if x.shape != y.shape or x.dtype != y.dtype:
                diffs.append(f"{rel}: array {name} {x.shape} {x.dtype} vs {y.shape} {y.dtype}")
            elif x.dtype.kind in "fc":
                d = float(np.nanmax(np.abs(x.astype(np.float64) - y))) if x.size else 0.0
                same_nan = np.array_equal(np.isnan(x), np.isnan(y))
                if not same_nan or not np.allclose(x, y, rtol=rtol, atol=atol, equal_nan=True):
                    diffs.append(f"{rel}: array {name} max difference {d:.3g}")
                elif verbose and d:
                    print(f"{rel}: array {name} max difference {d:.3g} (within tolerance)")
            elif not np.array_equal(x, y):
                diffs.append(f"{rel}: array {name} differs ({int((x != y).sum())} elements)")
        for name, file in ma.get("tables", {}).items():
            if name not in mb.get("tables", {}):
                diffs.append(f"{rel}: table {name} missing")
                continue
            ta, tb = pd.read_parquet(fa / file), pd.read_parquet(fb / mb["tables"][name])
            ta = ta.rename(columns=ren.get("columns", {}))
            n_tables += 1
            drop = [c for c in ta.columns if c in IGNORED]
            ta, tb = ta.drop(columns=drop), tb.drop(columns=[c for c in drop if c in tb])
            try:
                pd.testing.assert_frame_equal(ta, tb, check_exact=rtol == 0 and atol == 0,
                                              rtol=rtol or 1e-5, atol=atol or 1e-8)
            except AssertionError as e:
                diffs.append(f"{rel}: table {name}: " + " ".join(str(e).split())[:200])
        missing = set(ma.get("pictures", {})) - set(mb.get("pictures", {}))
        if missing:
            diffs.append(f"{rel}: pictures missing: {sorted(missing)[:5]}")
    extra = sorted(str(m.parent.relative_to(b)) for m in b.rglob("manifest.json")
                   if not (a / m.parent.relative_to(b) / "manifest.json").is_file())
    print(f"{len(folders)} results, {n_arrays} arrays, {n_tables} tables compared; "
          f"{len(extra)} only in {b}" + (f" ({', '.join(extra[:5])})" if extra else ""))
    return diffs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--rtol", type=float, default=0.0)
    p.add_argument("--atol", type=float, default=0.0)
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--renames", type=Path, default=None,
                   help="JSON: per view folder prefix, old -> new names of arrays, info keys, "
                        "tables and columns (e.g. scripts/renames-issue23.json)")
    args = p.parse_args(argv)
    renames = json.loads(args.renames.read_text()) if args.renames else None
    diffs = compare(args.a, args.b, args.rtol, args.atol, args.verbose, renames)
    for d in diffs:
        print(d)
    print("same" if not diffs else f"{len(diffs)} differences")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
