from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from patsparse.cli import main

FAST = ["--dense-epochs", "6", "--admm-epochs", "3", "--retrain-epochs", "3"]


def _json(capsys):
    out = capsys.readouterr().out
    return json.loads(out)


def test_prune_json_reports_accuracy_compression_and_violations(tmp_path, capsys):
    ckpt = tmp_path / "p.pt"
    rc = main(["prune", "--json", "--compression", "5", "--out", str(ckpt), *FAST])
    assert rc == 0
    data = _json(capsys)
    assert data["model"] == "digits-cnn" and data["method"] == "admm"
    assert data["dense_accuracy"] > 80 and data["pruned_accuracy"] > 80
    assert data["pattern_violations"] == 0
    assert data["pruned_layers_compression"] == pytest.approx(5.0, rel=0.05)
    layers = {r["name"]: r for r in data["report"]["layers"]}
    assert layers["features.0"]["scheme"] == "dense"
    assert layers["features.3"]["scheme"].startswith("pattern+connectivity")
    assert ckpt.is_file() and data["checkpoint"] == str(ckpt)

    assert main(["report", str(ckpt), "--json"]) == 0
    rep = _json(capsys)
    assert rep["total"]["pattern_violations"] == 0
    assert rep["total"]["pruned_layers_compression"] == data["pruned_layers_compression"]


def test_per_layer_overrides_and_magnitude(capsys):
    rc = main(
        [
            "prune",
            "--json",
            "--method",
            "magnitude",
            "--layer",
            "features.7=filter:2",
            "--layer",
            "features.3=dense",
            *FAST,
        ]
    )
    assert rc == 0
    layers = {r["name"]: r for r in _json(capsys)["report"]["layers"]}
    assert layers["features.3"]["scheme"] == "dense"
    assert layers["features.7"]["scheme"].startswith("filter")
    assert layers["features.7"]["compression"] == pytest.approx(2.0)


def test_patterns_json(capsys):
    assert main(["patterns", "--library", "gaussian-4", "--json"]) == 0
    data = _json(capsys)
    assert data["interpolation"] == [[1, 2, 1], [2, 4, 2], [1, 2, 1]]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["prune", "--layer", "features.9=filter:2"], "features.9"),
        (["prune", "--compression", "1.5"], "outside"),
        (["prune", "--layer", "classifier=pattern"], "3x3"),
        (["prune", "--data", "cifar10"], "--data-root"),
        (["report", "/nonexistent/x.pt"], "does not exist"),
        (["patterns", "--library", "nope"], "unknown pattern library"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("cmd", ["demo", "prune", "report", "patterns", "extract"])
def test_every_subcommand_has_help(cmd):
    out = subprocess.run(
        [sys.executable, "-m", "patsparse", cmd, "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--json" in out


def _console_script() -> str:
    # the script installed next to this interpreter (a venv's bin/), else the one on PATH
    local = Path(sys.executable).parent / "patsparse"
    found = str(local) if local.exists() else shutil.which("patsparse")
    assert found, "the patsparse console script is not installed: pip install -e ."
    return found


def test_demo_console_script(tmp_path):
    out = subprocess.run(
        [_console_script(), "demo", "--json", "--out", str(tmp_path / "demo.pt")],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    data = json.loads(out.stdout)
    assert data["pattern_violations"] == 0
    assert data["accuracy_drop"] <= 1.5
    assert (tmp_path / "demo.pt").is_file()
