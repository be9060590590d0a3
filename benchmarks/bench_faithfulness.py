"""Throughput of the faithfulness metrics (issue 26) against Quantus, in one run.

    .venv/bin/python benchmarks/bench_faithfulness.py [--images 200] [--steps 36]
        [--methods saliency,grad_cam,guided_backprop] [--threads 1] [--rounds 1]

builtin:stamps-net on the first `--images` items of builtin:stamps:test (3 x 96 x 96), each
image's predicted class, the maps of `--methods` computed once (not timed). For each method:

* deletion (`--steps` equal steps; the baseline 0 of the normalised input): convlens
  `deletion` against Quantus 0.6.0 `PixelFlipping(features_in_step=C*H*W/steps,
  perturb_baseline=0)` given the same per-position map (Quantus counts values of all
  channels; it checks that the step divides H*W, hence 36 steps at 96 px);
* insertion: convlens `insertion` against `PixelFlipping` started from convlens's blurred
  image with a perturbation that puts the original pixels back (Quantus has no insertion);
* ROAD, most relevant first, 9 fractions: convlens `road`; Quantus 0.6.0's `ROAD` raises an
  IndexError on 3-channel images with a per-position (or a per-channel) map, so its row says
  so instead of a time.

The floor: a bare forward pass (no perturbation, no ordering) of as many rows as deletion runs,
in batches of 64, in the default layout and channels-last: no implementation that evaluates
every step can be faster than that, so Quantus's time over it bounds any speed-up.

CPU seconds of this process (`time.process_time`, one torch thread: the work done), images
per CPU second summed over the methods, and the ratio to Quantus's (above 1: convlens
faster). The curves agree (tests/test_faithfulness_peers.py checks equal values); this
script prints the largest difference of the deletion curves as a reminder.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

try:
    import convlens
except ImportError:  # a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import convlens


def cpu(fn):
    t = time.process_time()
    out = fn()
    return time.process_time() - t, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--steps", type=int, default=36)
    ap.add_argument("--methods", default="saliency,grad_cam,guided_backprop")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=100, help="images per call (both libraries)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    import quantus

    from convlens.data import Loader
    from convlens.techniques.faithfulness.metrics import deletion, insertion, road
    from convlens.techniques.faithfulness.substrates import rise_blur

    lens = convlens.load_model("builtin:stamps-net")
    data = convlens.load_data("builtin:stamps:test", lens)
    batches = list(Loader(data, batch_size=args.batch, indices=list(range(args.images))))
    c, h, w = lens.input_size
    if (h * w) % args.steps or (h * w) % (c * (h * w // args.steps)):
        raise SystemExit(f"--steps must divide {h * w} into steps of k positions with "
                         f"{c}k dividing {h * w} (Quantus's check), e.g. 36")
    methods = args.methods.split(",")
    print(f"# stamps-net on {args.images} builtin:stamps:test images ({h}x{w}), "
          f"{torch.get_num_threads()} torch thread(s); "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, quantus {quantus.__version__}, load average "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    work = []  # (x, targets, {method: map})
    for b in batches:
        with torch.no_grad():
            t = lens(b.images).argmax(1)
        maps = {m: getattr(convlens, m)(lens, b.images, target=t.tolist()).map.detach()
                for m in methods}
        work.append((b.images, t, maps))
    n = sum(len(x) for x, _, _ in work) * len(methods)
    model = lens.model.eval()
    per_step = h * w // args.steps
    rows = {}

    def q_deletion(x, t, m):
        pf = quantus.PixelFlipping(features_in_step=c * per_step, perturb_baseline=0.0,
                                   normalise=False, abs=False, disable_warnings=True)
        return np.asarray(pf(model=model, x_batch=x.numpy(), y_batch=t.numpy(),
                             a_batch=m[:, None].numpy(), device="cpu", softmax=True,
                             batch_size=len(x)))

    def q_insertion(x, t, m):
        orig = x.numpy().reshape(len(x), -1)

        def put_back(arr, indices, **kw):
            out = arr.copy()
            r = np.arange(arr.shape[0])[:, None]
            out[r, indices] = orig[r, indices]
            return out
        pf = quantus.PixelFlipping(features_in_step=c * per_step, perturb_func=put_back,
                                   normalise=False, abs=False, disable_warnings=True)
        # one Quantus batch: put_back's rows are the call's (Quantus's default batches of 64
        # would misalign them)
        return np.asarray(pf(model=model, x_batch=rise_blur(x).numpy(), y_batch=t.numpy(),
                             a_batch=m[:, None].numpy(), device="cpu", softmax=True,
                             batch_size=len(x)))

    fractions = [i / 10 for i in range(1, 10)]
    for name, ours, peer in (
            ("deletion", lambda x, t, m: deletion(lens, x, m, targets=t, steps=args.steps),
             q_deletion),
            ("insertion", lambda x, t, m: insertion(lens, x, m, targets=t, steps=args.steps),
             q_insertion),
            ("ROAD MoRF, 9 fractions", lambda x, t, m: road(lens, x, m, targets=t,
                                                            fractions=fractions), None)):
        c_ours = c_peer = 0.0
        diff = 0.0
        peer_error = None
        for x, t, maps in work:
            for m in maps.values():
                sec, got = cpu(lambda: ours(x, t, m))
                c_ours += sec
                if peer is None:
                    continue
                try:
                    sec, theirs = cpu(lambda: peer(x, t, m))
                except Exception as e:  # noqa: BLE001  reported in the table
                    peer_error = f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
                    continue
                c_peer += sec
                diff = max(diff, float(np.abs(got.probability[:, 1:].numpy() - theirs).max()))
        if peer is None:
            try:
                x, t, maps = work[0]
                m = next(iter(maps.values()))
                quantus.ROAD(noise=0.01, percentages=list(range(10, 100, 10)),
                             disable_warnings=True)(model=model, x_batch=x[:2].numpy(),
                                                    y_batch=t[:2].numpy(),
                                                    a_batch=m[:2, None].numpy(), device="cpu")
                peer_error = "(not timed)"
            except Exception as e:  # noqa: BLE001
                peer_error = f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
        rows[name] = (c_ours, c_peer, diff, peer_error)

    rows_n = n * (args.steps + 1)
    xs = torch.cat([x for x, _, _ in work])
    floor = {}
    for name, layout in (("default layout", torch.contiguous_format),
                         ("channels-last", torch.channels_last)):
        import copy
        net = copy.deepcopy(model).to(memory_format=layout)

        def bare():
            with torch.inference_mode():
                done = 0
                while done < rows_n:
                    k = min(64, rows_n - done)
                    net(xs[torch.arange(done, done + k) % len(xs)].contiguous(
                        memory_format=layout))
                    done += k
        floor[name] = cpu(bare)[0]
    print("\n| metric | convlens CPU s | images / CPU s | Quantus CPU s | images / CPU s | "
          "convlens vs Quantus | max curve difference |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (c_ours, c_peer, diff, err) in rows.items():
        if c_peer > 0 and err is None:
            print(f"| {name} | {c_ours:.2f} | {n / c_ours:.1f} | {c_peer:.2f} | "
                  f"{n / c_peer:.1f} | {c_peer / c_ours:.2f}x | {diff:.1e} |")
        else:
            print(f"| {name} | {c_ours:.2f} | {n / c_ours:.1f} | – | – | Quantus: {err} | – |")
    print(f"\nThe floor, a bare forward pass of deletion's {rows_n} rows (64 per batch): "
          + ", ".join(f"{k} {v:.2f} CPU s" for k, v in floor.items())
          + (f"; Quantus's deletion over the channels-last floor: "
             f"{rows['deletion'][1] / floor['channels-last']:.2f}x, the most any "
             "implementation that runs every step can gain" if rows["deletion"][1] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
