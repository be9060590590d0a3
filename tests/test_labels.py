"""Whose class names (issue 13): the data's for "label", the model's for "predicted"; random
weights are seeded and named."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import convlens
from conftest import photo_folder
from convlens.cli import main
from convlens.data.labels import align_labels


def test_align_labels_rules():
    same = align_labels(["T-shirt/top", "Ankle boot"], ["t-shirt/top", "ankle_boot"])
    assert same.status == "same" and same.note() is None
    assert list(same.model_class([0, 1, -1])) == [0, 1, -1]
    mapped = align_labels(["dog", "Cat"], ["cat", "bird", "dog"])
    assert mapped.status == "mapped" and list(mapped.model_class([0, 1])) == [2, 0]
    partial = align_labels(["dog", "zebra"], ["cat", "dog"])
    assert partial.status == "partial" and list(partial.model_class([0, 1])) == [1, -1]
    unrelated = align_labels(["animal", "object", "scene"], ["circle", "square"])
    assert not unrelated.comparable and list(unrelated.model_class([0, 2])) == [-1, -1]
    assert "accuracy is unavailable" in unrelated.note()
    assert align_labels(None, ["a"]).status == "indices"
    assert list(align_labels(None, ["a", "b"]).model_class([0, 1, 5])) == [0, 1, -1]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder of class folders whose names no built-in model knows, images of mixed sizes."""
    return photo_folder(tmp_path_factory.mktemp("photos"), 5, lambda i: (70 + 9 * i, 90 - 5 * i),
                        ext="png")


def test_photo_folder_keeps_its_class_names_everywhere(photos, tmp_path, capsys):
    assert main(["evaluate", "--model", "builtin:shapes-net", "--data", str(photos)]) == 0
    out = capsys.readouterr()
    assert "accuracy unavailable" in out.out and "top-1" not in out.out
    assert "animal" in out.out and "object" in out.out and "circle" not in out.out.split("\n")[0]
    assert "none of the model's 8 labels" in out.err

    scan_dir, tsne_dir, site = tmp_path / "scan", tmp_path / "tsne", tmp_path / "site"
    assert main(["scan", "--model", "builtin:shapes-net", "--data", str(photos),
                 "--layers", "features.11", "--topk", "2", "--out", str(scan_dir)]) == 0
    assert "accuracy unavailable" in capsys.readouterr().out
    import pandas as pd
    pred = pd.read_parquet(scan_dir / "predictions.parquet")
    assert pred["correct"].isna().all() and pred["p_true"].isna().all()
    info = json.loads((scan_dir / "manifest.json").read_text())["info"]
    assert info["classes"] == ["animal", "object", "scene"]
    assert main(["tsne-grid", "--scan", str(scan_dir), "--k", "3", "--out", str(tsne_dir),
                 "--border", "correct"]) == 0
    t_info = json.loads((tsne_dir / "manifest.json").read_text())["info"]
    assert t_info["classes"] == ["animal", "object", "scene"]
    assert t_info["labels"][:2] == ["circle", "square"]
    assert main(["report", str(tmp_path), "--out", str(site)]) == 0
    page = (site / "runs" / "tsne" / "index.html").read_text()
    assert '"names": ["animal", "object", "scene"]' in page and '"pred_names": ["circle"' in page


def test_photo_folder_with_resnet18_claims_no_accuracy(photos, capsys):
    assert main(["evaluate", "--model", "torchvision:resnet18", "--data", str(photos),
                 "--format", "json"]) == 0
    out = capsys.readouterr()
    ev = json.loads(out.out)
    assert ev["top1"] is None and ev["top5"] is None and ev["weights"] == "random weights, seed 0"
    assert set(ev["per_class_n"]) == {"animal", "object", "scene"}
    assert "random weights, seed 0" in out.err


def test_random_weights_are_seeded_named_and_leave_the_global_rng_alone(tmp_path, capsys):
    from convlens.engine import fingerprint_model

    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = convlens.load_model("torchvision:resnet18")
    after = torch.rand(3)
    assert torch.equal(before, after)  # the global random state is untouched
    b = convlens.load_model("torchvision:resnet18")
    c = convlens.load_model("torchvision:resnet18", seed=1)
    assert fingerprint_model(a) == fingerprint_model(b) != fingerprint_model(c)
    assert a.weights == "random weights, seed 0" and c.weights == "random weights, seed 1"
    assert convlens.load_model("builtin:shapes-net").weights.startswith("shipped weights")

    # two commands explain the same model, and the report says "random weights"
    x_args = ["--model", "torchvision:resnet18", "--image", str(_png(tmp_path))]
    assert main(["saliency", *x_args, "--out", str(tmp_path / "runs" / "sal")]) == 0
    assert main(["guided-backprop", *x_args, "--out", str(tmp_path / "runs" / "gb")]) == 0
    pa = np.load(tmp_path / "runs" / "sal" / "predicted.npy")
    pb = np.load(tmp_path / "runs" / "gb" / "predicted.npy")
    assert np.array_equal(pa, pb)
    m = json.loads((tmp_path / "runs" / "sal" / "manifest.json").read_text())
    assert m["model"]["weights"] == "random weights, seed 0"
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "site")]) == 0
    assert "random weights, seed 0" in (tmp_path / "site" / "index.html").read_text()
    capsys.readouterr()


def _png(folder):
    path = folder / "img.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (240, 260, 3),
                                                      dtype=np.uint8)).save(path)
    return path
