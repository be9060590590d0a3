"""Data specs: folders and manifests, every kind of bad file skipped, every mode converted."""
import io
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from convlens import ConvlensError, Lens, load_data
from convlens.data import Loader, Skipped, SkippedImageWarning
from convlens.data.images import open_image, to_channels
from convlens.errors import BadImage


def save(img: Image.Image, path, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def rgb(seed=0, size=(20, 16)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture
def bad_manifest(tmp_path):
    """Two good images, a truncated JPEG, a zero-byte file and a text file named .png."""
    save(rgb(0), tmp_path / "img" / "good0.png")
    save(rgb(1), tmp_path / "img" / "good1.jpg", quality=90)
    full = io.BytesIO()
    rgb(2, (64, 64)).save(full, "JPEG", quality=95)
    (tmp_path / "img" / "truncated.jpg").write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    (tmp_path / "img" / "empty.png").write_bytes(b"")
    (tmp_path / "img" / "text.png").write_text("this is not a picture\n")
    df = pd.DataFrame({
        "path": ["img/good0.png", "img/truncated.jpg", "img/empty.png", "img/text.png",
                 "img/good1.jpg"],
        "label": ["cat", "dog", "cat", "dog", "dog"],
        "scale": [0.1, 0.2, 0.3, 0.4, 0.5],
        "x0": [1, 1, 1, 1, 2], "y0": [2, 2, 2, 2, 3], "x1": [5, 5, 5, 5, 6], "y1": [6, 6, 6, 6, 7],
        "kp_eye_x": [3.0] * 5, "kp_eye_y": [4.0] * 5,
    })
    df.to_csv(tmp_path / "manifest.csv", index=False)
    return tmp_path / "manifest.csv"


def test_manifest_skips_three_bad_files(bad_manifest):
    lens = Lens(torch.nn.Identity(), mean=(0.5,), std=(0.5,), input_size=(3, 8, 8))
    ds = load_data(bad_manifest, lens=lens)
    assert ds.classes == ["cat", "dog"] and len(ds) == 5
    loader = Loader(ds, batch_size=2)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        batches = list(loader)
    per_file = [x for x in w if issubclass(x.category, SkippedImageWarning)
                and str(x.message).startswith("skipped ")]
    assert len(per_file) == 3
    assert any("3 of 5 images skipped" in str(x.message) for x in w)
    assert len(loader.skipped) == 3
    reasons = {os.path.basename(s.source): s.reason for s in loader.skipped}
    assert "truncated" in reasons["truncated.jpg"]
    assert "empty" in reasons["empty.png"]
    assert "not an image" in reasons["text.png"]
    got = torch.cat([b.indices for b in batches]).tolist()
    assert got == [0, 4]
    labels = torch.cat([b.labels for b in batches]).tolist()
    assert labels == [0, 1]
    meta = [m for b in batches for m in b.meta]
    assert meta[1]["box"] == (2.0, 3.0, 6.0, 7.0)
    assert meta[1]["keypoints"] == {"eye": (3.0, 4.0)}
    assert meta[0]["scale"] == 0.1
    assert batches[0].images.shape == (1, 3, 8, 8)


def test_cli_data_reports_skipped(bad_manifest, capsys):
    from convlens.cli import main
    rc = main(["data", "--data", str(bad_manifest), "--model", "builtin:tiny"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert "2 readable, 3 skipped" in out
    assert err.count("convlens: warning: skipped") == 3


def test_decompression_bomb_is_refused(tmp_path):
    p = save(Image.new("L", (300, 300)), tmp_path / "big.png")   # compresses to almost nothing
    with pytest.raises(BadImage, match="too large"):
        open_image(p, max_pixels=10_000)
    assert open_image(p).size == (300, 300)


def test_pil_bomb_guard(tmp_path, monkeypatch):
    p = save(Image.new("L", (300, 300)), tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)   # PIL's own guard fires first
    with pytest.raises(BadImage, match="too large"):
        open_image(p)


def test_unreadable_path(tmp_path):
    with pytest.raises(BadImage, match="cannot read"):
        open_image(tmp_path / "missing.png")


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "I;16", "LA", "1"])
@pytest.mark.parametrize("channels", [1, 3])
def test_modes_convert(tmp_path, mode, channels):
    base = rgb(3)
    if mode == "I;16":
        arr = (np.asarray(base.convert("L"), dtype=np.uint16) * 257)
        img = Image.fromarray(arr)
        assert img.mode.startswith("I;16")
        ext = "png"
    else:
        img = base.convert(mode)
        ext = "tiff" if mode == "CMYK" else "png"
    p = save(img, tmp_path / f"x.{ext}")
    out = to_channels(open_image(p), channels)
    assert out.mode == ("L" if channels == 1 else "RGB")
    if mode == "I;16":  # scaled from 16 bits, not clipped at 255
        assert np.abs(np.asarray(out.convert("L"), dtype=int)
                      - np.asarray(base.convert("L"), dtype=int)).max() <= 1


def test_image_folder(tmp_path):
    for k, name in enumerate(["b_class", "a_class"]):
        for i in range(2):
            save(rgb(10 * k + i), tmp_path / "data" / name / f"{i}.png")
    (tmp_path / "data" / "a_class" / "notes.txt").write_text("ignored")
    ds = load_data(tmp_path / "data")
    assert ds.classes == ["a_class", "b_class"] and len(ds) == 4
    item = ds[0]
    assert item.label == 0 and item.image.shape == (3, 16, 20) and 0 <= item.image.min()
    assert item.image.max() <= 1


def test_preprocess_resizes_and_normalises():
    lens = Lens(torch.nn.Identity(), mean=(0.5,), std=(0.25,), input_size=(1, 8, 8))
    x = lens.preprocess(Image.new("RGB", (32, 16), (255, 255, 255)))
    assert x.shape == (1, 8, 8) and torch.allclose(x, torch.full_like(x, 2.0))


def test_data_errors(tmp_path):
    with pytest.raises(ConvlensError, match="data not found"):
        load_data(tmp_path / "nope")
    (tmp_path / "m.csv").write_text("file,label\na.png,1\n")
    with pytest.raises(ConvlensError, match="no 'path' column"):
        load_data(tmp_path / "m.csv")
    with pytest.raises(ConvlensError, match="unknown built-in dataset"):
        load_data("builtin:nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConvlensError, match="no class sub-folders"):
        load_data(tmp_path / "empty")


def test_parquet_manifest_with_int_labels(tmp_path):
    save(rgb(0), tmp_path / "a.png")
    pd.DataFrame({"path": ["a.png"], "label": [3], "attr": ["x"]}).to_parquet(
        tmp_path / "m.parquet")
    ds = load_data(tmp_path / "m.parquet")
    it = ds[0]
    assert it.label == 3 and it.meta["attr"] == "x" and ds.classes is None


def test_skipped_item_from_getitem(bad_manifest):
    ds = load_data(bad_manifest)
    assert isinstance(ds[2], Skipped)
