"""``patsparse devices``: emulated phones (arm64 CPU on qemu-user, Adreno OpenCL on PoCL)
started in the background and registered at a tracker, and stopped."""

from __future__ import annotations

import argparse

from patsparse.cli.options import DEFAULT_TRACKER, add_json, print_json

KINDS = ("arm64", "adreno", "host")


def add_parser(sub: argparse._SubParsersAction) -> None:
    dev = sub.add_parser(
        "devices",
        help="emulated phones: arm64 CPU (qemu-user) and Adreno OpenCL (PoCL)",
        description="'up' starts an emulated device in the background and waits until it is "
        "registered at the tracker; 'down' stops it. Needs qemu-user-static, mmdebstrap, "
        "g++-aarch64-linux-gnu (arm64) or pocl-opencl-icd + pyopencl (adreno).",
    )
    dsub = dev.add_subparsers(dest="devices_command", required=True)
    up = dsub.add_parser("up", help="start an emulated device")
    up.add_argument("kind", choices=KINDS)
    up.add_argument("--tracker", default=DEFAULT_TRACKER)
    up.add_argument("--key", default=None, help="default: arm64-qemu / adreno-pocl / host-cpu")
    add_json(up)
    up.set_defaults(run=run_up)
    down = dsub.add_parser("down", help="stop emulated devices started with 'up'")
    down.add_argument("kind", nargs="?", default="all", choices=(*KINDS, "all"))
    add_json(down)
    down.set_defaults(run=run_down)


def run_up(args: argparse.Namespace) -> None:
    from patsparse.compiler.remote import device_up

    state = device_up(args.kind, args.tracker, args.key)
    if args.json:
        print_json(state)
    else:
        print(
            f"emulated {state['kind']} device up: key {state['key']} at {state['tracker']} "
            f"(pid {state['pid']}, log {state['log']}); stop with 'patsparse devices down'"
        )


def run_down(args: argparse.Namespace) -> None:
    from patsparse.compiler.remote import devices_down

    stopped = devices_down(args.kind)
    if args.json:
        print_json({"stopped": stopped})
        return
    if not stopped:
        print("no emulated device was running")
    for s in stopped:
        print(f"stopped {s['kind']} ({s['key']}, pid {s['pid']})")
