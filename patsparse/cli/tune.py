"""``patsparse tune``: tune every task of a pruned model with MetaSchedule."""

from __future__ import annotations

import argparse

from patsparse.cli.options import (
    DEFAULT_TARGET,
    ZOO_COMPRESSION,
    add_device_args,
    add_json,
    add_scheme_args,
    print_json,
    scheme_of,
)
from patsparse.core.errors import PatsparseError

#: trials per task unless --trials says otherwise
DEFAULT_TRIALS = 32


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="tune every task of a pruned model with MetaSchedule (XGBoost cost model)",
        description="Writes a MetaSchedule JSON database to tuning_logs/<model>/<target key>. "
        "A second run tunes nothing; an interrupted run resumes. MODEL as for compile.",
    )
    p.add_argument("model", help="checkpoint path or zoo model name")
    p.add_argument(
        "--target", default=DEFAULT_TARGET, help="host, arm64 or adreno (with --tracker)"
    )
    p.add_argument("--trials", type=int, default=DEFAULT_TRIALS, help="trials per task")
    add_scheme_args(p, compression=ZOO_COMPRESSION, help_compression="compression of a zoo model")
    p.add_argument(
        "--logs-root", default=None, help="where tuning logs live (default: ./tuning_logs)"
    )
    add_device_args(p)
    add_json(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from patsparse.compiler.tune import DEFAULT_LOG_ROOT, tune_model
    from patsparse.model_spec import load_model_spec

    if args.trials < 1:
        raise PatsparseError(f"--trials must be >= 1, got {args.trials}")
    model, arch, source = load_model_spec(args.model, scheme=scheme_of(args))
    report = tune_model(
        model,
        arch,
        target=args.target,
        trials_per_task=args.trials,
        logs_root=args.logs_root or DEFAULT_LOG_ROOT,
        tracker=args.tracker,
        key=args.key,
        progress=True,
    )
    if args.json:
        print_json({"source": source, **report})
        return
    print(
        f"{source}: {report['tasks']} tasks, tuned {len(report['tuned'])}, skipped "
        f"{len(report['skipped'])} (already tuned), {report['trials']} new trials "
        f"({report['failed']} failed, retried by the next run) in "
        f"{report['seconds']:.0f} s -> {report['work_dir']}"
    )
    if report.get("hand_scheduled"):
        print(
            f"  not tuned (hand-scheduled kernels, kept as they are): "
            f"{', '.join(report['hand_scheduled'])}"
        )
    for name, ms in sorted(report["best_ms"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:<40} {ms:9.4f} ms")
