"""Every sub-command answers a bad input with one line on stderr and exit code 2: no traceback,
no output folder left behind (issue 13). The table is the list of mistakes users made, plus a
fuzz of each command's options with wrong types, ranges and combinations."""
from __future__ import annotations

import re
import socket

import numpy as np
import pytest
from PIL import Image

from convlens.cli import main

FASHION = ["--model", "builtin:fashion-net"]
SHAPES = ["--model", "builtin:shapes-net"]
TINY = ["--model", "builtin:tiny"]
SHAPES_DATA = ["--data", "builtin:shapes:test:16"]

# (command line, a piece of the error message)
BAD = [
    # the model
    (["activations", *SHAPES, *SHAPES_DATA, "--input-size", "3,32,32"], "does not take 3x32x32"),
    (["activations", *SHAPES, *SHAPES_DATA, "--input-size", "1,64,64"], "does not take 1x64x64"),
    (["layers", "--model", "torchvision:resnet18", "--input-size", "1,224,224"],
     "does not take 1x224x224"),
    (["layers", *SHAPES, "--input-size", "3,64"], "C,H,W"),
    (["layers", *SHAPES, "--input-size", "3,0,64"], "positive"),
    (["layers", "--model", "nonsense"], "cannot understand model spec"),
    (["layers", "--model", "builtin:nope"], "unknown built-in model"),
    (["layers", "--model", "torchvision:resnet1"], "unknown torchvision model"),
    (["layers", *SHAPES, "--weights", "missing.pt"], "missing.pt"),
    (["layers", *SHAPES, "--layers", "features.O"], "'features.0'"),
    (["layers", *SHAPES, "--format", "xml"], "invalid choice"),
    (["layers", *SHAPES, "--dtype", "float64"], "invalid choice"),
    (["layers", *SHAPES, "--device", "cuda:7"], "--device"),
    (["layers", *SHAPES, "--seed", "-1"], "an integer >= 0"),
    (["layers", *SHAPES, "--labels", "missing.txt"], "cannot read labels file"),
    # images and their selection
    (["activations", *FASHION, "--data", "builtin:fashion-mnist:test", "--n", "0"],
     "a positive integer"),
    (["activations", *FASHION, "--data", "builtin:fashion-mnist:test", "--n", "-3"],
     "a positive integer"),
    (["activations", *FASHION, "--data", "builtin:fashion-mnist:test", "--n", "two"],
     "a positive integer"),
    (["activations", *FASHION, "--image", "IMG", "--data", "builtin:fashion-mnist:test"],
     "not both"),
    (["activations", *FASHION], "give --image FILE"),
    (["activations", *FASHION, "--image", "missing.png"], "missing.png"),
    (["activations", *SHAPES, *SHAPES_DATA, "--layers", "features.99"], "unknown layer"),
    (["activations", *SHAPES, "--data", "no/such/folder"], "data not found"),
    (["activations", *SHAPES, "--data", "builtin:nope"], "unknown built-in dataset"),
    # datasets
    (["activation-stats", *FASHION, "--data", "builtin:fashion-mnist:test", "--threshold", "2"],
     "in (0, 1]"),
    (["activation-stats", *FASHION, "--data", "builtin:fashion-mnist:test", "--threshold", "0"],
     "in (0, 1]"),
    (["activation-stats", *FASHION, "--data", "builtin:fashion-mnist:test", "--n", "-1"],
     "a positive integer"),
    (["activation-stats", *FASHION, "--data", "builtin:fashion-mnist:test", "--batch-size", "0"],
     "a positive integer"),
    (["activation-stats", *FASHION, "--data", "builtin:fashion-mnist:test", "--workers", "-2"],
     "an integer >= 0"),
    (["evaluate", *SHAPES, *SHAPES_DATA, "--n", "-1"], "a positive integer"),
    (["evaluate", *SHAPES, *SHAPES_DATA, "--format", "yaml"], "invalid choice"),
    (["evaluate", *SHAPES], "--data"),
    (["data", "--data", "no/such/folder"], "data not found"),
    (["data", "--data", "builtin:shapes:test:x"], "must be an integer"),
    (["filters", *SHAPES, "--threshold", "5"], "in (0, 1]"),
    (["filters", *SHAPES, "--layers", "features.1"], "ReLU"),
    # the dataset pass
    (["scan", *SHAPES, *SHAPES_DATA, "--topk", "0"], "a positive integer"),
    (["scan", *SHAPES, *SHAPES_DATA, "--directions", "-1"], "an integer >= 0"),
    (["scan", *SHAPES, *SHAPES_DATA, "--layers", "nope"], "unknown layer"),
    (["scan", *SHAPES, *SHAPES_DATA, "--code-layer", "nope"], "unknown layer"),
    (["scan", *SHAPES, *SHAPES_DATA, "--engine", "spark"], "invalid choice"),
    (["scan", *SHAPES, *SHAPES_DATA, "--checkpoint-every", "0"], "a positive integer"),
    (["unit-patches", "--scan", "no/such/scan", "--layer", "features.4"], "no manifest.json"),
    (["unit-patches", "--scan", "SCAN", "--layer", "features.4", "--max-units", "0"],
     "a positive integer"),
    (["tsne-grid"], "either --scan DIR or --model"),
    (["tsne-grid", *FASHION], "--data"),
    (["tsne-grid", *FASHION, "--data", "builtin:fashion-mnist:test", "--n", "9"],
     "t-SNE of 9 codes"),
    (["tsne-grid", *FASHION, "--data", "builtin:fashion-mnist:test", "--grid", "0"],
     "SIDE or ROWSxCOLS"),
    (["tsne-grid", *FASHION, "--data", "builtin:fashion-mnist:test", "--perplexity", "-5"],
     "a positive number"),
    (["tsne-grid", "--scan", "no/such/scan"], "no manifest.json"),
    # per-image views
    (["occlusion", *SHAPES, *SHAPES_DATA, "--window", "0"], "positive integers"),
    (["occlusion", *SHAPES, *SHAPES_DATA, "--window", "100"], "larger than the image"),
    (["occlusion", *SHAPES, *SHAPES_DATA, "--stride", "-1"], "positive integers"),
    (["occlusion", *SHAPES, *SHAPES_DATA, "--tau", "0"], "in (0, 1]"),
    (["occlusion", *SHAPES, *SHAPES_DATA, "--drill", "2"], "in [0, 1]"),
    (["occlusion", *SHAPES, *SHAPES_DATA, "--target", "dog"], "unknown class"),
    (["occlusion", *SHAPES, *SHAPES_DATA, "--target", "99"], "out of range"),
    (["occlusion", *SHAPES, *SHAPES_DATA, "--mode", "fast"], "invalid choice"),
    (["occlusion", *SHAPES, *SHAPES_DATA, "--fill", "purple"], "unknown fill"),
    (["occlusion", *SHAPES, *SHAPES_DATA, "--layer", "nope"], "unknown layer"),
    (["saliency", *SHAPES, *SHAPES_DATA, "--target", "dog"], "unknown target"),
    (["saliency", *SHAPES, *SHAPES_DATA, "--target", "99"], "out of range"),
    (["saliency", *SHAPES, *SHAPES_DATA, "--target", "features.11:999"], "out of range"),
    (["deconvnet", *SHAPES, *SHAPES_DATA, "--target", "nope:3"], "unknown layer"),
    (["guided-backprop", *SHAPES, *SHAPES_DATA, "--n", "0"], "a positive integer"),
    (["grad-cam", *SHAPES, *SHAPES_DATA, "--layer", "nope"], "unknown layer"),
    (["guided-grad-cam", *SHAPES, *SHAPES_DATA, "--layer", "classifier.7"], "spatial maps"),
    (["smoothgrad", *SHAPES, *SHAPES_DATA, "--samples", "0"], "a positive integer"),
    (["smoothgrad", *SHAPES, *SHAPES_DATA, "--noise", "-1"], "a positive number"),
    (["smoothgrad", *SHAPES, *SHAPES_DATA, "--method", "magic"], "invalid choice"),
    (["integrated-gradients", *SHAPES, *SHAPES_DATA, "--steps", "0"], "a positive integer"),
    (["integrated-gradients", *SHAPES, *SHAPES_DATA, "--baseline", "grey-ish"], "baseline"),
    # images from codes, correspondence
    (["invert", *SHAPES, *SHAPES_DATA, "--layers", "nope"], "unknown layer"),
    (["invert", *SHAPES, *SHAPES_DATA, "--layers", "features.1", "--steps", "0"],
     "a positive integer"),
    (["class-model", *SHAPES, "--targets", "dog"], "dog"),
    (["class-model", *SHAPES, "--steps", "0"], "a positive integer"),
    (["feature-visualization", *SHAPES, "--layer", "nope"], "unknown layer"),
    (["feature-visualization", *SHAPES, "--layer", "features.4", "--channels", "999"], "999"),
    (["feature-visualization", *SHAPES, "--layer", "features.4", "--all", "--steps", "0"],
     "a positive integer"),
    (["correspondence", *SHAPES, *SHAPES_DATA, "--layers", "nope"], "unknown layer"),
    (["correspondence", *FASHION, "--data", "builtin:fashion-mnist:test", "--pairs",
      "intraclass"], "keypoint"),
    (["correspondence", *SHAPES, *SHAPES_DATA, "--alpha", "2"], "in (0, 1]"),
    # accuracy by attribute, fooling
    (["attribute-performance", "--scan", "SCAN", "--attributes", "nope"], "nope"),
    (["attribute-performance", "--scan", "SCAN", "--bins", "0"], "a positive integer"),
    (["attribute-performance", "--scan", "no/such/scan"], "no/such/scan"),
    (["fool", *SHAPES, *SHAPES_DATA, "--target", "dog"], "dog"),
    (["fool", *SHAPES, *SHAPES_DATA, "--target", "99"], "99"),
    (["fool", *SHAPES, *SHAPES_DATA], "--target"),
    (["robustness", *SHAPES, *SHAPES_DATA, "--eps", "2"], "eps"),
    (["robustness", *SHAPES, *SHAPES_DATA, "--eps", "-0.1"], "eps"),
    (["robustness", *SHAPES, *SHAPES_DATA, "--attack", "cw"], "invalid choice"),
    (["fgsm", *SHAPES, *SHAPES_DATA, "--eps", "2"], "a number in [0, 1]"),
    (["fgsm", *SHAPES, *SHAPES_DATA, "--label", "dog"], "dog"),
    (["pgd", *SHAPES, *SHAPES_DATA, "--norm", "l3"], "invalid choice"),
    (["pgd", *SHAPES, *SHAPES_DATA, "--steps", "0"], "a positive integer"),
    # training, the report, the server
    (["train"], "give the model to train"),
    (["train", "--model", "builtin:tiny"], "no training recipe"),
    (["train", "--model", "builtin:shapes-net", "--epochs", "0"], "a positive integer"),
    (["report", "EMPTY"], "no convlens results"),
    (["report", "no/such/folder"], "neither a result folder"),
    (["serve", "no/such/site"], "has no index.html"),
    (["serve", "SITE", "--port", "0"], "a port number"),
    (["serve", "SITE", "--port", "PORT_IN_USE"], "another program uses it"),
    (["frobnicate"], "no command 'frobnicate'"),
    (["stats"], "did you mean activation-stats?"),
    (["layers", *SHAPES, "--frobnicate"], "unrecognized arguments"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """Files the table refers to: an image, an empty folder, a scan, a site, a busy port."""
    root = tmp_path_factory.mktemp("cli-errors")
    img = root / "img.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(img)
    (root / "empty").mkdir()
    site = root / "site"
    site.mkdir()
    (site / "index.html").write_text("<html></html>")
    assert main(["scan", *SHAPES, *SHAPES_DATA, "--layers", "features.4", "--topk", "2",
                 "--out", str(root / "scan")]) == 0
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    yield {"IMG": str(img), "EMPTY": str(root / "empty"), "SCAN": str(root / "scan"),
           "SITE": str(site), "PORT_IN_USE": str(busy.getsockname()[1])}
    busy.close()


@pytest.mark.parametrize("argv, says", BAD, ids=[" ".join(a)[:70] for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_code_2(argv, says, places, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [places.get(a, a) for a in argv]
    out = tmp_path / "out"
    if argv[0] not in ("layers", "data", "evaluate", "serve", "frobnicate", "unit-patches",
                       "train") \
            and "--out" not in argv and argv[0] != "report":
        argv += ["--out", str(out)]
    if argv[0] == "report":
        argv += ["--out", str(out)]
    code = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln]
    assert code == 2, err
    assert "Traceback" not in err, err
    assert len(errors) == 1, err
    others = [ln for ln in lines if ln not in errors]
    assert all(ln.startswith("convlens: warning:") or "%|" in ln for ln in others), err
    assert says in errors[0], errors[0]
    assert not out.exists(), f"{argv[0]} left {out} behind"


@pytest.mark.parametrize("argv", [
    ["evaluate", *SHAPES, *SHAPES_DATA, "--limit", "8"],
    ["evaluate", *SHAPES, *SHAPES_DATA, "--json"],
    ["scan", *SHAPES, *SHAPES_DATA, "--codes", "auto"],
    ["tsne-grid", "--layer", "classifier.4"], ["train", "shapes-net"],
    ["stats"], ["tsne"], ["units"], ["featvis"], ["attributes"], ["adversarial"]])
def test_no_old_spellings(argv, capsys):
    """0.1.0 was never released: the spellings before the one vocabulary are gone (issue 23)."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err or "no command" in err, err


def test_help_of_every_command_uses_the_shared_vocabulary(capsys):
    from convlens.cli import build_parser
    from convlens.commands.common import COMMANDS

    build_parser()
    for name in COMMANDS:
        assert main([name, "--help"]) == 0
        text = capsys.readouterr().out
        for old in ("--limit", "--json", "--codes "):
            assert old not in text, f"{name} --help still offers {old}"
        if "--model" in text and name not in ("train", "demo"):
            for opt in ("--seed", "--device", "--dtype", "--weights"):
                assert opt in text, f"{name} --help lacks {opt}"
        # colours only
        if "--data SPEC" in text and name not in ("unit-patches", "feature-visualization"):
            assert "--n N" in text, f"{name} --help lacks --n"
        if (re.search(r"--out\b(?!put)", text)
                and name not in ("unit-patches", "train", "report", "layers", "demo")):
            assert "convlens-out/" in text, f"{name}: --out default is not convlens-out/<view>"


def test_ctrl_c_in_a_scan_says_what_was_saved_and_how_to_continue(monkeypatch, tmp_path, capsys):
    import convlens.techniques.units.scan as S

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(S, "run_local", interrupted)
    assert main(["scan", *SHAPES, *SHAPES_DATA, "--out", str(tmp_path / "s")]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and ".convlens-scan" in err and "run the same command again" in err


def test_ctrl_c_elsewhere_says_nothing_was_saved(monkeypatch, capsys):
    import convlens.techniques.units.evaluate as E

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(E, "evaluate", interrupted)
    assert main(["evaluate", *SHAPES, *SHAPES_DATA]) == 130
    assert "interrupted; nothing was saved" in capsys.readouterr().err
