"""``patsparse patterns``: show a pattern library."""

from __future__ import annotations

import argparse
import json

from patsparse.cli.options import add_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    from patsparse.schemes.options import DEFAULT_LIBRARY

    p = sub.add_parser("patterns", help="show a pattern library")
    p.add_argument("--library", default=DEFAULT_LIBRARY)
    add_json(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from patsparse.core.patterns import get_library

    lib = get_library(args.library)
    if args.json:
        print(json.dumps({**lib.to_dict(), "interpolation": lib.interpolate().tolist()}))
        return
    print(f"library {lib.name!r}: {len(lib)} patterns, {lib.nonzeros} weights each")
    if len(lib) <= 16:
        print(lib.render())
    print("interpolation (sum of masks):")
    print(lib.interpolate())
