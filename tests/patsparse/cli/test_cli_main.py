"""The ``patsparse`` command as a whole: every subcommand's ``--help``, typed errors as one
line on stderr with exit status 2, and the ``--json`` error contract (one JSON document on
stdout for any failure)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from patsparse.cli import main
from patsparse.export import save_pruned


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


@pytest.mark.parametrize("cmd", ["demo", "prune", "compile", "report", "patterns", "extract"])
def test_every_subcommand_has_help(cmd):
    out = subprocess.run(
        [sys.executable, "-m", "patsparse", cmd, "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--json" in out


def test_building_the_parser_loads_no_tvm():
    """``patsparse --help`` stays quick: the commands import the compiler layer when run."""
    script = (
        "import sys\n"
        "from patsparse.cli import build_parser\n"
        "build_parser()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tvm', 'tvm_ext')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# -- the --json error contract ---------------------------------------------------------------


def _error_document(out: str) -> dict:
    """``out`` (stdout) holds exactly one JSON document: ``{"error": {type, message, fix}}``."""
    doc = json.loads(out)  # one document: anything around it would not parse
    assert set(doc) == {"error"}
    err = doc["error"]
    assert set(err) == {"type", "message", "fix"}
    assert all(isinstance(v, str) and v for v in err.values())
    return err


@pytest.mark.parametrize(
    ("argv", "error_type", "in_message"),
    [
        (["report", "/nonexistent/x.pt", "--json"], "CheckpointError", "does not exist"),
        (["patterns", "--library", "nope", "--json"], "UnknownNameError", "nope"),
        (["bench", "resnet19", "--json"], "PatsparseError", "unknown model 'resnet19'"),
        (["bench", "digits-cnn", "--repeat", "x", "--json"], "UsageError", "--repeat"),
        (["compile", "--json"], "UsageError", "required"),
    ],
)
def test_json_failure_prints_one_error_document(argv, error_type, in_message, capsys):
    assert main(argv) == 2
    err = _error_document(capsys.readouterr().out)
    assert err["type"] == error_type and in_message in err["message"]


def test_json_error_carries_the_errors_own_fix(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--json"]) == 2
    err = _error_document(capsys.readouterr().out)
    assert err["type"] == "CheckpointError"
    assert err["fix"] == "give the path of the checkpoint file, not of its directory"


def test_json_fix_is_read_off_the_message_without_one(capsys):
    assert main(["report", "/nonexistent/x.pt", "--json"]) == 2
    assert _error_document(capsys.readouterr().out)["fix"] == "check the path"


def test_json_unexpected_failure_is_an_error_document_too(monkeypatch, capsys):
    """An exception patsparse did not raise on purpose: still one JSON document (exit 1,
    the traceback on stderr); without --json Python's traceback as before."""
    from patsparse.cli import patterns

    def boom(_args):
        raise RuntimeError("kaput")

    monkeypatch.setattr(patterns, "run", boom)
    assert main(["patterns", "--json"]) == 1
    out, stderr = capsys.readouterr()
    err = _error_document(out)
    assert err["type"] == "RuntimeError" and err["message"] == "kaput"
    assert "RuntimeError: kaput" in stderr
    with pytest.raises(RuntimeError, match="kaput"):
        main(["patterns"])


def test_without_json_stdout_stays_empty_on_failure(capsys):
    assert main(["report", "/nonexistent/x.pt"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "does not exist" in err


# -- checkpoints named on the command line ---------------------------------------------------


@pytest.fixture
def foreign_checkpoint(tmp_path):
    """A checkpoint whose stored architecture name is no zoo model (one letter off one)."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3))
    return save_pruned(tmp_path / "custom.pt", model, {}, arch="sr_net")


@pytest.mark.parametrize("cmd", ["compile", "report"])
def test_unknown_architecture_says_it_came_from_the_checkpoint(cmd, foreign_checkpoint, capsys):
    assert main([cmd, str(foreign_checkpoint)]) == 2
    err = capsys.readouterr().err
    assert "'sr_net'" in err and "comes from the checkpoint" in err
    assert f"patsparse.export.load_pruned('{foreign_checkpoint}', model=MyNet())" in err
    assert "Did you mean" not in err


def test_unknown_architecture_json_fix_shows_the_python_call(foreign_checkpoint, capsys):
    assert main(["compile", str(foreign_checkpoint), "--json"]) == 2
    err = _error_document(capsys.readouterr().out)
    assert err["type"] == "CheckpointError" and "load_pruned(" in err["fix"]
    # the call the message shows works
    from patsparse.export import load_pruned

    loaded = load_pruned(foreign_checkpoint, model=nn.Sequential(nn.Conv2d(1, 4, 3)))
    assert loaded.arch == "sr_net" and isinstance(loaded.model[0].weight, torch.Tensor)


@pytest.mark.parametrize("cmd", ["compile", "report"])
def test_a_directory_is_not_a_checkpoint(cmd, tmp_path, capsys):
    folder = tmp_path / "run.pt"  # named like one, even
    folder.mkdir()
    assert main([cmd, str(folder)]) == 2
    err = capsys.readouterr().err
    assert "is a directory, not a checkpoint" in err and "does not exist" not in err
