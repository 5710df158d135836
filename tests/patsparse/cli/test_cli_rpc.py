"""``patsparse rpc``: the tracker command and listing the keys at a tracker."""

from __future__ import annotations

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
