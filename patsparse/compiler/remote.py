"""Devices behind a TVM RPC tracker: the tracker itself, emulated devices, measuring there."""

from __future__ import annotations

import time
from typing import Any

from patsparse.core.errors import PatsparseError
from tvm_ext.rpc.devices import DeviceConfig, start_detached, stop_detached
from tvm_ext.rpc.runner import measure_on_device
from tvm_ext.rpc.session import Tracker, TrackerAddress, query_keys, wait_for_key
from tvm_ext.targets import is_cross


def remote_measure(target: Any, tracker: str | None, key: str | None) -> tuple[Any, Any]:
    """(builder, runner) measuring on the device ``key`` at ``tracker``; (None, None) for
    this machine. Remote targets without a tracker are an error naming the fix."""
    if not tracker:
        if is_cross(target):
            raise PatsparseError(
                f"{target.kind.name} code cannot run on this machine: pass --tracker HOST:PORT "
                "and --key KEY of a phone or an emulated device ('patsparse devices up arm64 "
                "--tracker HOST:PORT'; list keys with 'patsparse rpc query')"
            )
        return None, None
    if not key:
        raise PatsparseError("--tracker needs --key (list keys with 'patsparse rpc query')")
    address = TrackerAddress.parse(tracker)
    wait_for_key(address, key, timeout=10.0)  # clear error now rather than failed trials
    return measure_on_device(target, address, key)


def run_tracker(host: str, port: int, *, seconds: float | None = None) -> None:
    """Run a tracker in the foreground until ``seconds`` pass or Ctrl-C (SIGTERM too)."""
    import signal

    def _stop(*_: object) -> None:
        raise KeyboardInterrupt  # leave the with-block: the tracker process is stopped too

    signal.signal(signal.SIGTERM, _stop)
    with Tracker(host=host, port=port) as tracker:
        print(f"RPC tracker on {host}:{tracker.address.port} (Ctrl-C stops it)", flush=True)
        try:
            deadline = time.monotonic() + seconds if seconds else None
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass


def tracker_keys(tracker: str) -> dict[str, dict[str, int]]:
    """Keys registered at the tracker ``HOST:PORT``, with their free / pending servers."""
    keys = query_keys(TrackerAddress.parse(tracker))
    return {k: {"free": v.free, "pending": v.pending} for k, v in keys.items()}


def device_up(kind: str, tracker: str, key: str | None = None) -> dict[str, Any]:
    """Start an emulated device (``arm64``, ``adreno``, ``host``) in the background, wait until
    it is registered at the tracker; its state (kind, key, pid, log)."""
    return dict(start_detached(DeviceConfig(kind, TrackerAddress.parse(tracker), key)))


def devices_down(kind: str = "all") -> list[dict[str, Any]]:
    """Stop the emulated devices started with :func:`device_up`; what was stopped."""
    return list(stop_detached(kind))
