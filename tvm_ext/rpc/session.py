"""RPC tracker and sessions: start/stop a tracker, query its keys, wait for a key, request a
session with separate queue and session timeouts.

A phone (TVM's Android RPC app, a Linux board, or an emulated device from
:mod:`tvm_ext.rpc.devices`) registers at the tracker under a *key*; clients ask the tracker
for a free server with that key. Everything binds to loopback unless a host is given.

Errors name the diagnostic command: ``patsparse rpc query --tracker HOST:PORT``.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from patsparse.core.errors import DeviceKeyMissingError, TrackerUnreachableError
from tvm_ext._compat import RPCTracker, close_rpc_session, rpc, rpc_base

LOOPBACK = "127.0.0.1"
DEFAULT_TRACKER_PORT = 9190


@dataclass(frozen=True)
class TrackerAddress:
    """Where the tracker listens."""

    host: str = LOOPBACK
    port: int = DEFAULT_TRACKER_PORT

    @classmethod
    def parse(cls, text: str) -> TrackerAddress:
        """``HOST:PORT`` (or ``PORT`` alone: loopback)."""
        host, sep, port = text.rpartition(":")
        try:
            return cls(host if sep and host else LOOPBACK, int(port))
        except ValueError:
            raise ValueError(
                f"tracker address {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9190"
            ) from None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def query_command(self) -> str:
        return f"patsparse rpc query --tracker {self}"


@dataclass(frozen=True)
class KeyInfo:
    """Servers registered under one key: ``free`` ones and requests ``pending`` for them."""

    free: int
    pending: int


def _connect(address: TrackerAddress, timeout: float) -> socket.socket:
    try:
        sock = socket.create_connection((address.host, address.port), timeout=timeout)
    except OSError as exc:
        raise TrackerUnreachableError(
            f"no RPC tracker answers at {address} ({exc.strerror or exc}); start one with "
            f"'patsparse rpc tracker --port {address.port}' and check with "
            f"'{address.query_command}'"
        ) from exc
    try:
        sock.sendall(struct.pack("<i", rpc_base.RPC_TRACKER_MAGIC))
        magic = struct.unpack("<i", rpc_base.recvall(sock, 4))[0]
    except OSError as exc:
        sock.close()
        raise TrackerUnreachableError(
            f"{address} accepted a connection but did not answer as an RPC tracker ({exc}); "
            f"check with '{address.query_command}'"
        ) from exc
    if magic != rpc_base.RPC_TRACKER_MAGIC:
        sock.close()
        raise TrackerUnreachableError(
            f"{address} is not an RPC tracker; check with '{address.query_command}'"
        )
    return sock


def summary(address: TrackerAddress, *, timeout: float = 5.0) -> dict[str, Any]:
    """The tracker's summary (``queue_info`` per key, ``server_info`` per server)."""
    sock = _connect(address, timeout)
    try:
        rpc_base.sendjson(sock, [rpc_base.TrackerCode.SUMMARY])
        value = rpc_base.recvjson(sock)
    finally:
        sock.close()
    if value[0] != rpc_base.TrackerCode.SUCCESS:
        raise TrackerUnreachableError(f"tracker at {address} answered {value!r} to a summary")
    return dict(value[1])


def query_keys(address: TrackerAddress, *, timeout: float = 5.0) -> dict[str, KeyInfo]:
    """Registered keys and their free / pending counts."""
    info = summary(address, timeout=timeout).get("queue_info", {})
    return {
        str(k): KeyInfo(int(v.get("free", 0)), int(v.get("pending", 0))) for k, v in info.items()
    }


def wait_for_key(
    address: TrackerAddress, key: str, *, timeout: float = 60.0, poll: float = 0.5, free: int = 1
) -> KeyInfo:
    """Block until ``key`` has ``free`` free servers; :class:`DeviceKeyMissingError` after
    ``timeout`` seconds (the tracker itself must answer at once)."""
    deadline = time.monotonic() + timeout
    keys = query_keys(address)  # unreachable: raise now, not after the timeout
    while True:
        info = keys.get(key)
        if info is not None and info.free >= free:
            return info
        if time.monotonic() >= deadline:
            raise DeviceKeyMissingError(
                f"no free server with key {key!r} at the tracker {address} after {timeout:g} s "
                f"(registered: {_describe(keys)}); check with '{address.query_command}', "
                f"start an emulated device with 'patsparse devices up arm64|adreno --tracker "
                f"{address}' or connect the phone's RPC app with this key"
            )
        time.sleep(poll)
        keys = query_keys(address)


def _describe(keys: dict[str, KeyInfo]) -> str:
    if not keys:
        return "none"
    return ", ".join(f"{k} ({v.free} free, {v.pending} pending)" for k, v in sorted(keys.items()))


def request_session(
    address: TrackerAddress,
    key: str,
    *,
    queue_timeout: float = 60.0,
    session_timeout: float = 0.0,
    priority: int = 1,
) -> Any:
    """A session on a server with ``key``.

    ``queue_timeout`` bounds the wait for a free server (the device may be busy with another
    client); ``session_timeout`` starts only once connected and lets the server end a session
    that outlives it (0: no limit). A candidate is therefore never blamed for time spent in
    the queue.
    """
    sock = _connect(address, timeout=min(queue_timeout, 10.0) or 10.0)
    try:
        sock.settimeout(queue_timeout if queue_timeout > 0 else None)
        rpc_base.sendjson(sock, [rpc_base.TrackerCode.REQUEST, key, "", priority])
        try:
            value = rpc_base.recvjson(sock)
        except TimeoutError as exc:
            raise DeviceKeyMissingError(
                f"no server with key {key!r} became free within {queue_timeout:g} s at the "
                f"tracker {address}; check with '{address.query_command}'"
            ) from exc
    finally:
        sock.close()  # the tracker drops a request whose connection is gone
    if value[0] != rpc_base.TrackerCode.SUCCESS:
        raise DeviceKeyMissingError(f"tracker at {address} refused key {key!r}: {value!r}")
    url, port, matchkey = value[1]
    return rpc.connect(url, port, matchkey, session_timeout)


@contextmanager
def open_session(
    address: TrackerAddress,
    key: str,
    *,
    queue_timeout: float = 60.0,
    session_timeout: float = 0.0,
    priority: int = 1,
) -> Iterator[Any]:
    """:func:`request_session` for a ``with`` block; the device is free again right after it
    (TVM sessions have no ``close()``; see :func:`tvm_ext._compat.close_rpc_session`)."""
    session = request_session(
        address,
        key,
        queue_timeout=queue_timeout,
        session_timeout=session_timeout,
        priority=priority,
    )
    try:
        yield session
    finally:
        close_rpc_session(session)


class Tracker:
    """An RPC tracker for the duration of a ``with`` block (its own process).

    ``with Tracker() as t: ...`` listens on loopback at the first free port from ``port``;
    ``t.address`` says where. Binding elsewhere (``host="0.0.0.0"`` for phones on the LAN) is
    an explicit choice.
    """

    def __init__(
        self, *, host: str = LOOPBACK, port: int = DEFAULT_TRACKER_PORT, port_end: int | None = None
    ) -> None:
        self.host, self.port, self.port_end = host, port, port_end or port + 100
        self._tracker: Any = None

    @property
    def address(self) -> TrackerAddress:
        if self._tracker is None:
            raise RuntimeError("the tracker is not running (use it as a context manager)")
        connect_host = LOOPBACK if self.host in ("0.0.0.0", "") else self.host
        return TrackerAddress(connect_host, int(self._tracker.port))

    def start(self) -> Tracker:
        self._tracker = RPCTracker(self.host, self.port, self.port_end, silent=True)
        deadline = time.monotonic() + 30
        while True:  # ready once it answers a summary
            try:
                summary(self.address, timeout=2.0)
                return self
            except TrackerUnreachableError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self._tracker is not None:
            self._tracker.terminate()
            self._tracker = None

    def __enter__(self) -> Tracker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
