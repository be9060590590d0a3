"""Network dissection's streaming passes (issue 27) against literal references: the exact
top-q threshold whatever the batches and shards, and the IoU of Bau et al.'s formula counted
pixel by pixel."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from convlens.errors import ConvlensError
from convlens.techniques.concepts.dissection import IoUCounts, TopQuantile, detectors


def acts(n=10, u=5, h=6, w=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, u, h, w, generator=g)


def exact_threshold(a: torch.Tensor, q: float) -> torch.Tensor:
    """The K-th largest value per unit, K = ceil(q * values), by sorting everything."""
    v = a.transpose(0, 1).reshape(a.shape[1], -1)
    k = math.ceil(q * v.shape[1])
    return v.sort(1, descending=True).values[:, k - 1]


@pytest.mark.parametrize("q", [0.005, 0.05, 0.3])
def test_threshold_is_exact_for_any_batching_and_merge_order(q):
    a = acts(n=40)
    ref = exact_threshold(a, q)
    for sizes in ([40], [1] * 40, [7, 13, 20]):
        tq = TopQuantile(n_items=40, q=q)
        start = 0
        for s in sizes:
            tq.update(a[start:start + s])
            start += s
        assert torch.equal(tq.threshold(), ref), sizes
    shards = [TopQuantile(n_items=40, q=q) for _ in range(3)]
    for i, s in enumerate(shards):
        s.update(a[i::3])
    merged = shards[2].merge(shards[0]).merge(shards[1])
    assert torch.equal(merged.threshold(), ref)
    # the definition: at most a share q strictly above, at least q at or above
    v = a.transpose(0, 1).reshape(a.shape[1], -1)
    t = ref[:, None]
    assert bool(((v > t).float().mean(1) < q).all())
    assert bool(((v >= t).float().mean(1) >= q - 1e-12).all())


def test_threshold_state_round_trip_and_limits():
    a = acts(n=8)
    tq = TopQuantile(n_items=8, q=0.1)
    tq.update(a[:4])
    again = TopQuantile(n_items=8, q=0.1)
    again.load_state_dict(tq.state_dict())
    again.update(a[4:])
    assert torch.equal(again.threshold(), exact_threshold(a, 0.1))
    with pytest.raises(ConvlensError, match="fewer images"):
        TopQuantile(n_items=1000, q=0.5, max_values=100).update(a)
    with pytest.raises(ConvlensError, match="n_items"):
        TopQuantile(n_items=0)
    with pytest.raises(ConvlensError, match="no activations"):
        TopQuantile(n_items=3).threshold()


def literal_iou(a, masks, t):
    """Bau et al.'s IoU, one image, unit, concept and pixel at a time."""
    n, u = a.shape[:2]
    c = masks.shape[1]
    inter = torch.zeros(u, c, dtype=torch.float64)
    m_size = torch.zeros(u, dtype=torch.float64)
    l_size = torch.zeros(c, dtype=torch.float64)
    for i in range(n):
        up = F.interpolate(a[i:i + 1], size=masks.shape[2:], mode="bilinear",
                           align_corners=False)[0]
        for k in range(u):
            m = up[k] >= t[k]
            m_size[k] += int(m.sum())
            for j in range(c):
                inter[k, j] += int((m & masks[i, j]).sum())
        for j in range(c):
            l_size[j] += int(masks[i, j].sum())
    out = torch.zeros(u, c, dtype=torch.float64)
    for k in range(u):
        for j in range(c):
            union = m_size[k] + l_size[j] - inter[k, j]
            out[k, j] = inter[k, j] / union if union > 0 else 0.0
    return out


def test_iou_equals_the_literal_formula_across_batches_chunks_and_shards():
    a = acts(n=9, u=7, h=4, w=4, seed=1)
    g = torch.Generator().manual_seed(2)
    masks = torch.rand(9, 3, 16, 16, generator=g) > 0.7
    masks[:, 2] = False  # a concept absent everywhere: IoU 0
    tq = TopQuantile(n_items=9, q=0.05)
    tq.update(a)
    t = tq.threshold()
    ref = literal_iou(a, masks, t)
    one = IoUCounts(t, unit_chunk=3)
    one.update(a[:4], masks[:4])
    one.update(a[4:], masks[4:])
    assert torch.allclose(one.iou(), ref, atol=1e-12)
    other = IoUCounts(t, unit_chunk=64)
    other.update(a[4:], masks[4:])
    part = IoUCounts(t)
    part.update(a[:4], masks[:4])
    assert torch.allclose(other.merge(part).iou(), ref, atol=1e-12)
    assert bool((one.iou()[:, 2] == 0).all())


def test_iou_closed_form_and_detectors():
    """A unit that fires exactly on a concept's square has IoU 1 with it; one that fires on
    half of it and nothing else has 0.5; the detector rule and unique counts follow."""
    a = torch.zeros(1, 2, 8, 8)
    a[0, 0, 2:6, 2:6] = 1.0        # unit 0: the square
    a[0, 1, 2:6, 2:4] = 1.0        # unit 1: its left half
    masks = torch.zeros(1, 2, 8, 8, dtype=torch.bool)
    masks[0, 0, 2:6, 2:6] = True   # concept "square"
    masks[0, 1, 0, 0] = True       # concept "corner"
    counts = IoUCounts(torch.tensor([0.5, 0.5]))
    counts.update(a, masks)   # same resolution: the upsampling is the identity
    iou = counts.iou()
    assert iou[0, 0] == 1.0 and iou[1, 0] == 0.5 and iou[0, 1] == 0.0
    d = detectors(iou, ["square", "corner"], {"square": "shape", "corner": "texture"})
    assert [u["concept"] for u in d["units"]] == ["square", "square"]
    assert d["unique"] == {"shape": 1}


def test_top_items_by_max_activation_any_batching_ties_and_nan():
    """Dissection's figure: each unit's top items by max activation, the same whatever the
    batches, shards and merge order, ties to the smaller item, NaN last (issue 27)."""
    from convlens.techniques.concepts.examples import TopItems

    g = torch.Generator().manual_seed(1)
    score = torch.randint(0, 6, (30, 4), generator=g).float()  # many ties
    score[3, 2] = float("nan")
    score[:, 3] = float("nan")                                 # a unit of NaN only: items 0..k-1
    items = torch.arange(100, 130)
    s = torch.nan_to_num(score, nan=-float("inf")).t()
    ref = torch.stack([torch.tensor(sorted(range(30), key=lambda n: (-s[u, n].item(), n))[:5])
                       for u in range(4)]) + 100
    whole = TopItems(5)
    whole.update(score, items)
    assert torch.equal(whole.item, ref)
    assert torch.equal(whole.score, s.gather(1, ref - 100))
    for cuts in ([0, 1, 30], [0, 7, 19, 30], [0, 13, 30]):
        parts = []
        for a, b in zip(cuts, cuts[1:]):
            t = TopItems(5)
            t.update(score[a:b], items[a:b])
            parts.append(t)
        merged = TopItems(5)
        for t in reversed(parts):
            merged.merge(t)
        back = TopItems(5)
        back.load_state_dict(merged.state_dict())
        assert torch.equal(back.item, ref) and torch.equal(back.score, whole.score), cuts
