"""``patsparse profile``: every op of a compiled model timed against PyTorch's same op."""

from __future__ import annotations

import argparse
import sys

from patsparse.cli.options import (
    ZOO_COMPRESSION,
    add_json,
    add_scheme_args,
    print_json,
    scheme_of,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help="time every op of the compiled model against PyTorch's same op",
        description="MODEL is a checkpoint or a zoo name (pruned one-shot with "
        "--scheme/--compression on random weights). Compiles it for this machine and times "
        "each compiled function inside whole-model runs next to the PyTorch ops it stands "
        "for: op, shape, kind, ms, PyTorch ms, ratio. Ops slower than PyTorch are flagged.",
    )
    p.add_argument("model", help="checkpoint path or zoo model name")
    add_scheme_args(p, compression=ZOO_COMPRESSION, help_compression="compression of a zoo model")
    p.add_argument("--threads", type=int, default=2, help="threads for TVM and PyTorch")
    p.add_argument("--repeat", type=int, default=10, help="whole-model runs timed per engine")
    p.add_argument("--limit", type=int, default=40, help="rows printed, slowest first")
    add_json(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    import torch

    from patsparse.bench.core_link import far_apart_line, round_trips
    from patsparse.compiler.op_profile import format_profile, profile_model, slow_op_warnings
    from patsparse.model_spec import load_model_spec
    from patsparse.models import default_input_shape

    model, arch, source = load_model_spec(args.model, scheme=scheme_of(args))
    x = torch.randn(default_input_shape(arch), generator=torch.Generator().manual_seed(0))
    with round_trips() as link:  # how far apart the host had put the two CPUs
        compiled, rows = profile_model(model, x, threads=args.threads, repeat=args.repeat)
    unscheduled = [r.name for r in compiled.schedule_records if r.schedule is None]
    if args.json:
        print_json(
            {
                "source": source,
                "threads": args.threads,
                "ops": [r.to_dict() for r in rows],
                "slower_than_pytorch": slow_op_warnings(rows),
                "unscheduled": unscheduled,
                "core_round_trip_ns": link,
            }
        )
        return
    print(f"{source}, {args.threads} threads, median of {args.repeat} runs")
    print(format_profile(rows, limit=args.limit))
    for line in slow_op_warnings(rows):
        print(f"warning: slower than PyTorch: {line}", file=sys.stderr)
    far = far_apart_line(link) if args.threads > 1 else None
    if far:
        print(f"warning: {far}", file=sys.stderr)
