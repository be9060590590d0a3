"""Sweep torchvision classifiers through every view and write docs/zoo.md (issue 24).

    .venv/bin/python docs/make_zoo.py [--models resnet18,vgg11 | --all] [--views a,b]
        [--out docs/zoo.md] [--json zoo.json] [--data builtin:shapes:test:8] [--train]
        [--timeout 300]

Each model is a torchvision architecture (or a timm one, ``timm:NAME``) with random weights,
``convlens.load_model(spec, input_size=..., seed=0)`` (nothing is downloaded; a head its
architecture initialises to zeros gets small random weights), at a small input: 64 px,
except where a family needs more (Inception v3: 75, its minimum; ViT, Swin and MaxViT: 224).
Every view record (`convlens.techniques.all_views()`) whose function takes images, the model,
data, a scan or codes is called through the Python API as the API tests call it
(tests/test_api.py `call`): 2 seeded random images, the data spec ``--data`` for data views, a
scan of that data (``n=8, topk=2``, the scan's last layer) for scan views, its CNN codes for
codes views, and the record's `quick` arguments. The `quick` arguments that name layers of the
tests' tiny net are dropped so that the views' defaults pick the layer; where the function has
no default (`invert`'s layers, `feature_visualization`'s objective) the layer is the demo's
choice (the last default layer; the last spatial one for feature visualisation) and the record
says so.

Each (model, view) call gets an outcome: ``ok``; ``refused`` (a `convlens.ConvlensError`, its
one-line message); ``crash`` (any other exception: its type and first line); ``timeout`` (past
``--timeout`` seconds); or ``skipped`` (a scan or codes view when the model's scan or codes could
not be made). Every call is timed and checked to leave the model as it found it (parameters,
buffers, gradients, training flags, requires_grad and hooks: the logic of tests/conftest.py
`snapshot`); a model that was changed is rebuilt before the next view. One failure never stops
the sweep. A line per model goes to stderr.

``--all`` sweeps every torchvision classification model
(``torchvision.models.list_models(module=torchvision.models)``) up to ``--max-params`` (150 M)
parameters. ``--out`` gets the Markdown table (model x view), the refusal and crash messages,
the date, machine, torch version and total time; ``--json`` the raw records.
"""
from __future__ import annotations

import argparse
import datetime
import inspect
import json
import os
import platform
import re
import signal
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import torch
from torch import nn

try:
    import convlens
except ImportError:  # a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import convlens
from convlens import ConvlensError
from convlens.lens import default_layers
from convlens.techniques import all_views

HERE = Path(__file__).resolve().parent
ARGUMENTS = ("images", "model", "data", "scan", "codes")
#: view families not swept, each with why (the CAM family, left out until Score-CAM had a
#: setting cheap enough for the large transformers and Ablation-CAM took their token and
#: channels-last layers, is swept since issue 25; faithfulness since its `minimal` setting)
NOT_SWEPT: dict[str, str] = {}


def swept_views() -> list:
    """The view records the sweep calls: those taking images, the model, data, a scan or codes,
    outside `NOT_SWEPT`."""
    return [v for v in all_views() if v.argument in ARGUMENTS
            and not any(v.function.startswith(f) for f in NOT_SWEPT)]
DEFAULT_MODELS = ["resnet18", "vgg11", "alexnet", "densenet121", "shufflenet_v2_x0_5",
                  "squeezenet1_0", "googlenet", "inception_v3", "mobilenet_v3_small",
                  "efficientnet_b0", "regnet_y_400mf", "convnext_tiny", "vit_b_16", "swin_t"]
#: timm CNNs of the families where torchvision's defaults once refused (squeeze-excitation,
#: ghost and channels-last blocks); timm is a test extra
TIMM_MODELS = ["timm:ghostnet_100", "timm:rexnet_100", "timm:regnety_002",
               "timm:mobilenetv3_small_100", "timm:efficientnet_b0", "timm:convnext_atto",
               "timm:mixnet_s", "timm:dla34"]
MAX_PARAMS = 150e6
#: input side per family (name prefix): the smallest each takes; everything else 64 px
SIZES = {"inception_v3": 75, "vit_": 224, "swin_": 224, "maxvit_": 224}
SMALL = 64
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: `quick` arguments that name layers of the API tests' tiny net (dropped here)
LAYER_ARGS = ("layer", "layers", "objective")
N_IMAGES = 2
SCAN = {"n": 8, "topk": 2}


# -- the model's state (tests/conftest.py `snapshot`, as differences rather than asserts) ------

def all_hooks(model: nn.Module) -> int:
    """Number of hooks of any kind left on any module."""
    n = 0
    for m in model.modules():
        for d in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                  "_backward_pre_hooks", "_state_dict_hooks", "_load_state_dict_pre_hooks"):
            n += len(getattr(m, d, {}) or {})
    return n


def snapshot(model: nn.Module) -> dict:
    """Everything a view must leave as it found it."""
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "params": [p.detach().clone() for p in model.parameters()],
        "buffers": [b.detach().clone() for b in model.buffers()],  # batch norm's statistics
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "hooks": all_hooks(model),
    }


def changes(model: nn.Module, before: dict) -> list[str]:
    """What differs from `before` (empty: the model is as it was)."""
    after = snapshot(model)
    out = [k for k in ("training", "requires_grad", "hooks") if after[k] != before[k]]
    for key in ("params", "buffers"):
        if len(after[key]) != len(before[key]) or any(
                a.shape != b.shape or not torch.equal(a, b)
                for a, b in zip(after[key], before[key])):
            out.append(key)
    if any(not ((a is None and b is None) or (a is not None and b is not None
                                               and torch.equal(a, b)))
           for a, b in zip(after["grads"], before["grads"])):
        out.append("grads")
    return out


# -- models ---------------------------------------------------------------------------------

def input_side(name: str) -> int:
    return next((s for prefix, s in SIZES.items() if name.startswith(prefix)), SMALL)


def build(name: str, train: bool = False) -> convlens.Lens:
    """The architecture with seeded random weights, as a Lens at its sweep input size:
    ``convlens.load_model`` (torchvision's names as they are, timm's as ``timm:NAME``), so a
    head its architecture initialises to zeros gets small random weights as a user's does."""
    side = input_side(name)
    spec = name if name.startswith("timm:") else f"torchvision:{name}"
    with warnings.catch_warnings():  # GoogLeNet's and Inception's note on their init
        warnings.simplefilter("ignore", FutureWarning)
        lens = convlens.load_model(spec, input_size=(3, side, side), seed=0)
    lens.train(train)
    return lens


def count_params(name: str) -> int:
    """Parameters of a torchvision or timm architecture, built on the meta device where its
    initialisation allows (RegNet's does not: built for real)."""
    def make():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            if name.startswith("timm:"):
                import timm
                return timm.create_model(name[5:], pretrained=False)
            import torchvision
            return torchvision.models.get_model(name, weights=None)
    try:
        with torch.device("meta"):
            model = make()
    except NotImplementedError:
        model = make()
    return sum(p.numel() for p in model.parameters())


def all_models(max_params: float = MAX_PARAMS) -> list[str]:
    """Every torchvision classification model up to `max_params` parameters, then
    `TIMM_MODELS`."""
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models) + TIMM_MODELS
    return [n for n in names if count_params(n) <= max_params]


# -- one call -------------------------------------------------------------------------------

class Timeout(BaseException):
    """A call past --timeout (a BaseException: a view's `except Exception` does not eat it)."""


def _alarm(signum, frame):
    raise Timeout()


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""


def where(e: BaseException) -> str:
    """The innermost frame of the traceback inside convlens (file:line function)."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "convlens" in f.filename]
    if not frames:
        return ""
    f = frames[-1]
    return f"{Path(f.filename).name}:{f.lineno} {f.name}"


def run_call(fn, timeout: float) -> dict:
    """`fn()` timed, its outcome as a record; nothing escapes."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    t0 = time.perf_counter()
    rec: dict = {}
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
        rec = {"outcome": "ok"}
    except Timeout:
        rec = {"outcome": "timeout", "message": f"past {timeout:g} s"}
    except ConvlensError as e:
        rec = {"outcome": "refused", "message": first_line(e)}
    except Exception as e:  # noqa: BLE001  the sweep records every failure and goes on
        rec = {"outcome": "crash", "message": f"{type(e).__name__}: {first_line(e)}",
               "where": where(e)}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    rec["seconds"] = round(time.perf_counter() - t0, 2)
    tmp = re.escape(tempfile.gettempdir())  # temporary names differ from call to call
    said = list(dict.fromkeys(re.sub(tmp + r"/[^'\"\s]+", "TMP/...",
                                     f"{w.category.__name__}: {first_line(w.message)}")
                              for w in caught or ()))
    if said:
        rec["warnings"] = said
    return rec


def images(lens) -> torch.Tensor:
    return torch.randn(N_IMAGES, *lens.input_size, generator=torch.Generator().manual_seed(0))


def minimal(view_name: str, lens) -> dict:
    """Where a view's quick settings still cost minutes on a large net, less: occlusion with
    2 x 2 windows; the randomisation test on the top two layers (of `randomizable_layers`,
    which the sweep still calls) instead of every layer; Score-CAM on each image's 16 most
    varying channels (Faster-Score-CAM: a full Score-CAM of Swin-T's 768 channels at 224 px
    took 5 min); dissection of the first and last of its default layers (`spatial_layers`,
    which the sweep still calls): on 8 images of 64 px every unit's threshold is its maximum,
    the tiny deep maps put whole blocks of pixels at it, and counting those exactly cost
    0.5-116 s a model over every layer (efficientnet_b7 116 s, densenet161 30 s);
    faithfulness of Grad-CAM (its default layer: the path that differs most between
    architectures) on one image, by the metrics that touch the model in their own way:
    deletion (the forward rows of perturbed images, as insertion, ROAD, average drop and
    infidelity run them), max-sensitivity (the maps of noisy copies) and the randomisation check
    (every weight layer re-initialised); at its quick settings it took 0.4-74 s a model, 776 s
    over the zoo (vit_b_16 62 s, swin_v2_b 74 s)."""
    if view_name == "occlusion":
        side = min(lens.input_size[1:])
        return {"window": side // 2, "stride": side // 2}
    if view_name == "score_cam":  # Faster-Score-CAM: 16 forward passes, not one per channel
        return {"max_channels": 16}
    if view_name == "cascading_randomization":
        from convlens.techniques.gradients.sanity import randomizable_layers
        return {"layers": randomizable_layers(lens)[:2]}
    if view_name == "faithfulness":
        return {"n": 1, "methods": ["grad_cam"],
                "metrics": ["deletion", "max_sensitivity", "randomisation"]}
    if view_name == "dissect":  # its default layers, found as it finds them: first and last
        from convlens.techniques.concepts.dissect import spatial_layers
        found = spatial_layers(lens)
        return {"layers": list(dict.fromkeys([found[0], found[-1]]))} if found else {}
    return {}


def arguments(view, lens) -> tuple[dict, list[str]]:
    """The view's `quick` arguments for this model: layer names of the tests' tiny net dropped,
    a required one replaced by the demo's choice; plus notes on what was changed."""
    fn = view.load()
    params = inspect.signature(fn).parameters
    kw, notes = {}, []
    for k, v in view.quick.items():
        if k not in LAYER_ARGS:
            kw[k] = v
            continue
        p = params.get(k)
        if p is not None and p.default is inspect.Parameter.empty:
            if k == "objective":  # feature visualisation: the last spatial layer (the demo's)
                spatial = default_layers(lens, spatial_only=True)
                kw[k] = (spatial or default_layers(lens))[-1]
            else:  # inversion: the last default layer (the demo's last pick)
                kw[k] = [default_layers(lens)[-1]]
            notes.append(f"{k}={kw[k]!r} (required: the demo's choice)")
        else:
            notes.append(f"{k} dropped (default)")
    for k, v in minimal(view.name, lens).items():
        kw[k] = v
        notes.append(f"{k}={v!r} (the sweep's minimal setting)")
    if "run" in params and "run" not in kw:
        kw["run"] = convlens.RunSettings(progress=False)
    if "progress" in params and "progress" not in kw:
        kw["progress"] = False
    return kw, notes


def sweep_model(name: str, views, data: str, timeout: float, train: bool, work: Path) -> dict:
    """Every view on one model; the model's record with one record per view."""
    t_model = time.perf_counter()
    out: dict = {"model": name, "views": {}, "prep": {}}
    try:
        lens = build(name, train)
    except Exception as e:  # noqa: BLE001
        out["error"] = f"build: {type(e).__name__}: {first_line(e)}"
        return out
    out["input"] = list(lens.input_size)
    out["params"] = sum(p.numel() for p in lens.parameters())
    x = images(lens)

    # what scan and codes views read: a scan of the data and its CNN codes (made once)
    scan_dir = work / name / "scan"
    codes: dict = {}
    if any(v.argument == "scan" for v in views):
        rec = run_call(lambda: convlens.scan(lens, data, out=scan_dir, **SCAN,
                                             run=convlens.RunSettings(progress=False)), timeout)
        out["prep"]["scan"] = rec
    if any(v.argument == "codes" for v in views):
        def make_codes():
            codes["codes"] = convlens.cnn_codes(lens, data,
                                                run=convlens.RunSettings(progress=False))
        out["prep"]["codes"] = run_call(make_codes, timeout)

    for view in views:
        fn = view.load()
        arg = view.argument
        try:
            kw, notes = arguments(view, lens)
        except Exception as e:  # noqa: BLE001  finding the demo's layer failed
            out["views"][view.name] = {"outcome": "crash", "seconds": 0.0,
                                       "message": f"arguments: {type(e).__name__}: "
                                                  f"{first_line(e)}", "unchanged": True}
            continue
        if arg == "images":
            call = lambda: fn(lens, x, **kw)  # noqa: E731
        elif arg == "model":
            call = lambda: fn(lens, **kw)  # noqa: E731
        elif arg == "data":
            call = lambda: fn(lens, data, **kw)  # noqa: E731
        elif arg == "scan":
            prep = out["prep"].get("scan", {})
            if prep.get("outcome") != "ok":
                out["views"][view.name] = {"outcome": "skipped", "seconds": 0.0,
                                           "message": f"no scan ({prep.get('outcome')}: "
                                                      f"{prep.get('message', '')})",
                                           "unchanged": True}
                continue
            if "layer" in inspect.signature(fn).parameters and "layer" not in kw:
                kw["layer"] = convlens.load_result(scan_dir).layers[-1]
                notes.append(f"layer={kw['layer']!r} (the scan's last)")
            call = lambda: fn(scan_dir, **kw)  # noqa: E731
        else:  # codes
            if "codes" not in codes:
                prep = out["prep"].get("codes", {})
                out["views"][view.name] = {"outcome": "skipped", "seconds": 0.0,
                                           "message": f"no codes ({prep.get('outcome')}: "
                                                      f"{prep.get('message', '')})",
                                           "unchanged": True}
                continue
            call = lambda: fn(codes["codes"], **kw)  # noqa: E731
        before = snapshot(lens)
        rec = run_call(call, timeout)
        diff = changes(lens, before)
        rec["unchanged"] = not diff
        if diff:
            rec["changed"] = diff
            lens = build(name, train)  # a fresh model for the next view
            x = images(lens)
        if notes:
            rec["args"] = notes
        out["views"][view.name] = rec
    out["seconds"] = round(time.perf_counter() - t_model, 1)
    return out


# -- the report -----------------------------------------------------------------------------

CELL = {"ok": "ok", "refused": "refused", "crash": "**CRASH**", "timeout": "**TIMEOUT**",
        "skipped": "skipped"}


def markdown(results: list[dict], view_names: list[str], meta: dict) -> str:
    counts = {k: 0 for k in CELL}
    messages: dict[tuple[str, str], list[str]] = {}  # (outcome, message) -> "model/view"
    for r in results:
        for v, rec in r["views"].items():
            counts[rec["outcome"]] += 1
            if rec["outcome"] != "ok":
                msg = rec.get("message", "")
                if rec.get("where"):
                    msg += f" (at {rec['where']})"
                messages.setdefault((rec["outcome"], msg), []).append(f"{r['model']} / {v}")
    order = {"crash": 0, "timeout": 1, "refused": 2, "skipped": 3}
    keyed = sorted(messages.items(), key=lambda kv: (order[kv[0][0]], -len(kv[1]), kv[0][1]))
    ref = {key: f"{key[0][0].upper()}{i + 1}" for i, (key, _) in enumerate(keyed)}

    lines = ["# The zoo: every view on torchvision and timm architectures", "",
             "Written by `docs/make_zoo.py` (issue 24): each torchvision classification "
             "architecture (and timm CNNs) with random seeded weights, through every view of "
             "the Python API with its record's quick settings (less where they still cost "
             f"minutes: `minimal`), on {N_IMAGES} random images, the data "
             f"`{meta['data']}` and a scan of it (n={SCAN['n']}, topk={SCAN['topk']}). Layer "
             "names in the quick settings (written for the tests' tiny net) are dropped so the "
             "views pick their default layers; where a view has no default (`invert`'s layers, "
             "`feature_visualization`'s objective) it gets the demo's layer. Models in "
             f"{'train' if meta['train'] else 'eval'} mode. Each cell: the outcome and the "
             "seconds the call took; refusals and crashes are keyed to the messages below. "
             "`state` says whether every view left the model's parameters, buffers, gradients, "
             "training flags and hooks as they were."
             + (" Not swept yet: " + "; ".join(NOT_SWEPT.values()) + "." if NOT_SWEPT
                else ""), "",
             f"Regenerate: `{meta['command']}`", "",
             f"**{sum(counts.values())} calls: {counts['ok']} ok, {counts['refused']} refused, "
             f"{counts['crash']} crashed"
             + (f", {counts['timeout']} timed out" if counts["timeout"] else "")
             + (f", {counts['skipped']} skipped" if counts["skipped"] else "")
             + f"; {len(results)} models.**", ""]

    head = ["model", "input", "params (M)", "state", "seconds"] + [f"`{v}`" for v in view_names]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['model']} | | | | | {r['error']} |" + " |" * (len(view_names) - 1))
            continue
        changed = sorted({v for v, rec in r["views"].items() if not rec.get("unchanged", True)})
        state = "unchanged" if not changed else "**changed by " + ", ".join(changed) + "**"
        row = [r["model"], f"{r['input'][1]}", f"{r['params'] / 1e6:.1f}", state,
               f"{r['seconds']:.0f}"]
        for v in view_names:
            rec = r["views"].get(v)
            if rec is None:
                row.append("")
                continue
            cell = f"{CELL[rec['outcome']]} {rec['seconds']:.1f}"
            if rec["outcome"] != "ok":
                msg = rec.get("message", "")
                if rec.get("where"):
                    msg += f" (at {rec['where']})"
                cell += f" [{ref[(rec['outcome'], msg)]}]"
            row.append(cell)
        lines.append("| " + " | ".join(row) + " |")

    lines += ["", "## Messages", ""]
    if not keyed:
        lines.append("None: every call worked.")
    for key, where_ in keyed:
        outcome, msg = key
        lines.append(f"- **{ref[key]}** ({outcome}, {len(where_)}): {msg.replace('|', '/')}  ")
        lines.append(f"  {', '.join(where_)}")

    notes = sorted({(v, n) for r in results for v, rec in r["views"].items()
                    for n in rec.get("args", []) if "demo's choice" in n})
    if notes:
        lines += ["", "## Layers given where a view has no default", ""]
        by_view: dict[str, list[str]] = {}
        for r in results:
            for v, rec in r["views"].items():
                for n in rec.get("args", []):
                    if "demo's choice" in n:
                        by_view.setdefault(v, []).append(f"{r['model']}: {n.split(' (')[0]}")
        for v, items in by_view.items():
            lines.append(f"- `{v}`: " + "; ".join(items))

    said: dict[str, list[str]] = {}
    for r in results:
        for v, rec in r["views"].items():
            for w in rec.get("warnings", []):
                said.setdefault(w, []).append(f"{r['model']} / {v}")
    if said:
        lines += ["", "## Warnings (the calls worked and said this)", ""]
        for w, where_ in sorted(said.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            lines.append(f"- {w.replace('|', '/')} ({len(where_)}):  ")
            lines.append(f"  {', '.join(where_)}")

    preps = [(r["model"], k, p) for r in results for k, p in r.get("prep", {}).items()
             if p["outcome"] != "ok"]
    if preps:
        lines += ["", "## Scans and codes that could not be made (their views skipped)", ""]
        for m, k, p in preps:
            lines.append(f"- {m} {k}: {p['outcome']}: {p.get('message', '')}")

    lines += ["", "## Run", "",
              f"- date: {meta['date']}",
              f"- machine: {meta['machine']}",
              f"- torch {meta['torch']}, torchvision {meta['torchvision']}, "
              f"convlens at {meta['commit']}",
              f"- load average (1 min): {meta['load']}: the times are wall-clock seconds and "
              "vary with other work on the machine",
              f"- total time: {meta['total_s'] / 60:.1f} min ({meta['total_s']:.0f} s)", ""]
    return "\n".join(lines)


def git_commit() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, text=True,
                              capture_output=True, check=True).stdout.strip()
    except Exception:  # noqa: BLE001
        return "?"


def main(argv=None) -> None:
    import torchvision

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", help="comma-separated torchvision names, timm:NAME for timm's "
                    f"(default: {','.join(DEFAULT_MODELS)})")
    ap.add_argument("--all", action="store_true",
                    help="every torchvision classification model up to --max-params, and "
                    "the timm CNNs of TIMM_MODELS")
    ap.add_argument("--max-params", type=float, default=MAX_PARAMS)
    ap.add_argument("--views", help="comma-separated view names (default: every view)")
    ap.add_argument("--data", default="builtin:shapes:test:8")
    ap.add_argument("--out", default=str(HERE / "zoo.md"))
    ap.add_argument("--json", help="write the raw records here")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per call")
    ap.add_argument("--train", action="store_true", help="models in train mode")
    args = ap.parse_args(argv)

    views = swept_views()
    if args.views:
        wanted = args.views.split(",")
        unknown = [w for w in wanted if w not in {v.name for v in views}]
        if unknown:
            ap.error(f"unknown views {unknown}; views: {', '.join(v.name for v in views)}")
        views = [v for v in views if v.name in wanted]
    models = (all_models(args.max_params) if args.all else
              args.models.split(",") if args.models else DEFAULT_MODELS)

    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="zoo-") as tmp:
        for i, name in enumerate(models):
            r = sweep_model(name, views, args.data, args.timeout, args.train, Path(tmp))
            results.append(r)
            tally = {}
            for rec in r["views"].values():
                tally[rec["outcome"]] = tally.get(rec["outcome"], 0) + 1
            changed = [v for v, rec in r["views"].items() if not rec.get("unchanged", True)]
            print(f"[{i + 1}/{len(models)}] {name}: "
                  + (r["error"] if "error" in r else
                     ", ".join(f"{n} {k}" for k, n in tally.items())
                     + f"; {r['seconds']:.0f} s"
                     + (f"; CHANGED by {', '.join(changed)}" if changed else "")),
                  file=sys.stderr, flush=True)
            for v, rec in r["views"].items():
                if rec["outcome"] != "ok":
                    print(f"    {v}: {rec['outcome']}: {rec.get('message', '')} "
                          f"{rec.get('where', '')}", file=sys.stderr, flush=True)
    total = time.perf_counter() - t0

    shown = list(argv or sys.argv[1:])
    if "--json" in shown:  # where the raw records went is no part of the table
        i = shown.index("--json")
        del shown[i:i + 2]
    shown = [a for a in shown if not a.startswith("--json=")]
    command = "python docs/make_zoo.py " + " ".join(shown)
    meta = {"date": datetime.datetime.now().astimezone().isoformat(timespec="minutes"),
            "machine": f"{platform.processor() or platform.machine()}, "
                       f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
                       f"{platform.system()} {platform.release()}",
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "commit": git_commit(), "total_s": total,
            "load": f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
            "data": args.data, "train": args.train,
            "command": command.strip()}
    view_names = [v.name for v in views]
    Path(args.out).write_text(markdown(results, view_names, meta))
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"wrote {args.out} ({total / 60:.1f} min)", file=sys.stderr)


if __name__ == "__main__":
    main()
