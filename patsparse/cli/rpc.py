"""``patsparse rpc``: run a TVM RPC tracker, list the device keys registered at one.

Phones (TVM's Android RPC app, Linux boards) and emulated devices (``patsparse devices``)
register at a tracker under a key; ``tune``/``compile``/``bench`` ``--tracker/--key`` use
them.
"""

from __future__ import annotations

import argparse

from patsparse.cli.options import DEFAULT_TRACKER, add_json, print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    tr.add_argument("--port", type=int, default=int(DEFAULT_TRACKER.rpartition(":")[2]))
    tr.add_argument("--seconds", type=float, default=None, help="stop after this long")
    tr.set_defaults(run=run_tracker)
    q = rsub.add_parser("query", help="keys registered at a tracker (free / pending)")
    q.add_argument("--tracker", default=DEFAULT_TRACKER)
    add_json(q)
    q.set_defaults(run=run_query)


def run_tracker(args: argparse.Namespace) -> None:
    from patsparse.compiler.remote import run_tracker

    run_tracker(args.host, args.port, seconds=args.seconds)


def run_query(args: argparse.Namespace) -> None:
    from patsparse.compiler.remote import tracker_keys

    keys = tracker_keys(args.tracker)
    if args.json:
        print_json({"tracker": args.tracker, "keys": keys})
        return
    print(f"tracker {args.tracker}: {len(keys)} key(s)")
    for k, v in sorted(keys.items()):
        print(f"  {k:<24} free {v['free']}  pending {v['pending']}")
