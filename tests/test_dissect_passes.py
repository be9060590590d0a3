"""dissect's two passes on the engine (issue 27): the thresholds and IoUs of the streaming
passes equal the ones computed from every activation at once, whatever the batch size; the
top items kept for the figure equal a brute-force sort and merge across shards; on Ray the
result is the local one; killed, the passes resume from their checkpoints."""
from __future__ import annotations

import math
import signal

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from conftest import kill_after_checkpoint
from convlens import RunSettings, load_data, load_model
from convlens.data import Loader
from convlens.engine import run_local
from convlens.hooks import capture
from convlens.techniques.concepts.dissect import (
    WORK,
    Overlaps,
    data_backgrounds,
    dissect,
    dissect_layers,
)
from convlens.techniques.concepts.dissection import IoUCounts
from convlens.techniques.concepts.labels import Vocabulary, concept_masks

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def test_passes_equal_the_all_at_once_computation():
    lens = load_model("builtin:shapes-net")
    data = load_data("builtin:shapes:test", lens=lens)
    layer = "features.9"
    a = dissect_layers(lens, data, [layer], q=0.01, n=24,
                       run=RunSettings(progress=False, batch_size=7))
    b = dissect_layers(lens, data, [layer], q=0.01, n=24,
                       run=RunSettings(progress=False, batch_size=24))
    assert torch.equal(a["thresholds"][layer], b["thresholds"][layer])
    assert torch.allclose(a["iou"][layer], b["iou"][layer], atol=1e-12)
    # all at once: every activation, the exact quantile, one IoU count
    batch = next(iter(Loader(data, batch_size=24, indices=range(24))))
    with torch.no_grad(), capture(lens, [layer]) as cap:
        lens(batch.images)
    act = cap[layer].float()
    v = act.transpose(0, 1).reshape(act.shape[1], -1)
    k = math.ceil(0.01 * v.shape[1])
    t = v.sort(1, descending=True).values[:, k - 1]
    assert torch.equal(a["thresholds"][layer], t)
    vocab = Vocabulary.build(data.classes, data_backgrounds(data))
    ov = Overlaps({layer: t}, vocab, data.classes, lens.value_range, list(lens.mean),
                  list(lens.std))
    masks = torch.stack([torch.as_tensor(m["mask"]) for m in batch.meta]).bool()
    labels = concept_masks(vocab, batch.labels, masks, [m["background"] for m in batch.meta],
                           ov._pixels(batch.images), data.classes)
    ref = IoUCounts(t)
    ref.update(act, labels)
    assert torch.allclose(a["iou"][layer], ref.iou(), atol=1e-12)
    assert a["images"] == 24 and a["without_masks"] == 0
    assert labels[:, vocab.index()["object:" + data.classes[int(batch.labels[0])]]][0].any()


def _brute_top(act: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each unit's k items of highest max activation, ties to the smaller item: a stable
    argsort of the per-image maxima."""
    m = act.amax((2, 3)).t()                                     # (U, N)
    order = m.argsort(dim=1, descending=True, stable=True)[:, :k]
    return order, m.gather(1, order)


def test_top_items_and_examples_equal_brute_force():
    """Dissection's figure (issue 27): the top items kept in the overlaps pass are the stable
    argsort of every image's max activation; each drawn unit's region is its upsampled map
    cut at T_k and its mask the concept's, on the re-loaded items."""
    lens = load_model("builtin:shapes-net")
    data = load_data("builtin:shapes:test", lens=lens)
    layers = ["features.4", "features.9"]
    got = dissect_layers(lens, data, layers, q=0.01, n=24, top=3, show=2,
                         run=RunSettings(progress=False, batch_size=7))
    batch = next(iter(Loader(data, batch_size=24, indices=range(24))))
    with torch.no_grad(), capture(lens, layers) as cap:
        lens(batch.images)
    for layer in layers:
        items, scores = _brute_top(cap[layer].float(), 3)
        assert torch.equal(got["top"][layer].item, items), layer
        assert torch.equal(got["top"][layer].score, scores), layer
    ex = got["examples"]
    assert len(ex["rows"]) == 2 * 2 * 3 and ex["images"].shape[1:] == (64, 64, 3)
    vocab = got["vocab"]
    ov = Overlaps(got["thresholds"], vocab, data.classes, lens.value_range, list(lens.mean),
                  list(lens.std))
    labels = ov.concepts(batch)
    pixels = ov._pixels(batch.images)
    for r, row in enumerate(ex["rows"]):
        layer, u, i = row["layer"], row["unit"], row["item"]
        assert row["item"] == int(got["top"][layer].item[u, row["rank"] - 1])
        up = F.interpolate(cap[layer][i:i + 1, u:u + 1].float(), size=(64, 64), mode="bilinear",
                           align_corners=False)[0, 0]
        assert np.array_equal(ex["regions"][r], (up >= got["thresholds"][layer][u]).numpy())
        assert np.array_equal(ex["masks"][r],
                              labels[i, vocab.index()[row["concept"]]].numpy())
        assert np.array_equal(ex["images"][row["image"]],
                              (pixels[i].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))
        assert row["iou"] == pytest.approx(float(got["iou"][layer][u].max()))


def test_overlaps_of_two_shards_merged_equal_one_pass():
    """The overlaps reducer's counts and top items: two shards, the first through its
    checkpoint state (as a resumed or remote one), merged, equal one pass, exactly (integer
    counts in float64; maxima of the same activations)."""
    lens = load_model("builtin:shapes-net")
    data = load_data("builtin:shapes:test", lens=lens)
    layers = ["features.4", "features.9"]
    got = dissect_layers(lens, data, layers, q=0.01, n=24, show=0,
                         run=RunSettings(progress=False, batch_size=24))

    def overlaps():
        return Overlaps(got["thresholds"], got["vocab"], data.classes, lens.value_range,
                        list(lens.mean), list(lens.std), top=4)

    one, a, b = overlaps(), overlaps(), overlaps()
    run_local(lens, data, [one], np.arange(24), batch_size=5, progress=False)
    run_local(lens, data, [a], np.arange(0, 10), batch_size=4, progress=False)
    run_local(lens, data, [b], np.arange(10, 24), batch_size=6, progress=False)
    merged = overlaps()
    merged.load_state_dict(a.state_dict())
    merged.merge(b)
    assert merged.images == one.images == 24
    for layer in layers:
        assert torch.equal(merged.top[layer].item, one.top[layer].item)
        assert torch.equal(merged.top[layer].score, one.top[layer].score)
        for key in ("inter", "unit_size", "concept_size"):
            assert torch.equal(getattr(merged.counts[layer], key),
                               getattr(one.counts[layer], key)), key
        assert torch.equal(one.top[layer].item, got["top"][layer].item[:, :4])


def _same(a, b) -> None:
    """Two dissections of the same items by the same batches: equal thresholds, IoUs, top
    items and drawn examples."""
    pd.testing.assert_frame_equal(a.units, b.units)
    pd.testing.assert_frame_equal(a.iou, b.iou, rtol=0, atol=1e-15)  # integer counts: exact
    pd.testing.assert_frame_equal(a.top, b.top)
    pd.testing.assert_frame_equal(a.examples, b.examples)
    for name in ("example_images", "example_regions", "example_masks"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


RAY_KW = dict(layers=["features.4", "features.9"], q=0.01, n=24, top=3, show=2)


@pytest.mark.timeout(300)
def test_on_ray_equals_local(local_ray):
    """Both passes on the Ray engine (shards of 12 items, batches of 4 within them: the local
    pass's batches) give the local result: thresholds, IoUs, top items and examples."""
    lens = load_model("builtin:shapes-net")
    quiet = RunSettings(progress=False, batch_size=4)
    local = dissect(lens, "builtin:shapes:test", run=quiet, **RAY_KW)
    remote = dissect(lens, "builtin:shapes:test",
                     run=quiet.but(engine="ray", shard_size=12), **RAY_KW)
    assert remote.params["engine"] == "ray" and remote.params["images"] == 24
    _same(local, remote)


SCRIPT = """
import os, warnings
warnings.simplefilter("ignore")
from convlens import RunSettings, load_model
from convlens.techniques.concepts.dissect import dissect
dissect(load_model("builtin:shapes-net"), "builtin:shapes:test", out={out!r},
        run=RunSettings(batch_size=4, checkpoint_every=1, progress=False), **{kw!r})
"""
RESUME_KW = dict(layers=["features.4", "features.9"], q=0.01, n=96, top=3, show=2)


def test_resumes_after_sigkill(tmp_path):
    """Killed during the overlaps pass (SIGKILL, a few batches after its first checkpoint),
    the same call with the same `out` resumes both passes from their checkpoints and gives
    the uninterrupted result; the checkpoints are removed at the end."""
    out = tmp_path / "dissect"
    code = kill_after_checkpoint(SCRIPT.format(out=str(out), kw=RESUME_KW),
                                 out / WORK / "overlaps" / "checkpoint.pt", settle=0.1)
    assert code == -signal.SIGKILL
    assert not (out / "manifest.json").exists()
    lens = load_model("builtin:shapes-net")
    run = RunSettings(progress=False, batch_size=4, checkpoint_every=1)
    resumed = dissect(lens, "builtin:shapes:test", out=out, run=run, **RESUME_KW)
    assert 0 < resumed.params["resumed_from"]["overlaps"] < 96
    assert resumed.params["resumed_from"]["thresholds"] == 96  # finished before the kill
    whole = dissect(lens, "builtin:shapes:test", run=run, **RESUME_KW)
    _same(resumed, whole)
    assert (out / "manifest.json").is_file() and not (out / WORK).exists()
