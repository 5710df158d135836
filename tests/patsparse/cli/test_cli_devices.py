"""``patsparse devices``: an emulated device up, listed by ``rpc query``, down."""

from __future__ import annotations

import json

import pytest

from patsparse.cli import main


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
