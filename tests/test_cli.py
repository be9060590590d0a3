"""The command line: tables, --help, one-line errors with exit code 2."""
import subprocess
import sys

import pytest
import torch

from convlens.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "convlens.cli", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_layers_vgg16_field_of_conv5_3():
    r = run("layers", "--model", "torchvision:vgg16", "--layers", "features.29")
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if line.startswith("features.29"))
    assert row.split()[:5] == ["features.29", "ReLU", "512x14x14", "196", "16"]


def test_layers_formats(capsys):
    assert main(["layers", "--model", "builtin:tiny", "--format", "json"]) == 0
    import json
    rows = json.loads(capsys.readouterr().out)
    assert rows[1]["name"] == "features.0" and rows[1]["rf_size"] == 3
    assert main(["layers", "--model", "builtin:tiny", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("name,type,shape,rf_size")


@pytest.mark.slow
def test_evil_weights_refused_and_code_not_run(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

    torch.save(Evil(), tmp_path / "evil.pt")
    r = run("layers", "--model", "torchvision:alexnet", "--weights", str(tmp_path / "evil.pt"))
    assert r.returncode == 2
    assert r.stderr.startswith("convlens: error: refusing to load")
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not marker.exists()


@pytest.mark.parametrize("args,msg", [
    (["layers", "--model", "builtin:tiny", "--layers", "features.9"], "did you mean"),
    (["layers", "--model", "nonsense"], "cannot understand model spec"),
    (["layers", "--model", "builtin:tiny", "--weights", "/no/such.pt"], "not found"),
    (["data", "--data", "/no/such/folder"], "data not found"),
])
def test_user_errors_are_one_line_exit_2(args, msg, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("convlens: error:") and msg in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_debug_shows_traceback():
    r = run("--debug", "layers", "--model", "nonsense")
    assert r.returncode != 0 and "Traceback" in r.stderr


@pytest.mark.parametrize("cmd", [[], ["layers"], ["data"]])
def test_help(cmd):
    r = run(*cmd, "--help")
    assert r.returncode == 0 and "usage: convlens" in r.stdout


def test_no_command_prints_help():
    r = run()
    assert r.returncode == 2 and "COMMAND" in r.stdout


@pytest.mark.parametrize("cmd", ["activations", "saliency", "deconvnet", "guided-backprop",
                                 "grad-cam", "guided-grad-cam", "occlusion"])
def test_per_image_views_run_in_bfloat16(cmd, tmp_path):
    """--dtype is part of the shared vocabulary: the model computes in bfloat16, results are
    saved as float32."""
    assert main([cmd, "--model", "builtin:shapes-net", "--data", "builtin:shapes:test:2",
                 "--dtype", "bfloat16", "--out", str(tmp_path / cmd)]) == 0
    assert (tmp_path / cmd / "manifest.json").is_file()


@pytest.mark.slow
def test_dataset_views_run_in_bfloat16(tmp_path):
    data = ["--model", "builtin:shapes-net", "--data", "builtin:shapes:test:32",
            "--dtype", "bfloat16"]
    assert main(["activation-stats", *data, "--out", str(tmp_path / "stats")]) == 0
    assert main(["evaluate", *data]) == 0
    assert main(["scan", *data, "--layers", "features.4", "--out", str(tmp_path / "scan")]) == 0


@pytest.mark.parametrize("cmd,extra", [
    ("fgsm", ["--eps", "0.05", "--explain", "guided-backprop"]),
    ("pgd", ["--eps", "0.05", "--steps", "2", "--label", "star", "--targeted",
             "--no-random-start"]),
])
def test_fgsm_and_pgd_commands_from_their_records(cmd, extra, tmp_path, capsys):
    from convlens.results import load_result

    assert main([cmd, "--model", "builtin:shapes-net", "--data", "builtin:shapes:test:2",
                 "--n", "2", *extra, "--out", str(tmp_path / cmd)]) == 0
    out = capsys.readouterr().out
    assert "image 1:" in out and "Linf" in out
    res = load_result(tmp_path / cmd)
    assert res.kind == cmd and res.params["eps"] == 0.05 and len(res.classes) == 2
    if cmd == "pgd":
        assert res.targeted and not res.params["random_start"]
        assert res.labels[int(res.classes[0])] == "star"
    else:
        assert res.explain == "guided_backprop"
