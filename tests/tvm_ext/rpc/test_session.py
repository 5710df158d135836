"""Tracker sessions: addresses, unreachable tracker, missing key, queue timeout."""

from __future__ import annotations

import socket
import time

import pytest

from patsparse.core.errors import DeviceKeyMissingError, TrackerUnreachableError
from tvm_ext.rpc.session import TrackerAddress, query_keys, request_session, wait_for_key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_address_parse():
    assert TrackerAddress.parse("10.0.0.2:9190") == TrackerAddress("10.0.0.2", 9190)
    assert TrackerAddress.parse("9191") == TrackerAddress("127.0.0.1", 9191)
    assert str(TrackerAddress()) == "127.0.0.1:9190"
    with pytest.raises(ValueError, match="HOST:PORT"):
        TrackerAddress.parse("localhost:x")


def test_unreachable_tracker_names_the_diagnostic_command():
    address = TrackerAddress("127.0.0.1", _free_port())
    start = time.monotonic()
    with pytest.raises(TrackerUnreachableError) as info:
        query_keys(address)
    assert time.monotonic() - start < 5  # no minute of silent retries
    assert f"patsparse rpc query --tracker {address}" in str(info.value)
    assert "patsparse rpc tracker" in str(info.value)
    with pytest.raises(TrackerUnreachableError):
        wait_for_key(address, "arm64-qemu", timeout=30)  # fails at once, not after 30 s


@pytest.mark.rpc
def test_tracker_binds_loopback_and_lists_no_keys(tracker):
    assert tracker.host == "127.0.0.1"
    assert query_keys(tracker) == {}


@pytest.mark.rpc
def test_missing_key_and_queue_timeout(tracker):
    start = time.monotonic()
    with pytest.raises(DeviceKeyMissingError) as info:
        wait_for_key(tracker, "no-such-phone", timeout=1.0)
    assert "patsparse rpc query" in str(info.value) and "patsparse devices up" in str(info.value)
    with pytest.raises(DeviceKeyMissingError, match="became free within 1 s"):
        request_session(tracker, "no-such-phone", queue_timeout=1.0)
    assert time.monotonic() - start < 15
    # The tracker lists the abandoned request as pending until a server with the key shows
    # up; it then skips it (its connection is closed): test_adreno checks the device is not lost.
    assert query_keys(tracker)["no-such-phone"].free == 0


@pytest.mark.rpc
def test_tracker_and_device_listen_on_loopback_only(tracker, rpc_h):
    import psutil

    rpc_h.require("adreno")
    with rpc_h.start_device("adreno", tracker, key="adreno-loopback") as dev:
        listening = [
            c
            for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN
            and (c.laddr.port == tracker.port or c.pid == dev.proc.pid)
        ]
        ports = {c.laddr.port for c in listening}
        assert tracker.port in ports and len(ports) >= 2  # the tracker and the device server
        assert {c.laddr.ip for c in listening} == {"127.0.0.1"}
