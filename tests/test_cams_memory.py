"""Streaming images through a CAM keeps memory flat (issue 25, acceptance 4): peak RSS after
10,000 images through Grad-CAM++ (and Ablation-CAM, whose cut network is traced per call) is
within 10 % of the peak after 1,000, in a fresh process (fashion-net at 28 px, batches of 100,
keeping one number per image, as a loop over a dataset would)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, resource, sys
import torch
import convlens
torch.set_num_threads(1)
method = getattr(convlens, sys.argv[1])
lens = convlens.load_model("builtin:fashion-net")
gen = torch.Generator().manual_seed(0)
peaks, kept = {}, []
for b in range(100):                      # 100 batches of 100 images
    x = torch.randn(100, 1, 28, 28, generator=gen)
    res = method(lens, x, target="auto")
    kept.append(res.cam.flatten(1).argmax(1))  # what a dataset loop keeps: a number per image
    if b + 1 in (10, 100):
        peaks[(b + 1) * 100] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peaks": peaks, "kept": len(torch.cat(kept))}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("method", ["grad_cam_plus_plus", "ablation_cam"])
def test_peak_memory_is_flat_over_10000_images(method):
    env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-c", SCRIPT, method], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    p1, p10 = got["peaks"]["1000"], got["peaks"]["10000"]
    assert got["kept"] == 10_000
    assert p10 <= 1.10 * p1, f"peak RSS {p1} kB after 1,000 images, {p10} kB after 10,000"
