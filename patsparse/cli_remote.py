"""``patsparse rpc`` and ``patsparse devices``: the RPC tracker and emulated devices.

Registered by :func:`add_parser` (one hook, so patsparse/cli.py only names this module);
:func:`add_device_args` adds ``--tracker`` / ``--key`` to ``tune``, ``compile`` and ``bench``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from patsparse.core.errors import PatsparseError

DEFAULT_TRACKER = "127.0.0.1:9190"


def add_device_args(p: argparse.ArgumentParser) -> None:
    """``--tracker HOST:PORT --key KEY``: run / measure on that device over RPC."""
    p.add_argument("--tracker", default=None, help="RPC tracker HOST:PORT of the device")
    p.add_argument("--key", default=None, help="device key at the tracker (patsparse rpc query)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``rpc`` and ``devices``; each sets ``args.run_command``."""
    rpc = sub.add_parser(
        "rpc",
        help="TVM RPC tracker: run one, list the device keys registered at one",
        description="Phones (TVM's Android RPC app, Linux boards) and emulated devices "
        "register at a tracker under a key; tune/compile --tracker/--key use them.",
    )
    rsub = rpc.add_subparsers(dest="rpc_command", required=True)
    tr = rsub.add_parser("tracker", help="run a tracker in the foreground (Ctrl-C stops it)")
    tr.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (loopback; 0.0.0.0 to let phones on the network register)",
    )
    tr.add_argument("--port", type=int, default=9190)
    tr.add_argument("--seconds", type=float, default=None, help="stop after this long")
    tr.set_defaults(run_command=_cmd_tracker)
    q = rsub.add_parser("query", help="keys registered at a tracker (free / pending)")
    q.add_argument("--tracker", default=DEFAULT_TRACKER)
    q.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    q.set_defaults(run_command=_cmd_query)

    dev = sub.add_parser(
        "devices",
        help="emulated phones: arm64 CPU (qemu-user) and Adreno OpenCL (PoCL)",
        description="'up' starts an emulated device in the background and waits until it is "
        "registered at the tracker; 'down' stops it. Needs qemu-user-static, mmdebstrap, "
        "g++-aarch64-linux-gnu (arm64) or pocl-opencl-icd + pyopencl (adreno).",
    )
    dsub = dev.add_subparsers(dest="devices_command", required=True)
    up = dsub.add_parser("up", help="start an emulated device")
    up.add_argument("kind", choices=("arm64", "adreno", "host"))
    up.add_argument("--tracker", default=DEFAULT_TRACKER)
    up.add_argument("--key", default=None, help="default: arm64-qemu / adreno-pocl / host-cpu")
    up.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    up.set_defaults(run_command=_cmd_up)
    down = dsub.add_parser("down", help="stop emulated devices started with 'up'")
    down.add_argument("kind", nargs="?", default="all", choices=("arm64", "adreno", "host", "all"))
    down.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    down.set_defaults(run_command=_cmd_down)


def _stop_on_sigterm(*_: object) -> None:
    raise KeyboardInterrupt  # leave the with-block: the tracker process is stopped too


def _cmd_tracker(args: argparse.Namespace) -> None:
    import signal

    from tvm_ext.rpc.session import Tracker

    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    with Tracker(host=args.host, port=args.port) as tracker:
        print(f"RPC tracker on {args.host}:{tracker.address.port} (Ctrl-C stops it)", flush=True)
        try:
            deadline = time.monotonic() + args.seconds if args.seconds else None
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass


def _cmd_query(args: argparse.Namespace) -> None:
    from tvm_ext.rpc.session import TrackerAddress, query_keys

    keys = query_keys(TrackerAddress.parse(args.tracker))
    if args.json:
        data: dict[str, Any] = {
            "tracker": args.tracker,
            "keys": {k: {"free": v.free, "pending": v.pending} for k, v in keys.items()},
        }
        print(json.dumps(data, indent=2))
        return
    print(f"tracker {args.tracker}: {len(keys)} key(s)")
    for k, v in sorted(keys.items()):
        print(f"  {k:<24} free {v.free}  pending {v.pending}")


def _cmd_up(args: argparse.Namespace) -> None:
    from tvm_ext.rpc.devices import DeviceConfig, start_detached
    from tvm_ext.rpc.session import TrackerAddress

    state = start_detached(DeviceConfig(args.kind, TrackerAddress.parse(args.tracker), args.key))
    if args.json:
        print(json.dumps(state, indent=2))
    else:
        print(
            f"emulated {state['kind']} device up: key {state['key']} at {state['tracker']} "
            f"(pid {state['pid']}, log {state['log']}); stop with 'patsparse devices down'"
        )


def _cmd_down(args: argparse.Namespace) -> None:
    from tvm_ext.rpc.devices import stop_detached

    stopped = stop_detached(args.kind)
    if args.json:
        print(json.dumps({"stopped": stopped}, indent=2))
        return
    if not stopped:
        print("no emulated device was running")
    for s in stopped:
        print(f"stopped {s['kind']} ({s['key']}, pid {s['pid']})")


def run(args: argparse.Namespace) -> None:
    """Dispatch a parsed ``rpc`` / ``devices`` command."""
    if not hasattr(args, "run_command"):
        raise PatsparseError(f"no handler for {args.command!r}")
    args.run_command(args)
