"""The dataset pass's inner loop (`engine.local.feed`): where no reducer reads the logits
(`Reducer.needs_logits` False: dissection's passes, activation statistics), each batch after
the first stops its forward pass once every layer has run as often as in the first batch.
The reducers' results are those of the whole forward pass, a module run twice still counts
with its last call, and the model is left as it was found. Dissection of such a module (a
ResNet bottleneck's ReLU, whose calls have different units) counts its last call."""
from __future__ import annotations

import pytest
import torch
from test_scan import BAD, Synthetic
from torch import nn

from conftest import assert_unchanged, snapshot
from convlens import Lens
from convlens.data import Loader
from convlens.engine.local import feed
from convlens.engine.reducer import Reducer
from convlens.techniques.activity.stats import ActivationStats


class Counted(nn.Module):
    """A module that counts its calls."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


class Twice(nn.Module):
    """One ReLU module run twice per forward (as torchvision's ResNet blocks do), then a head
    whose calls are counted."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = Counted(nn.Sequential(nn.Flatten(), nn.Linear(2 * 28 * 28, 3)))

    def forward(self, x):
        return self.head(self.relu(self.conv2(self.relu(self.conv1(x)))))


class Logits(Reducer):
    """A reducer that reads the logits (their sum)."""

    layers: list[str] = []

    def __init__(self):
        self.total, self.seen = 0.0, []

    def update(self, batch, acts, logits) -> None:
        self.seen.append(logits is not None)
        self.total += float(logits.sum())


def _pass(lens, reducers, batch_size=8):
    data = Synthetic(30, lens=lens)
    items = [i for i in range(30) if i != BAD]
    for _ in feed(lens, Loader(data, batch_size=batch_size, indices=items), reducers):
        pass
    return reducers


def _stats(r: ActivationStats):
    return [r.n["relu"], r.zero_maps["relu"], r.zeros["relu"], r.sum["relu"], r.max["relu"]]


@pytest.fixture
def lens():
    torch.manual_seed(0)
    return Lens(Twice(), mean=(0.5,), std=(0.5,), input_size=(1, 28, 28))


def test_a_pass_without_logits_stops_after_its_layers_with_the_same_result(lens):
    before = snapshot(lens)  # in training mode: feed runs in eval mode and puts it back
    early = _pass(lens, [ActivationStats(["relu"])])[0]
    assert lens.model.head.calls == 1  # the first batch only: 4 batches of 29 items
    assert_unchanged(lens, before)  # flags, parameters as they were; no hook left

    whole = ActivationStats(["relu"])
    whole.needs_logits = True  # the same reducer, run through the whole forward pass
    _pass(lens, [whole])
    assert lens.model.head.calls == 1 + 4
    for a, b in zip(_stats(early), _stats(whole)):
        assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))

    # the module's last call: its second, on conv2's output (not conv1's)
    data = Synthetic(30, lens=lens)
    items = [i for i in range(30) if i != BAD]
    with torch.no_grad():
        x = torch.stack([data[i].image for i in items])
        last = lens.model.relu(lens.model.conv2(lens.model.relu(lens.model.conv1(x))))
    torch.testing.assert_close(early.max["relu"], last.amax((0, 2, 3)).double())


def test_a_reducer_that_reads_the_logits_keeps_the_whole_forward_pass(lens):
    stats, logits = _pass(lens, [ActivationStats(["relu"]), Logits()])
    assert lens.model.head.calls == 4 and logits.seen == [True] * 4
    with torch.no_grad():
        data = Synthetic(30, lens=lens)
        want = sum(float(lens(data[i].image[None]).sum()) for i in range(30) if i != BAD)
    assert logits.total == pytest.approx(want, rel=1e-5)


def test_an_error_in_a_stopped_pass_leaves_no_hook(lens):
    before = snapshot(lens)

    class Fails(ActivationStats):
        def update(self, batch, acts, logits=None) -> None:
            super().update(batch, acts, logits)
            if self.n["relu"] > 8:
                raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _pass(lens, [Fails(["relu"])])
    assert_unchanged(lens, before)


class Bottleneck(nn.Module):
    """One ReLU module run three times per forward, on 4, 4, then 8 units (torchvision's
    ResNet bottleneck: dissecting ``layerK.N.relu`` once failed with "512 units, 2048
    thresholds", its first calls meeting the last call's thresholds)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.c3 = nn.Conv2d(4, 8, 1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        a = self.relu(self.c3(self.relu(self.c2(self.relu(self.c1(x))))))
        return self.fc(a.mean((2, 3)))


def test_dissecting_a_module_run_several_times_counts_its_last_call():
    from convlens import RunSettings, load_data, load_model
    from convlens.hooks import capture
    from convlens.techniques.concepts.dissect import dissect_layers
    from convlens.techniques.concepts.dissection import TopQuantile

    torch.manual_seed(0)
    ref = load_model("builtin:shapes-net")
    lens = Lens(Bottleneck(), mean=ref.mean, std=ref.std, input_size=ref.input_size,
                labels=ref.labels)
    before = snapshot(lens)
    data = load_data("builtin:shapes:test:24", lens=lens)
    got = [dissect_layers(lens, data, ["relu"], q=0.02, show=1,
                          run=RunSettings(progress=False, batch_size=b)) for b in (10, 24)]
    batch = next(iter(Loader(data, batch_size=24)))
    with torch.no_grad(), capture(lens, "relu") as cap:
        lens(batch.images)
    tq = TopQuantile(24, 0.02)
    tq.update(cap["relu"])  # the last call: 8 units
    for g in got:  # batches of 10 and 24 run the convolutions with other kernels: 1e-5
        torch.testing.assert_close(g["thresholds"]["relu"], tq.threshold(), rtol=1e-5,
                                   atol=1e-6)
        iou = g["iou"]["relu"]
        assert iou.shape[0] == 8 and bool(((iou >= 0) & (iou <= 1)).all())
        assert float(iou.max()) > 0
    assert_unchanged(lens, before)
