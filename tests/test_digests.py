"""The built-in datasets' bytes, pinned: a sha256 of the pixels and one of the ground truth.

`builtin:shapes` and `builtin:stamps` promise that item ``i`` of a split is the same bytes in
any process and call order; these digests pin those bytes across code changes (refactors of
the renderers must change no pixel). If a change is *meant* to alter the data, run
``python tests/test_digests.py`` and paste the digests it prints, saying why in the commit.

What is hashed, for the first ``n`` items of a split at one image size:

* pixels: the uint8 images, exactly (``render``'s; ``render_batch`` must give the same bytes);
* ground truth: label, mask (exact bytes), box, keypoints (shapes: also ``shape_mask`` and
  ``shape_keypoints``) or stamp, and attributes. Floats are written with 6 significant digits
  (``%.6g``) before hashing.

On one arithmetic only. The shapes renderer computes in float32 before quantising, partly
through BLAS (the noise background's upsampling, the background luminance under the object)
and numpy's SIMD loops; another BLAS kernel or SIMD width rounds some last bits differently.
Measured here (AMD EPYC, OpenBLAS 0.3.31): OpenBLAS's Haswell kernel instead of its SkylakeX
one moves 1 in 1,000 pixels by one level (54 of 400 test items) and measured floats such as
``value`` and ``contrast`` in their 6th digit, and numpy's AVX2 loops switched off move a
``contrast`` across a 6-digit rounding boundary. So the digests are computed in a child
process with the arithmetic pinned to code that is the same on every x86-64 CPU: OpenBLAS's
generic kernel (``OPENBLAS_CORETYPE=Prescott``, one thread) and numpy's baseline loops (every
dispatched SIMD target switched off with ``NPY_DISABLE_CPU_FEATURES``). Where that cannot be
pinned (numpy not on OpenBLAS's x86-64 dynamic build, e.g. macOS's Accelerate or aarch64), the
tests are skipped with that reason. The stamps renderer (Pillow's fixed-point resampling, small
float32 products) gave the same digests under every kernel tried, but is checked the same way.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")
PINNED_BLAS = ("Katmai", "Prescott")  # what OpenBLAS reports for OPENBLAS_CORETYPE=Prescott

# (split, first n items, image size)
SHAPES_CASES = [("train", 32, 64), ("test", 32, 64), ("test", 16, 40), ("train", 8, 96)]
STAMPS_CASES = [("test", 16, 96), ("train", 16, 96), ("seen", 8, 96), ("test", 8, 64)]

DIGESTS = {
    # (dataset, split, n, size): (pixels, ground truth), under the pinned arithmetic
    ("shapes", "train", 32, 64): (
        "1e12144195c7ce278d6936cef159c1b173fe06858dccc7a430ed311552545a9e",
        "1a9f838801d9280c6db98e39dc4a64efce0a3231d944f639cf53bca7bd53fd04",
    ),
    ("shapes", "test", 32, 64): (
        "9ac7acec6ab26af70a05f203317b65924961cbe063958e0ab11ef1346c564308",
        "757374d30830b9a32dffad56509490f6d4b80542b628996f19d9dc689c640ab9",
    ),
    ("shapes", "test", 16, 40): (
        "de4ab57aef8ef0bc7c333745fd2f66f9865aa67a7b9110ad6126c25d64d88cbd",
        "e1f097a962912d1f569d8fb25045cf81dbe3c7c8b9434f827b93e6d99cca2a4f",
    ),
    ("shapes", "train", 8, 96): (
        "c0fe27bb48574cc30de8edcd958829f3ec3785f56df75214624b78784519e8aa",
        "1b09423ac6350664c2f937e173d4ac9229fc0f4dc81a5b6598953a01e16dd6ae",
    ),
    ("stamps", "test", 16, 96): (
        "329b96080556fde0da09cb1aa1e67fdaa301d40e6cae1fbbc3a8971e4847c979",
        "57b4f0232d5c8ed9d863ed35b502c24b375f1def4730b4bff9935530849dcded",
    ),
    ("stamps", "train", 16, 96): (
        "dc17d5794959e7d9a13a7e088fb645caeafd678d706b7ee5b199ade230b85228",
        "1eca7732f5d49292ddbf91f811e5b677755bcd21c3dee27eab9261125b230d2e",
    ),
    ("stamps", "seen", 8, 96): (
        "658c53d15fc94b25c5429ff208f12feaf0d4dfabf3797f9ee855f3569aa3ad18",
        "3c3a0206a0dc12673d1e1b2f71ce28eac55dce9787afe8509598303d6a85f08f",
    ),
    ("stamps", "test", 8, 64): (
        "51f61aa26ae61f2b02a03fc04d6d6a111dae89f475e4e749e9739e6203b666d3",
        "1728edcb862f449a7a58268703c0a81e152cde6eb2c924f2895cbfecdc7ab9c2",
    ),
}


def _plain(value):
    """JSON-able copy with every float as a 6-significant-digit string."""
    if isinstance(value, (float, np.floating)):
        return format(float(value), ".6g")
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    raise TypeError(f"cannot hash {type(value).__name__}")


def _truth_digest(records) -> str:
    h = hashlib.sha256()
    for mask, record in records:
        h.update(np.ascontiguousarray(mask, dtype=bool).tobytes())
        h.update(json.dumps(_plain(record), sort_keys=True).encode())
    return h.hexdigest()


def _pixel_digest(images) -> str:
    h = hashlib.sha256()
    for img in images:
        assert img.dtype == np.uint8
        h.update(np.ascontiguousarray(img).tobytes())
    return h.hexdigest()


def shapes_digests(split: str, n: int, size: int) -> tuple[str, str]:
    from convlens.data import shapes

    seed = {"train": shapes.TRAIN_SEED, "test": shapes.TEST_SEED}[split]
    items = [shapes.render(seed, i, size) for i in range(n)]
    batch, labels = shapes.render_batch(seed, range(n), size)
    assert np.array_equal(batch, np.stack([it.image for it in items]))
    assert labels.tolist() == [it.label for it in items]
    records = []
    for i, it in enumerate(items):
        records.append((it.mask, {"label": it.label, "box": it.box, "keypoints": it.keypoints,
                                  "attributes": it.attributes}))
        records.append((shapes.shape_mask(seed, i, size),
                        {"all_keypoints": shapes.shape_keypoints(seed, i, size)}))
    return _pixel_digest(it.image for it in items), _truth_digest(records)


def stamps_digests(split: str, n: int, size: int) -> tuple[str, str]:
    from convlens.data import stamps

    items = [stamps.render(split, i, size) for i in range(n)]
    batch, labels = stamps.render_batch(split, range(n), size)
    assert np.array_equal(batch, np.stack([it.image for it in items]))
    assert labels.tolist() == [it.label for it in items]
    records = [(it.mask, {"label": it.label, "box": it.box, "stamp": it.stamp,
                          "attributes": it.attributes}) for it in items]
    return _pixel_digest(it.image for it in items), _truth_digest(records)


def _have_stamps() -> bool:
    from convlens.data import stamps
    from convlens.errors import ConvlensError

    try:
        stamps.find_root()
        return True
    except ConvlensError:
        return False


def _blas_core() -> str:
    """The BLAS kernel numpy runs on ('' when it is not OpenBLAS)."""
    from threadpoolctl import threadpool_info

    for lib in threadpool_info():
        if lib.get("internal_api") == "openblas":
            return str(lib.get("architecture") or "")
    return ""


def _numpy_dispatch() -> list[str]:
    try:
        from numpy._core import _multiarray_umath as mu
    except ImportError:  # numpy 1.x
        from numpy.core import _multiarray_umath as mu
    return list(mu.__cpu_dispatch__)


def _all_digests() -> dict:
    out = {"blas": _blas_core(), "digests": {}}
    for split, n, size in SHAPES_CASES:
        out["digests"][repr(("shapes", split, n, size))] = shapes_digests(split, n, size)
    if _have_stamps():
        for split, n, size in STAMPS_CASES:
            out["digests"][repr(("stamps", split, n, size))] = stamps_digests(split, n, size)
    return out


def pinned_digests() -> dict:
    """`_all_digests` computed in a child process under the pinned arithmetic."""
    env = dict(os.environ, OPENBLAS_CORETYPE="Prescott", OPENBLAS_NUM_THREADS="1",
               NPY_DISABLE_CPU_FEATURES=",".join(_numpy_dispatch()),
               PYTHONPATH=os.pathsep.join([SRC, *filter(None, [os.environ.get("PYTHONPATH")])]))
    run = subprocess.run([sys.executable, __file__, "--json"], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def pinned():
    got = pinned_digests()
    if got["blas"] not in PINNED_BLAS:
        kernel = got["blas"] or "not OpenBLAS"
        pytest.skip("the digests hold under OpenBLAS's generic x86-64 kernel and numpy's "
                    f"baseline loops; numpy's BLAS here: {kernel!r}")
    return got["digests"]


@pytest.mark.parametrize("split,n,size", SHAPES_CASES)
def test_shapes_bytes_pinned(pinned, split, n, size):
    pixels, truth = pinned[repr(("shapes", split, n, size))]
    want_pixels, want_truth = DIGESTS[("shapes", split, n, size)]
    assert pixels == want_pixels, f"builtin:shapes {split} items 0..{n - 1} at {size} px: pixels"
    assert truth == want_truth, f"builtin:shapes {split} items 0..{n - 1} at {size} px: truth"


@pytest.mark.parametrize("split,n,size", STAMPS_CASES)
def test_stamps_bytes_pinned(pinned, split, n, size):
    key = repr(("stamps", split, n, size))
    if key not in pinned:
        pytest.skip("tuxpaint-stamps-default not installed "
                    "(apt-get install tuxpaint-stamps-default)")
    pixels, truth = pinned[key]
    want_pixels, want_truth = DIGESTS[("stamps", split, n, size)]
    assert pixels == want_pixels, f"builtin:stamps {split} items 0..{n - 1} at {size} px: pixels"
    assert truth == want_truth, f"builtin:stamps {split} items 0..{n - 1} at {size} px: truth"


if __name__ == "__main__":
    if sys.argv[1:] == ["--json"]:  # the child: digests under the arithmetic it was given
        print(json.dumps(_all_digests()))
    else:  # print the pinned digests in the form of DIGESTS
        got = pinned_digests()
        print(f"# BLAS kernel: {got['blas']!r}")
        for key, value in got["digests"].items():
            print(f"    {key}: {tuple(value)!r},")
