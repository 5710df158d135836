"""``patsparse compile``: a zoo model and a checkpoint, per-layer JSON and the table."""

from __future__ import annotations

import json
import re

import pytest

from patsparse.cli import main

FAST = ["--dense-epochs", "6", "--admm-epochs", "3", "--retrain-epochs", "3"]


def test_compile_zoo_model_json(tmp_path, capsys):
    lib = tmp_path / "m.so"
    assert (
        main(["compile", "resnet18-cifar", "--compression", "8", "--json", "--out", str(lib)]) == 0
    )
    data = json.loads(capsys.readouterr().out)
    layers = data["layers"]
    # 16 pattern-pruned 3x3 convs (stem skipped, 3 downsample 1x1): per-kernel code, or the
    # blocked kernel where that is estimated faster; at 8x (kernels kept scattered, so channel
    # unions cost about the dense conv) the flat per-kernel stages win on every layer
    to_blocked = [r for r in layers if "estimated slower than the blocked kernel" in r["reason"]]
    assert data["rewritten"] == 16 and not to_blocked and data["convs"] == 20
    assert all(r["kind"] == "kernel" for r in layers if r["rewritten"])
    blocked_3x3 = [b["weight_shape"] for b in data["blocked"] if b["weight_shape"][2:] == [3, 3]]
    assert blocked_3x3 == [[64, 3, 3, 3]]  # only the dense stem
    assert all(r["max_abs_error"] < 1e-4 for r in [*layers, *data["blocked"]] if r["rewritten"])
    kept = [r for r in layers if not r["rewritten"]]
    assert {r["reason"].split(":")[0] for r in kept} >= {"1x1 kernel"}
    assert data["max_abs_error_vs_pytorch"] < 1e-4 and lib.is_file()
    # verified by default: the final module end to end against PyTorch
    assert data["verification"]["passed"] and len(data["verification"]["outputs"]) == 1


def test_compile_checkpoint_table(tmp_path, capsys):
    ckpt = tmp_path / "p.pt"
    assert main(["prune", "--compression", "5", "--out", str(ckpt), "--json", *FAST]) == 0
    capsys.readouterr()
    assert main(["compile", str(ckpt), "--no-verify"]) == 0
    out = capsys.readouterr().out
    # the three pattern-pruned convs: per-kernel code or (estimated faster) the blocked kernel
    m = re.search(r"(\d)/3 convs rewritten, 0 structured convs compacted, (\d) other convs", out)
    assert m and int(m[1]) >= 1 and int(m[1]) + int(m[2]) >= 3 and "checkpoint" in out
    assert "not verified (--no-verify)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compile", "resnet18-cifar", "--target", "phone"], "not supported"),
        (["compile", "no-such-model"], "neither a checkpoint"),
    ],
)
def test_compile_bad_input(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_compile_drops_filters_no_conv_reads(capsys):
    # channel pruning at 2x: each conv reads half its input channels, so the conv before it
    # computes only that half (through its bias, ReLU and max pool)
    argv = ["compile", "digits-cnn", "--scheme", "channel", "--compression", "2"]
    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    dropped = [d for d in data["unread_filters"] if d["rewritten"]]
    assert dropped, data["unread_filters"]
    for d in dropped:
        assert d["computed"] == d["read"] < d["channels"] and d["through"][0] == "add"
    assert data["verification"]["passed"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    d = dropped[0]
    assert (
        f"reads {d['read']} of its {d['channels']} input channels: conv "
        f"{'x'.join(map(str, d['producer_shape']))} before it now computes {d['read']}"
    ) in out
