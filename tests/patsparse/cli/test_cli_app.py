"""``patsparse app {train,prune,run,bench}``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from patsparse.apps.photos import load_photo, read_image, write_image
from patsparse.cli import main


def _json(capsys):
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def folder(tmp_path):
    """A user's folder of three photos (one held out)."""
    root = tmp_path / "photos"
    write_image(root / "a.png", load_photo("astronaut")[:64, :64])
    write_image(root / "b.png", load_photo("brick")[:64, :64])
    write_image(root / "c.png", load_photo("rocket")[:48, :48])
    return root


def test_run_sr_on_a_photo_with_the_shipped_checkpoint(tmp_path):
    photo = write_image(tmp_path / "photo.png", load_photo("chelsea")[60:84, 200:230])
    # the command a user types right after installing
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "patsparse",
            "app",
            "run",
            "sr",
            str(photo),
            "--out",
            str(tmp_path / "out"),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (rec,) = json.loads(proc.stdout)["pictures"]
    out = read_image(rec["output"])
    assert out.shape == (48, 60, 3) and rec["out_size"] == [48, 60]
    assert rec["output"].endswith("photo_sr.png") and 0.0 < float(np.mean(out)) < 1.0


def test_train_then_prune_on_a_users_folder(tmp_path, folder, capsys):
    dense = tmp_path / "d.pt"
    rc = main(
        [
            "app",
            "train",
            "sr",
            "--data-root",
            str(folder),
            "--steps",
            "2",
            "--pairs",
            "8",
            "--patch",
            "16",
            "--batch-size",
            "4",
            "--out",
            str(dense),
            "--json",
        ]
    )
    assert rc == 0
    data = _json(capsys)
    assert data["config"]["steps"] == 2 and set(data["quality"]) == {"psnr", "ssim"}
    assert dense.is_file()
    pruned = tmp_path / "p.pt"
    rc = main(
        [
            "app",
            "prune",
            "sr",
            "--data-root",
            str(folder),
            "--dense",
            str(dense),
            "--admm-epochs",
            "1",
            "--retrain-epochs",
            "1",
            "--pairs",
            "16",
            "--method",
            "magnitude",
            "--thin-compression",
            "2",
            "--out",
            str(pruned),
            "--json",
        ]
    )
    assert rc == 0
    data = _json(capsys)
    rows = {r["layer"]: r for r in data["prune"]["layers"]}
    assert rows["body.0.expand"]["compression"] == pytest.approx(8.0, rel=0.05)
    assert rows["tail"]["scheme"] == "column" and rows["tail"]["compression"] == 2.0
    assert rows["head"]["scheme"] == "dense"
    assert data["prune"]["config"]["method"] == "magnitude" and pruned.is_file()


def test_errors_exit_2_with_a_fix(tmp_path, capsys):
    assert main(["app", "run", "sr", str(tmp_path / "none.png"), "--json"]) == 2
    err = _json(capsys)["error"]
    assert err["type"] == "DataError" and "does not exist" in err["message"]
    assert main(["app", "run", "nope", "x.png"]) == 2  # argparse: not a choice
    dense = tmp_path / "d.pt"
    (tmp_path / "d.pt").write_bytes(b"junk")
    assert main(["app", "prune", "sr", "--dense", str(dense), "--json"]) == 2
    assert _json(capsys)["error"]["type"] == "CheckpointError"


@pytest.mark.slow
def test_bench_table_at_a_tiny_size(tmp_path, capsys):
    out = tmp_path / "t.json"
    assert main(["app", "bench", "sr", "--sizes", "16", "--runs", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "patsparse" in text and "pytorch_dense" in text
    res = json.loads(out.read_text())
    assert res["rows"][0]["engines"]["patsparse"]["max_abs_error_vs_pytorch"] < 1e-4


@pytest.mark.rpc
def test_bench_on_the_emulated_arm64_device(tmp_path, capsys):
    from tvm_ext.rpc.devices import DeviceConfig, EmulatedDevice, missing_for
    from tvm_ext.rpc.session import Tracker

    missing = missing_for("arm64")
    if missing:
        pytest.skip(f"the emulated arm64 device needs {', '.join(missing)} (.ci/run installs them)")
    with (
        Tracker(port=9410) as tracker,
        EmulatedDevice(DeviceConfig("arm64", tracker.address)) as dev,
    ):
        rc = main(
            [
                "app",
                "bench",
                "sr",
                "--tracker",
                str(tracker.address),
                "--key",
                dev.key,
                "--size",
                "16",
                "--json",
            ]
        )
    assert rc == 0
    res = _json(capsys)
    assert res["max_abs_error_vs_pytorch"] < 1e-4 and res["device_ms"]["median"] > 0
