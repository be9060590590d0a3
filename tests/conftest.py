"""Shared fixtures: tiny hand-weighted networks with answers worked out by hand; a folder of
photos in class folders; a run killed after its first checkpoint."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convlens import Lens


class HandNet(nn.Module):
    """conv(1->1, 2x2, weights 1, bias -14) -> ReLU(inplace) -> sum of F.relu(3 - h): 1 logit.

    On the 3x3 input [[1,2,3],[4,5,6],[7,8,9]] (worked out by hand):
    conv = [[-2, 2], [10, 14]]; ReLU: h = [[0, 2], [10, 14]]; relu(3 - h) = [[3, 1], [0, 0]];
    logit 4. d logit/d h = -[3 - h > 0] = [[-1, -1], [0, 0]];
    d logit/d conv = that times [conv > 0] = [[0, -1], [0, 0]].
    """

    def __init__(self, inplace: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 2, bias=True)
        self.act = nn.ReLU(inplace=inplace)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.fill_(-14.0)

    def forward(self, x):
        h = self.act(self.conv(x))
        h = F.relu(3.0 - h)
        return h.flatten(1).sum(1, keepdim=True)


def all_hooks(model: nn.Module) -> int:
    """Number of hooks of any kind left on any module."""
    n = 0
    for m in model.modules():
        for d in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                  "_backward_pre_hooks", "_state_dict_hooks", "_load_state_dict_pre_hooks"):
            n += len(getattr(m, d, {}) or {})
    return n


@pytest.fixture
def hand_lens():
    return Lens(HandNet(), mean=(0.0,), std=(1.0,), input_size=(1, 3, 3), labels=["sum"])


def snapshot(model: nn.Module):
    """Everything a technique must leave as it found it."""
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "params": [p.detach().clone() for p in model.parameters()],
        "buffers": [b.detach().clone() for b in model.buffers()],  # batch norm's statistics
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "hooks": all_hooks(model),
    }


def assert_unchanged(model: nn.Module, before) -> None:
    after = snapshot(model)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["hooks"] == before["hooks"]
    for a, b in zip(after["params"], before["params"]):
        assert torch.equal(a, b)
    for a, b in zip(after["buffers"], before["buffers"]):
        assert torch.equal(a, b)
    for a, b in zip(after["grads"], before["grads"]):
        assert (a is None and b is None) or torch.equal(a, b)


def photo_folder(root: Path, per_class: int, size, ext: str = "jpg") -> Path:
    """`root` filled with class folders ``animal/ object/ scene/`` of `per_class` random RGB
    images each, image i of size ``size(i) = (height, width)`` (seeded: the same bytes each run).
    """
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("animal", "object", "scene"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, (*size(i), 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / cls / f"{cls}{i}.{ext}")
    return root


def kill_after_checkpoint(code: str, checkpoint: Path, settle: float = 0.3) -> int:
    """Run `code` in a fresh Python, SIGKILL it `settle` seconds after `checkpoint` first
    exists (a few more batches written past it), and return its exit code."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    try:
        while not checkpoint.exists():
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.time() < deadline, "no checkpoint written"
            time.sleep(0.02)
        time.sleep(settle)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode


def assert_loads_back(res, folder: Path):
    """The one save/load mechanism: save `res`, load it with `load_result`, save that again:
    the same type, the same manifest (arrays, tables, info, fields, view, pictures per image) and
    the same arrays (values and dtypes) and tables. Returns the loaded result."""
    import json

    import numpy as np
    import pandas as pd

    from convlens.results import SavedResult, load_result

    a = res.save(folder / "a")
    back = load_result(a)
    assert type(back) is type(res) and back.kind == res.kind
    b = back.save(folder / "b")
    ma, mb = (json.loads((f / "manifest.json").read_text()) for f in (a, b))
    for key in ("kind", "arrays", "tables", "info", "fields", "result", "view", "per_image",
                "per_unit", "pictures"):
        assert ma.get(key) == mb.get(key), key
    sa, sb = SavedResult(a), SavedResult(b)
    for name in ma["arrays"]:
        u, v = sa.array(name), sb.array(name)
        assert u.dtype == v.dtype, name
        np.testing.assert_array_equal(u, v, err_msg=name)
    for name in ma["tables"]:
        pd.testing.assert_frame_equal(sa.table(name), sb.table(name))
    return back


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests (``pytestmark = pytest.mark.usefixtures(
    "one_thread")``): tiny nets and a shared 2-core machine, where a second OpenMP thread waits
    at barriers (measured: a backward pass 100x slower) and one thread keeps times steady."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture()
def local_ray():
    """A local Ray of 2 CPUs whose workers can import the tests' modules (to unpickle a test's
    model and data); shut down afterwards, also after a failure. Skips without ray."""
    ray = pytest.importorskip("ray")  # CI installs convlens[ray]
    import os

    tests = str(Path(__file__).resolve().parent)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([tests, *sys.path])}})
    try:
        yield ray
    finally:
        ray.shutdown()
