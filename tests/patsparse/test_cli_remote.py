"""``patsparse rpc`` / ``devices`` and the remote options of ``tune`` / ``compile``."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from patsparse.cli import main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_query_unreachable_tracker_exits_2_naming_the_fix(capsys):
    port = _free_port()
    assert main(["rpc", "query", "--tracker", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert "no RPC tracker answers" in err and f"patsparse rpc tracker --port {port}" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tune", "digits-cnn", "--target", "arm64", "--trials", "2"], "--tracker HOST:PORT"),
        (["tune", "digits-cnn", "--target", "arm64", "--tracker", "127.0.0.1:1"], "--key"),
        (
            ["compile", "digits-cnn", "--target", "adreno", "--tracker", "127.0.0.1:1"],
            "OpenCL runtime",
        ),
    ],
)
def test_remote_target_without_device_is_a_clear_error(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("cmd", [["rpc", "tracker"], ["rpc", "query"], ["devices", "up"]])
def test_remote_subcommands_have_help(cmd):
    out = subprocess.run(
        [sys.executable, "-m", "patsparse", *cmd, "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--tracker" in out or "--host" in out


@pytest.mark.rpc
def test_devices_up_query_down(tmp_path, monkeypatch, capsys):
    """The emulated Adreno device through the CLI: up, listed by query, down."""
    from tvm_ext.rpc.devices import missing_for
    from tvm_ext.rpc.session import Tracker

    if missing_for("adreno"):
        pytest.skip(f"needs {', '.join(missing_for('adreno'))} (.ci/run installs them)")
    monkeypatch.setenv("PATSPARSE_CACHE", str(tmp_path))
    with Tracker(port=9500) as tracker:
        addr = str(tracker.address)
        try:
            assert main(["devices", "up", "adreno", "--tracker", addr, "--json"]) == 0
            state = json.loads(capsys.readouterr().out)
            assert state["key"] == "adreno-pocl"
            assert main(["rpc", "query", "--tracker", addr, "--json"]) == 0
            keys = json.loads(capsys.readouterr().out)["keys"]
            assert keys["adreno-pocl"]["free"] == 1
        finally:
            assert main(["devices", "down", "--json"]) == 0
        stopped = json.loads(capsys.readouterr().out)["stopped"]
        assert [s["pid"] for s in stopped] == [state["pid"]]
        assert main(["devices", "down"]) == 0
        assert "no emulated device" in capsys.readouterr().out


@pytest.mark.rpc
def test_rpc_tracker_command_serves_until_terminated():
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "patsparse", "rpc", "tracker", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in line
        assert main(["rpc", "query", "--tracker", f"127.0.0.1:{port}"]) == 0
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0  # SIGTERM stops the tracker cleanly
