"""builtin:shapes -- procedural shapes with exact ground truth (convlens.data.shapes).

Keypoint convention under test: ``item.keypoints`` holds only the keypoints that lie
inside the image (0 <= x, y < size), in continuous pixel coordinates (pixel column x
covers [x, x+1)); ``shape_keypoints`` holds all of them.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from convlens.data import shapes as S
from convlens.data.shapes import (
    BACKGROUNDS,
    SHAPE_CLASSES,
    TEST_SEED,
    TRAIN_SEED,
    ShapeItem,
    ShapesDataset,
    render,
    render_batch,
    shape_keypoints,
    shape_mask,
)
from convlens.data.shapes import geometry as G

N_ITEMS = 500
SRC = str(Path(__file__).resolve().parents[1] / "src")

# keypoints at corners with an interior angle < 90 deg: the coverage >= 0.5 mask
# retracts from such a corner by up to ~2 px
SHARP = {("star", "tip"), ("triangle", "v"), ("arrow", "tip"), ("arrow", "barb_left"),
         ("arrow", "barb_right")}


@pytest.fixture(scope="module")
def items():
    return [render(TRAIN_SEED, i) for i in range(N_ITEMS)]


def _digest(item: ShapeItem) -> str:
    h = hashlib.sha256()
    h.update(item.image.tobytes())
    h.update(item.mask.tobytes())
    h.update(repr((item.label, item.box, sorted(item.keypoints.items()),
                   sorted(item.attributes.items()))).encode())
    return h.hexdigest()


def test_constants():
    assert SHAPE_CLASSES == ("circle", "square", "triangle", "star", "cross", "hexagon",
                             "ring", "arrow")
    assert BACKGROUNDS == ("flat", "gradient", "noise", "stripes", "texture")
    assert (TRAIN_SEED, TEST_SEED) == (0, 1)


def test_item_types(items):
    keys = {"scale", "cx", "cy", "rotation", "hue", "saturation", "value", "contrast",
            "background", "clutter", "occluded", "truncated"}
    for i, it in enumerate(items[:40]):
        assert it.image.shape == (64, 64, 3) and it.image.dtype == np.uint8
        assert it.mask.shape == (64, 64) and it.mask.dtype == bool
        assert it.label == i % 8 and isinstance(it.label, int)
        assert len(it.box) == 4 and all(isinstance(v, int) for v in it.box)
        assert set(it.attributes) == keys
        assert "center" in it.keypoints or it.attributes["truncated"] > 0


def test_mask_inside_tight_box(items):
    for it in items:
        assert it.mask.any()
        x0, y0, x1, y1 = it.box
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
        inside = np.zeros_like(it.mask)
        inside[y0:y1, x0:x1] = True
        assert not (it.mask & ~inside).any()  # every mask pixel lies in the box
        # tight: every edge row / column of the box holds a mask pixel
        assert it.mask[y0, x0:x1].any() and it.mask[y1 - 1, x0:x1].any()
        assert it.mask[y0:y1, x0].any() and it.mask[y0:y1, x1 - 1].any()


def test_mask_is_visible_part_of_full_mask(items):
    for i, it in enumerate(items[:120]):
        full = shape_mask(TRAIN_SEED, i)
        assert not (it.mask & ~full).any()
        if it.attributes["occluded"] == 0:
            assert np.array_equal(it.mask, full)
        # visible pixel area ~ (1 - occluded - truncated) of the full area
        a = it.attributes
        area = a["scale"] * 64 * 64
        assert abs(it.mask.sum() / area - (1 - a["occluded"] - a["truncated"])) < 0.12


@pytest.mark.slow
def test_keypoints_inside_image_and_on_outline(items):
    for i, it in enumerate(items):
        name = SHAPE_CLASSES[it.label]
        full = shape_mask(TRAIN_SEED, i)
        boundary = full & ~ndi.binary_erosion(full, border_value=0)
        by, bx = np.nonzero(boundary)
        centres = np.stack([bx + 0.5, by + 0.5], axis=1)
        all_kp = shape_keypoints(TRAIN_SEED, i)
        expected = {k for k, (x, y) in all_kp.items() if 0 <= x < 64 and 0 <= y < 64}
        assert set(it.keypoints) == expected
        for k, (x, y) in it.keypoints.items():
            assert 0 <= x < 64 and 0 <= y < 64
            if k == "center":
                assert (x, y) == (it.attributes["cx"], it.attributes["cy"])
                continue
            tol = 2.5 if (name, k.rstrip("0123456789")) in SHARP else 1.6
            d = np.hypot(centres[:, 0] - x, centres[:, 1] - y).min()
            assert d <= tol, (i, name, k, d)


def test_keypoint_names():
    expect = {
        "circle": {"top", "right", "bottom", "left"},
        "square": {"v0", "v1", "v2", "v3"},
        "triangle": {"v0", "v1", "v2"},
        "star": {f"tip{i}" for i in range(5)} | {f"notch{i}" for i in range(5)},
        "cross": {"top", "right", "bottom", "left"},
        "hexagon": {f"v{i}" for i in range(6)},
        "ring": {"top", "right", "bottom", "left"},
        "arrow": {"tip", "tail", "barb_left", "barb_right"},
    }
    for label, name in enumerate(SHAPE_CLASSES):
        assert set(shape_keypoints(TRAIN_SEED, label)) == expect[name] | {"center"}


def test_geometry_of_keypoints():
    # the keypoints move rigidly with the shape: distances from the centre scale with size
    for label in range(8):
        for size in (64, 96):
            it = render(TRAIN_SEED, label + 8 * 7, size)
            kp = shape_keypoints(TRAIN_SEED, label + 8 * 7, size)
            cx, cy = kp["center"]
            r = {k: math.hypot(x - cx, y - cy) for k, (x, y) in kp.items() if k != "center"}
            radius = size * math.sqrt(it.attributes["scale"] / G._SHAPES[label].area)
            name = SHAPE_CLASSES[label]
            if name in ("circle", "ring", "square", "triangle", "hexagon", "cross"):
                assert all(abs(v - radius) < 1e-6 for v in r.values())
            if name == "star":
                assert all(abs(r[f"tip{i}"] - radius) < 1e-6 for i in range(5))
                assert all(abs(r[f"notch{i}"] - 0.45 * radius) < 1e-6 for i in range(5))
            if name == "arrow":
                assert abs(math.dist(kp["tip"], kp["tail"]) - 2 * radius) < 1e-6


def test_same_item_for_same_seed_index():
    a, b = render(TRAIN_SEED, 123), render(TRAIN_SEED, 123)
    assert a.image.tobytes() == b.image.tobytes()
    assert _digest(a) == _digest(b)
    # independent of call order / what was rendered before
    render(TRAIN_SEED, 5)
    render_batch(TEST_SEED, range(20))
    assert _digest(render(TRAIN_SEED, 123)) == _digest(a)


def test_different_index_and_split():
    a = render(TRAIN_SEED, 10)
    assert render(TRAIN_SEED, 18).image.tobytes() != a.image.tobytes()  # same class
    assert render(TEST_SEED, 10).image.tobytes() != a.image.tobytes()
    assert render(TEST_SEED, 10).label == a.label
    tr = {render(TRAIN_SEED, i).image.tobytes() for i in range(64)}
    te = {render(TEST_SEED, i).image.tobytes() for i in range(64)}
    assert len(tr) == 64 and len(te) == 64 and not tr & te


def test_render_batch_matches_render():
    idx = [0, 7, 3, 1000, 12345, 64]
    images, labels = render_batch(TEST_SEED, idx)
    assert images.shape == (6, 64, 64, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and list(labels) == [i % 8 for i in idx]
    for n, i in enumerate(idx):
        assert np.array_equal(images[n], render(TEST_SEED, i).image)
    images2, _ = render_batch(TEST_SEED, np.array(idx), size=40)
    assert images2.shape == (6, 40, 40, 3)


def test_attribute_ranges(items):
    att = {k: [it.attributes[k] for it in items] for k in items[0].attributes}
    scale = np.array(att["scale"])
    assert scale.min() >= 0.015 and scale.max() <= 0.65
    assert np.quantile(scale, 0.1) < 0.035 and scale.max() > 0.4  # spans the range
    occ, tr = np.array(att["occluded"]), np.array(att["truncated"])
    assert occ.min() >= 0 and occ.max() <= 0.45 and tr.min() >= 0 and tr.max() <= 0.4
    assert 0.15 < (occ > 0).mean() < 0.35 and 0.08 < (tr > 0).mean() < 0.25
    assert (occ + tr).max() <= 0.6
    assert set(att["clutter"]) <= {0, 1, 2, 3, 4} and len(set(att["clutter"])) == 5
    assert set(att["background"]) == set(BACKGROUNDS)
    assert set(it.label for it in items) == set(range(8))
    assert all(Counter(it.label for it in items)[c] >= N_ITEMS // 8 for c in range(8))
    contrast = np.array(att["contrast"])
    assert contrast.min() > 0.1 and contrast.max() <= 1 and np.median(contrast) > 0.35
    for k in ("hue", "saturation", "value"):
        v = np.array(att[k])
        assert v.min() >= 0 and v.max() <= 1
    rot = np.array(att["rotation"])
    assert rot.min() >= 0 and rot.max() < 360
    cx, cy = np.array(att["cx"]), np.array(att["cy"])
    inside = tr == 0
    assert (cx[inside] > 0).all() and (cx[inside] < 64).all()
    assert (cy[inside] > 0).all() and (cy[inside] < 64).all()


@pytest.mark.slow
def test_hard_cases_same_rates_in_both_splits():
    test_items = [render(TEST_SEED, i).attributes for i in range(400)]
    train_items = [render(TRAIN_SEED, i).attributes for i in range(400)]
    for key in ("occluded", "truncated"):
        a = np.mean([t[key] > 0 for t in train_items])
        b = np.mean([t[key] > 0 for t in test_items])
        assert abs(a - b) < 0.08
    a = np.mean([t["scale"] < 0.04 for t in train_items])
    b = np.mean([t["scale"] < 0.04 for t in test_items])
    assert abs(a - b) < 0.1


def test_other_size_scales_geometry():
    for i in range(24):
        a, b = render(TRAIN_SEED, i, 64), render(TRAIN_SEED, i, 96)
        assert b.image.shape == (96, 96, 3) and b.mask.shape == (96, 96)
        assert a.label == b.label
        for k in ("scale", "rotation", "hue", "background", "clutter"):
            assert a.attributes[k] == b.attributes[k]
        assert abs(a.attributes["cx"] / 64 - b.attributes["cx"] / 96) < 0.03
        assert abs(a.attributes["cy"] / 64 - b.attributes["cy"] / 96) < 0.03
        # the object's visible area is the same fraction of the image
        assert abs(a.mask.mean() - b.mask.mean()) < 0.02 + 0.1 * a.mask.mean()
        assert b.box[2] - b.box[0] == pytest.approx(1.5 * (a.box[2] - a.box[0]), abs=3)


@pytest.mark.slow
def test_deterministic_across_processes():
    idx = [0, 1, 2, 3, 17, 999]
    local = [_digest(render(TEST_SEED, i)) for i in idx]
    code = (
        "import sys, hashlib; sys.path.insert(0, sys.argv[1])\n"
        "from convlens.data.shapes import render\n"
        "for i in map(int, sys.argv[2:]):\n"
        "    it = render(1, i)\n"
        "    h = hashlib.sha256(); h.update(it.image.tobytes()); h.update(it.mask.tobytes())\n"
        "    h.update(repr((it.label, it.box, sorted(it.keypoints.items()),\n"
        "                   sorted(it.attributes.items()))).encode())\n"
        "    print(h.hexdigest())\n"
    )
    out = subprocess.run([sys.executable, "-c", code, SRC, *map(str, idx)], check=True,
                         capture_output=True, text=True, timeout=120).stdout.split()
    assert out == local


def test_antialiased_coverage_matches_supersampling():
    """The SDF rasteriser agrees with 8x8-supersampled exact point-in-shape coverage."""
    from skimage.measure import points_in_poly

    rng = np.random.default_rng(0)
    ss = 8
    off = (np.arange(ss) + 0.5) / ss - 0.5
    for shape in G._SHAPES:
        for _ in range(3):
            radius = rng.uniform(4.5, 20)
            ang = rng.uniform(0, 2 * np.pi)
            c, s = math.cos(ang), math.sin(ang)
            fx, fy = rng.random(2)
            n = int(radius) + 3
            X = (np.arange(-n, n, dtype=np.float32) + 0.5 - fx)[None, :]
            Y = (np.arange(-n, n, dtype=np.float32) + 0.5 - fy)[:, None]
            cov = G._coverage_from_sdf(G._sdf(shape, radius, c, s, X, Y))
            xx, yy = np.meshgrid((X[0][:, None] + off).ravel(), (Y[:, 0][:, None] + off).ravel())
            ux, uy = (c * xx - s * yy) / radius, (s * xx + c * yy) / radius  # back to unit shape
            if shape.kind == "disc":
                inside = ux**2 + uy**2 <= 1
            elif shape.kind == "ring":
                r2 = ux**2 + uy**2
                inside = (r2 <= 1) & (r2 >= S.RING_INNER**2)
            else:
                pts = np.stack([ux.ravel(), uy.ravel()], 1)
                inside = points_in_poly(pts, shape.outline).reshape(ux.shape)
            truth = inside.reshape(2 * n, ss, 2 * n, ss).mean(axis=(1, 3))
            err = np.abs(cov - truth)
            # summed error per pixel of outline length: ~0.03 here; a seam between
            # the convex parts of a shape would add ~0.1 or more
            o = shape.outline
            perimeter = np.linalg.norm(np.roll(o, -1, 0) - o, axis=1).sum() * radius
            if shape.kind == "ring":
                perimeter *= 1 + S.RING_INNER
            assert err.sum() / perimeter < 0.06, shape.name
            assert err.max() < 0.45, shape.name  # (largest errors sit at sharp corners)
            assert cov.sum() == pytest.approx(shape.area * radius**2, rel=0.03)


def test_shape_areas():
    areas = {d.name: d.area for d in G._SHAPES}
    assert areas["circle"] == pytest.approx(math.pi)
    assert areas["square"] == pytest.approx(2.0)
    assert areas["hexagon"] == pytest.approx(1.5 * math.sqrt(3))
    assert areas["ring"] == pytest.approx(math.pi * (1 - 0.55**2))
    assert areas["cross"] == pytest.approx(20 / 9)


def test_invalid_arguments():
    with pytest.raises(ValueError):
        render(-1, 0)
    with pytest.raises(ValueError):
        render(0, -3)
    with pytest.raises(ValueError):
        render(0, 0, size=8)


def test_dataset_view():
    ds = ShapesDataset("test", length=10)
    img, label = ds[3]
    assert len(ds) == 10 and label == 3 and np.array_equal(img, render(TEST_SEED, 3).image)
    assert ds.item(3).label == 3
    with pytest.raises(IndexError):
        ds[10]
    with pytest.raises(ValueError):
        ShapesDataset("val")
