"""``patsparse demo`` through the installed console script (the ``patsparse.cli:main`` entry
point): prune, import, rewrite, verify, run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path


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
    tvm = data["tvm"]  # prune -> import -> rewrite -> verify -> run on the host
    # the first conv stays dense (blocked kernel); the two pruned ones run per-kernel or, where
    # estimated faster, blocked: every conv (and the classifier, as a 1x1) on our kernels
    assert tvm["rewritten_convs"] >= 1 and tvm["convs"] == 3
    assert tvm["rewritten_convs"] + tvm["blocked_convs"] == 4
    assert tvm["max_layer_error"] < 1e-4 and tvm["max_abs_error_vs_pytorch"] < 1e-4
    assert tvm["verified"]  # the final module end to end (on by default; --no-verify)
    assert abs(tvm["accuracy"] - data["pruned_accuracy"]) <= 0.3
    st = tvm["storage_bytes_rewritten_layers"]
    assert st["ours"] < st["csr"] < st["dense"]
    # ends with the shipped pruned SR model, compiled, on a held-out photo
    app = data["app"]
    assert app["app"] == "sr" and app["photo"] == "grace_hopper"
    assert app["quality"]["psnr"] > app["baseline_quality"]["psnr"]  # beats bicubic
    assert app["quality"]["ssim"] > app["baseline_quality"]["ssim"]
    assert app["speedup"] > 0 and Path(app["picture"]).parent == tmp_path
    assert Path(app["picture"]).stat().st_size > 10_000
