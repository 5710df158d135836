"""``patsparse bench``: a pruned model through patsparse vs PyTorch and TVM dense, side by
side (:mod:`patsparse.bench`). Every default is :class:`~patsparse.bench.config.BenchConfig`'s."""

from __future__ import annotations

import argparse
from typing import Any

from patsparse.bench.config import OTHERS, BenchConfig
from patsparse.bench.torch_timing import CLOCKS
from patsparse.cli.options import add_device_args, add_json, add_verify, default_of, print_json


def _default(name: str) -> Any:
    return default_of(BenchConfig, name)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from patsparse.schemes import scheme_names

    p = sub.add_parser(
        "bench",
        help="speed of a pruned model through patsparse vs PyTorch and TVM dense, side by side",
        description="Prunes zoo MODEL(s) with random weights at the papers' rate (VGG-16 12x, "
        "ResNet-18 8x, ResNet-50 5.8x; --compression overrides), compiles with the tuning logs "
        "under tuning_logs/<model>/<target key> (made first with --trials N), and measures end "
        "to end and per 3x3 layer: patsparse, TVM dense (blocked kernel; stock lowering when "
        "tuned), PyTorch dense; FLOP reduction, efficiency, compile/tuning time, storage, "
        "peak memory. Median (min-max) of --repeat runs.",
    )
    p.add_argument("models", nargs="+", help="zoo model name(s), e.g. resnet18-imagenet")
    p.add_argument("--scheme", default=_default("scheme"), choices=scheme_names())
    p.add_argument(
        "--compression",
        type=float,
        default=_default("compression"),
        help="default: the papers' rate",
    )
    p.add_argument(
        "--block-size", type=int, default=_default("block_size"), help="filters per block"
    )
    p.add_argument(
        "--others",
        default=_default("others"),
        choices=OTHERS,
        help="1x1 convs and linear layers: block-pruned at the same rate, or dense",
    )
    p.add_argument(
        "--trials", type=int, default=_default("trials"), help="tune first (trials per task)"
    )
    # None: BenchConfig's own root (the compiler's tuning_logs), read when the command runs
    p.add_argument(
        "--logs-root", default=None, help="where tuning logs live (default: ./tuning_logs)"
    )
    p.add_argument("--no-logs", action="store_true", help="default schedules only")
    p.add_argument(
        "--prune-logs",
        action="store_true",
        help="after tuning, drop the logs' workloads (and records) that are no task of the "
        "model any more, e.g. kernels from before a layout change",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=_default("repeat"),
        help="timed runs per engine, in interleaved rounds",
    )
    p.add_argument(
        "--max-spread",
        type=float,
        default=_default("max_spread"),
        help="flag a measurement whose max/min exceeds this (its ratios are not reported "
        "as figures)",
    )
    p.add_argument("--threads", type=int, default=_default("threads"), help="default: all cores")
    p.add_argument("--no-layers", action="store_true", help="skip the per-layer table")
    p.add_argument("--no-memory", action="store_true", help="skip peak-memory probes")
    p.add_argument("--no-tvm-dense", action="store_true", help="skip the TVM dense engines")
    p.add_argument(
        "--clock",
        default=_default("clock"),
        choices=tuple(CLOCKS),
        help="wall time, or process CPU time (busy shared machines; use with --threads 1)",
    )
    p.add_argument(
        "--target",
        default=_default("target"),
        help="host, or arm64 on a device behind --tracker/--key (the engines run there and "
        "are compared with TVM dense on the device; PyTorch is not run)",
    )
    add_device_args(p)
    add_verify(p)
    add_json(p)
    p.set_defaults(run=run)


def bench_config(args: argparse.Namespace, model: str) -> BenchConfig:
    """The :class:`BenchConfig` of one model the bench options name."""
    logs_root = None if args.no_logs else args.logs_root or _default("logs_root")
    return BenchConfig(
        model=model,
        scheme=args.scheme,
        compression=args.compression,
        block_size=args.block_size,
        others=args.others,
        trials=args.trials,
        repeat=args.repeat,
        max_spread=args.max_spread,
        threads=args.threads,
        layers=not args.no_layers,
        tvm_dense=not args.no_tvm_dense,
        memory=not args.no_memory,
        clock=args.clock,
        prune_logs=args.prune_logs,
        verify=not args.no_verify,
        target=args.target,
        tracker=args.tracker,
        key=args.key,
        logs_root=logs_root,
    )


def run(args: argparse.Namespace) -> None:
    from patsparse.bench.format import format_bench
    from patsparse.bench.isolate import run_bench_isolated
    from patsparse.bench.run import run_bench

    configs = [bench_config(args, m) for m in args.models]  # all checked before anything runs
    results = []
    for cfg in configs:
        # several models: each in a fresh process (no model inherits another's process state)
        res = run_bench_isolated(cfg) if len(configs) > 1 else run_bench(cfg)
        results.append(res)
        if not args.json:
            print(format_bench(res), flush=True)
    if args.json:
        print_json(results if len(results) > 1 else results[0])
