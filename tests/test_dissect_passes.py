"""dissect's two passes on the engine (issue 27): the thresholds and IoUs of the streaming
passes equal the ones computed from every activation at once, whatever the batch size."""
from __future__ import annotations

import math

import pytest
import torch

from convlens import RunSettings, load_data, load_model
from convlens.data import Loader
from convlens.hooks import capture
from convlens.techniques.concepts.dissect import Overlaps, data_backgrounds, dissect_layers
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
