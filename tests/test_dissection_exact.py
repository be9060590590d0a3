"""Network dissection's fast paths (issue 27, speed) against the literal computations they
replace: the overlap counts of `bilinear.count_above` against thresholding
``F.interpolate``'s output, `IoUCounts` against the former counting, `concept_codes` against
the former per-item masks, and the colour table against naming each pixel in float64. The
counts are integers and the names indices: every comparison is exact."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from convlens.techniques.concepts import labels
from convlens.techniques.concepts.bilinear import (
    Codes,
    count_above,
    exact_weights,
    literal_above,
    source_index,
)
from convlens.techniques.concepts.dissection import IoUCounts, mask_codes
from convlens.techniques.concepts.labels import (
    PROTOTYPES,
    Vocabulary,
    colour_names,
    concept_codes,
    concept_masks,
)


def thresholded(a, t, codes, k, chunk=64):
    """The literal count: each chunk of maps upsampled, cut at t, counted per code."""
    units = a.shape[1]
    up = torch.cat([F.interpolate(a[:, c:c + chunk], size=codes.shape[1:], mode="bilinear",
                                  align_corners=False) for c in range(0, units, chunk)], 1)
    key = torch.arange(units)[None, :, None, None] * k + codes[:, None]
    return torch.bincount(key[up >= t[None, :, None, None]], minlength=units * k).view(units, k)


def case(g, trial):
    """Maps of every kind: normal, ReLU'd, few integer values (ties at T), T = 0 over
    ReLU zeros; sizes up and down, square or not, and outputs on both sides of the 128
    pixels where torch changes kernel."""
    n, u = int(torch.randint(1, 5, (1,), generator=g)), int(torch.randint(1, 9, (1,), generator=g))
    h, w = (int(v) for v in torch.randint(1, 9, (2,), generator=g))
    big_h, big_w = (int(v) for v in torch.randint(1, 40, (2,), generator=g))
    if trial % 3 == 0:
        big_h, big_w = big_h + 100, big_w + 60
    kind = trial % 4
    a = torch.randn(n, u, h, w, generator=g)
    if kind == 1:
        a = a.relu()
    if kind == 2:
        a = torch.randint(0, 3, (n, u, h, w), generator=g).float()
    flat = a.transpose(0, 1).reshape(u, -1)
    pick = int(torch.randint(0, flat.shape[1], (1,), generator=g))
    t = flat.sort(1, descending=True).values[:, pick]  # a value of the maps: ties
    if kind == 3:
        t = torch.zeros(u)
    codes = torch.randint(0, 5, (n, big_h, big_w), generator=g)
    return a, t, codes


def test_count_above_equals_thresholding_the_upsampled_maps():
    g = torch.Generator().manual_seed(0)
    for trial in range(160):
        a, t, codes = case(g, trial)
        chunk = int(torch.randint(1, 5, (1,), generator=g))
        got = count_above(a, t, codes, 5, unit_chunk=chunk)
        assert torch.equal(got, thresholded(a, t, codes, 5, chunk)), trial
        peak = a.amax((2, 3))  # the caller's maxima: the same counts
        assert torch.equal(count_above(a, t, Codes(codes, 5), peak=peak),
                           thresholded(a, t, codes, 5)), trial


@pytest.mark.slow
def test_count_above_on_real_sizes_and_non_finite_maps():
    g = torch.Generator().manual_seed(1)
    for h, size in [(3, 96), (6, 96), (12, 96), (48, 96), (7, 224), (13, 224), (8, 64)]:
        a = torch.randn(3, 70, h, h, generator=g).relu() ** 2  # 70 units: two chunks of 64
        flat = a.transpose(0, 1).reshape(70, -1)
        t = flat.sort(1, descending=True).values[:, max(1, flat.shape[1] // 100)]
        codes = torch.randint(0, 7, (3, size, size), generator=g)
        assert torch.equal(count_above(a, t, codes, 7), thresholded(a, t, codes, 7)), h
    a[0, 3, 1, 1], a[1, 5, 0, 2] = float("nan"), float("inf")  # the literal way for this layer
    a[2, 7, 2, 2] = -float("inf")
    c = Codes(codes, 7)
    assert torch.equal(count_above(a, t, c), thresholded(a, t, codes, 7))
    assert torch.equal(literal_above(a, t, c), thresholded(a, t, codes, 7))


def test_source_index_is_torchs_weighting():
    """The scales of real networks (a power of two) round alike however torch's kernels
    round; `exact_weights` holds for them (elsewhere a larger margin covers the difference)."""
    for n_in, n_out in [(3, 96), (6, 96), (48, 96), (7, 224), (14, 224), (8, 64), (5, 5)]:
        assert exact_weights(n_in, n_out), (n_in, n_out)
    i0, w1 = source_index(3, 96)
    assert int(i0[0]) == 0 and float(w1[0]) == 0.0 and int(i0[-1]) == 2  # clamped at both ends


def old_iou_update(counts: IoUCounts, a, masks):
    """The former `IoUCounts.update`: every map upsampled, thresholded, counted by a float32
    product with the masks (exact below 2^24 pixels per batch)."""
    size = masks.shape[2:]
    lab = masks.to(torch.float32).transpose(0, 1).reshape(masks.shape[1], -1)
    if counts.inter is None:
        counts.inter = torch.zeros(len(counts.t), masks.shape[1], dtype=torch.float64)
        counts.concept_size = torch.zeros(masks.shape[1], dtype=torch.float64)
    counts.concept_size += lab.sum(1).double()
    for u0 in range(0, a.shape[1], counts.unit_chunk):
        u1 = min(a.shape[1], u0 + counts.unit_chunk)
        up = F.interpolate(a[:, u0:u1].float(), size=size, mode="bilinear", align_corners=False)
        on = (up >= counts.t[u0:u1, None, None]).transpose(0, 1).reshape(u1 - u0, -1).float()
        counts.unit_size[u0:u1] += on.sum(1).double()
        counts.inter[u0:u1] += (on @ lab.T).double()


def test_iou_counts_equal_the_former_counting():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(12, 9, 6, 6, generator=g).relu()
    masks = torch.rand(12, 4, 48, 40, generator=g) > 0.6
    masks[:, 3] = False
    t = a.transpose(0, 1).reshape(9, -1).sort(1, descending=True).values[:, 20]
    new, old = IoUCounts(t, unit_chunk=4), IoUCounts(t, unit_chunk=4)
    for s in (slice(0, 5), slice(5, 12)):
        new.update(a[s], masks[s])
        old_iou_update(old, a[s], masks[s])
    for f in ("inter", "unit_size", "concept_size"):
        assert torch.equal(getattr(new, f), getattr(old, f)), f
    assert torch.equal(new.iou(), old.iou())
    codes, table = mask_codes(masks)
    assert torch.equal(table[codes].permute(0, 3, 1, 2), masks)


def old_concept_masks(vocab, labels_, masks, backgrounds, pixels, classes, own=None, size=None):
    """The former `concept_masks`: item by item, concept by concept."""
    idx = vocab.index()
    size = masks.shape[1:] if masks is not None else pixels.shape[2:] if pixels is not None \
        else size
    out = torch.zeros(len(labels_), len(vocab.names), *size, dtype=torch.bool)
    for i in range(len(labels_)):
        m = masks[i].bool() if masks is not None else None
        lab = int(labels_[i])
        if m is not None and 0 <= lab < len(classes):
            k = idx.get(f"object:{classes[lab]}")
            if k is not None:
                out[i, k] = m
        bg = backgrounds[i] if backgrounds is not None else None
        if m is not None and bg is not None:
            k = idx.get(f"texture:{bg}")
            if k is not None:
                out[i, k] = ~m
    if pixels is not None and pixels.shape[1] == 3 and any(
            n.startswith("colour:") for n in vocab.names):
        names = colour_names(pixels)
        for j, c in enumerate(PROTOTYPES):
            k = idx.get(f"colour:{c}")
            if k is not None:
                out[:, k] = names == j
    for i, given in enumerate(own or ()):
        for name, m in (given or {}).items():
            k = idx.get(name)
            if k is not None:
                out[i, k] |= torch.as_tensor(m).bool()
    return out


def test_concept_codes_equal_the_former_masks():
    g = torch.Generator().manual_seed(4)
    classes = ["circle", "square", "star"]
    n, size = 6, (10, 12)
    masks = torch.rand(n, *size, generator=g) > 0.5
    pixels = torch.rand(n, 3, *size, generator=g)
    own = [{"part:a": torch.rand(*size, generator=g) > 0.7,
            "texture:grass": torch.rand(*size, generator=g) > 0.5} if i % 2 else {}
           for i in range(n)]
    own[3]["part:b"] = torch.rand(*size, generator=g) > 0.3
    cases = [
        (Vocabulary.build(classes, ["grass", "noise"]), masks, pixels, None),
        (Vocabulary.build(classes, ["grass"], colours=False), masks, pixels, None),
        (Vocabulary.build(classes, ["grass", "noise"]), None, pixels, None),
        (Vocabulary.build(classes, ["grass"], concepts=["part:a", "part:b", "texture:grass"]),
         masks, pixels, own),
        (Vocabulary.build(classes, [], colours=False, concepts=["part:a", "part:b"]),
         None, None, own),
    ]
    labels_ = torch.tensor([0, 2, -1, 1, 5, 0])
    backgrounds = ["grass", None, "noise", "grass", "mud", "noise"]
    for j, (vocab, m, px, extra) in enumerate(cases):
        want = old_concept_masks(vocab, labels_, m, backgrounds, px, classes, extra, size)
        codes, table = concept_codes(vocab, labels_, m, backgrounds, px, classes, extra, size)
        assert torch.equal(table[codes].permute(0, 3, 1, 2), want), j
        assert torch.equal(concept_masks(vocab, labels_, m, backgrounds, px, classes, extra,
                                         size), want), j
        assert len(torch.unique(table, dim=0)) == len(table)  # one row per distinct set


@pytest.mark.slow
def test_colour_table_names_equal_the_direct_names():
    """The 2^24 colours' table (built here, about 1.5 s): the same names as computing each
    pixel, for 8-bit colours (as the images' pixels are), the colours near a tie, values
    between 8-bit levels, and the test images of builtin:shapes and builtin:stamps."""
    from convlens import load_data, load_model
    from convlens.data import Loader
    from convlens.errors import ConvlensError

    g = torch.Generator().manual_seed(5)
    key = torch.randint(0, 256 ** 3, (100_000,), generator=g)
    near = (labels._colour_table() == labels.NEAR).nonzero().squeeze(1)
    key = torch.cat([key, near[torch.randint(0, len(near), (20_000,), generator=g)]])
    rgb = torch.stack([key // 65536, key // 256 % 256, key % 256]).float() / 255
    batches = [rgb.reshape(1, 3, 1, -1), torch.rand(1, 3, 50, 50, generator=g),
               rgb.reshape(1, 3, 1, -1) + 3e-6]  # a little off the 8-bit levels
    for model, data in [("builtin:shapes-net", "builtin:shapes:test"),
                        ("builtin:stamps-net", "builtin:stamps:test")]:
        lens = load_model(model)
        try:
            ds = load_data(data, lens=lens)
        except ConvlensError:  # the photo stamps are not installed
            continue
        b = next(iter(Loader(ds, batch_size=64, indices=range(64))))
        std, mean = (torch.tensor(v)[:, None, None] for v in (lens.std, lens.mean))
        batches.append((b.images * std + mean).clamp(0, 1))
    for px in batches:
        assert torch.equal(colour_names(px, table=True), colour_names(px, table=False))
