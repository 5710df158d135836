"""Emulated devices that speak the real TVM RPC protocol, for anyone without a phone.

- ``arm64``: :mod:`tvm_ext.rpc.device_server` under ``qemu-aarch64-static`` in the cached
  arm64 root (:mod:`tvm_ext.rpc.arm64_root`): the aarch64 apache-tvm runtime loads the
  cross-compiled libraries exactly as a phone's would. Timings say nothing about a phone.
- ``adreno``: the same server on this machine with our OpenCL executor registered
  (:mod:`tvm_ext.rpc.opencl`): it runs the kernels TVM generates for the ``adreno`` target
  with pyopencl on PoCL. The wheel has no OpenCL runtime, so this replaces TVM's; a real
  phone with TVM's Android RPC app runs the same kernels through the stock runtime.
- ``host``: the same server on this machine, nothing emulated (a stand-in for a Linux board
  of the same architecture; handy to exercise RPC tuning without qemu).

``with EmulatedDevice("arm64", tracker) as dev:`` starts one, waits until its key is
registered and stops it on exit; :func:`start_detached` / :func:`stop_detached` back
``patsparse devices up`` / ``down``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from patsparse.core.errors import DeviceSetupError
from tvm_ext.rpc.arm64_root import Arm64Root, cache_dir, missing_tools
from tvm_ext.rpc.session import LOOPBACK, TrackerAddress, query_keys, wait_for_key

DEVICE_KINDS = ("arm64", "adreno", "host")
#: default tracker keys and server port ranges of the emulated devices
DEFAULT_KEYS = {"arm64": "arm64-qemu", "adreno": "adreno-pocl", "host": "host-cpu"}
DEFAULT_PORTS = {"arm64": 9100, "adreno": 9150, "host": 9200}
SERVER_SCRIPT = Path(__file__).with_name("device_server.py")
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DeviceConfig:
    """One emulated device: kind, tracker, key (default per kind), where its server listens."""

    kind: str
    tracker: TrackerAddress
    key: str | None = None
    host: str = LOOPBACK
    port: int | None = None
    start_timeout: float = 180.0
    version: int = 1

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "tracker": str(self.tracker)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DeviceConfig:
        data = json.loads(text)
        return cls(**{**data, "tracker": TrackerAddress.parse(data["tracker"])})

    def __post_init__(self) -> None:
        if self.kind not in DEVICE_KINDS:
            raise ValueError(
                f"unknown emulated device {self.kind!r}; use one of {', '.join(DEVICE_KINDS)}"
            )

    @property
    def resolved_key(self) -> str:
        return self.key or DEFAULT_KEYS[self.kind]

    @property
    def resolved_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.kind]


def missing_for(kind: str) -> list[str]:
    """Debian packages (or pip packages) the device ``kind`` needs and this machine lacks."""
    if kind == "arm64":
        return missing_tools()
    if kind == "host":
        return []
    missing = []
    try:
        import pyopencl  # noqa: F401
    except ImportError:
        missing.append("pyopencl (pip)")
    if not Path("/etc/OpenCL/vendors").is_dir() or not any(Path("/etc/OpenCL/vendors").iterdir()):
        missing.append("pocl-opencl-icd")
    return missing


def server_command(config: DeviceConfig) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of the device's server process."""
    port = config.resolved_port
    args = [
        str(SERVER_SCRIPT),
        "--tracker",
        str(config.tracker),
        "--key",
        config.resolved_key,
        "--host",
        config.host,
        "--port",
        str(port),
        "--port-end",
        str(port + 50),
    ]
    env = dict(os.environ)
    if config.kind == "arm64":
        root = Arm64Root.default().ensure()
        qemu = shutil.which("qemu-aarch64-static") or "qemu-aarch64-static"
        env.update(
            TVM_USE_RUNTIME_LIB="1",
            PYTHONPATH=str(root.site),
            PYTHONNOUSERSITE="1",
            PYTHONDONTWRITEBYTECODE="1",
        )
        return [qemu, "-L", str(root.path), str(root.python), *args], env
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    env.setdefault("TVM_NUM_THREADS", "1")
    if config.kind == "host":
        return [sys.executable, *args], env
    return [sys.executable, *args, "--init", "tvm_ext.rpc.opencl:register"], env


class EmulatedDevice:
    """An emulated device for the duration of a ``with`` block (see the module docstring)."""

    def __init__(self, config: DeviceConfig, *, log: Path | None = None) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def key(self) -> str:
        return self.config.resolved_key

    def start(self) -> EmulatedDevice:
        missing = missing_for(self.config.kind)
        if missing:
            raise DeviceSetupError(
                f"the emulated {self.config.kind} device needs {', '.join(missing)}; install "
                "them (apt-get install / pip install) as .ci/run does"
            )
        query_keys(self.config.tracker)  # tracker unreachable: say so before starting
        before = _free_servers(self.config.tracker, self.key)
        cmd, env = server_command(self.config)
        out: Any = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        try:
            # own session: stop() ends the server and the sessions it forked, nothing else
            self.proc = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            if self.log:
                out.close()
        try:
            self._wait_registered(before)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_registered(self, before: int) -> None:
        deadline = time.monotonic() + self.config.start_timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                tail = self.log.read_text()[-2000:] if self.log and self.log.exists() else ""
                raise DeviceSetupError(
                    f"the emulated {self.config.kind} server exited with {self.proc.returncode} "
                    f"before registering{': ' + tail if tail else ''}"
                )
            if _free_servers(self.config.tracker, self.key) > before:
                return
            if time.monotonic() > deadline:
                wait_for_key(self.config.tracker, self.key, timeout=0)  # raises, with advice
                return
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            _kill_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _kill_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL), as a crashing phone app would go."""
        if self.proc is not None and self.proc.poll() is None:
            _kill_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def __enter__(self) -> EmulatedDevice:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_servers(tracker: TrackerAddress, key: str) -> int:
    info = query_keys(tracker).get(key)
    return info.free if info else 0


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)  # the group this server leads (started with start_new_session)


# --- detached devices (patsparse devices up / down) --------------------------------------


def state_dir() -> Path:
    return cache_dir() / "devices"


def start_detached(config: DeviceConfig) -> dict[str, Any]:
    """Start a device that outlives this process; its state goes to :func:`state_dir`."""
    state_dir().mkdir(parents=True, exist_ok=True)
    log = state_dir() / f"{config.resolved_key}.log"
    dev = EmulatedDevice(config, log=log).start()
    assert dev.proc is not None
    state = {
        "pid": dev.proc.pid,
        "kind": config.kind,
        "key": config.resolved_key,
        "tracker": str(config.tracker),
        "log": str(log),
        "config": json.loads(config.to_json()),
    }
    (state_dir() / f"{config.resolved_key}.json").write_text(json.dumps(state, indent=1))
    dev.proc = None  # detach: the process keeps running
    return state


def running_detached() -> list[dict[str, Any]]:
    """States of the detached devices whose process still runs our server."""
    out = []
    for path in sorted(state_dir().glob("*.json")) if state_dir().is_dir() else []:
        state = json.loads(path.read_text())
        if _is_our_server(int(state["pid"])):
            out.append(state)
        else:
            path.unlink()  # stale
    return out


def stop_detached(kind: str | None = None) -> list[dict[str, Any]]:
    """Stop detached devices (all, or those of ``kind``); returns what was stopped."""
    stopped = []
    for state in running_detached():
        if kind not in (None, "all", state["kind"]):
            continue
        pid = int(state["pid"])
        _kill_group(pid, signal.SIGTERM)
        for _ in range(50):
            if not _is_our_server(pid):
                break
            time.sleep(0.1)
        else:
            _kill_group(pid, signal.SIGKILL)
        (state_dir() / f"{state['key']}.json").unlink(missing_ok=True)
        stopped.append(state)
    return stopped


def _is_our_server(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return SERVER_SCRIPT.name.encode() in cmdline
