"""``patsparse compile``: compile a pruned model with TVM (pattern-sparse kernels) and report
per layer (:func:`format_compile`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from patsparse.cli.options import (
    DEFAULT_TARGET,
    ZOO_COMPRESSION,
    add_device_args,
    add_json,
    add_scheme_args,
    add_verify,
    print_json,
    scheme_of,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compile",
        help="compile a pruned model with TVM (pattern-sparse kernels) and report per layer",
        description="MODEL is a checkpoint written by 'patsparse prune --out' or a zoo name "
        "(pruned one-shot with --scheme/--compression on random weights). Prints, per conv: "
        "rewritten or why not, fused ops, storage (dense/CSR/ours), max abs error.",
    )
    p.add_argument("model", help="checkpoint path or zoo model name")
    p.add_argument(
        "--target", default=DEFAULT_TARGET, help="compilation target (host, arm64, adreno)"
    )
    add_scheme_args(p, compression=ZOO_COMPRESSION, help_compression="compression of a zoo model")
    add_verify(p)
    p.add_argument("--out", default=None, help="export the compiled library here (.so)")
    p.add_argument(
        "--logs",
        default=None,
        help="apply MetaSchedule logs: a directory, or 'auto' for tuning_logs/<model>/<target>",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="time every op against PyTorch's same op (host target); warn where slower",
    )
    add_device_args(p)
    add_json(p)
    p.set_defaults(run=run)


def format_compile(summary: dict[str, Any]) -> str:
    """The per-conv table and totals of a :func:`patsparse.compiler.compile.compile_model`
    summary."""
    lines = [
        f"{'conv':<5}{'weight':<20}{'result':<10}{'kind':<8}{'fused':<34}"
        f"{'dense/CSR/ours bytes':>26}{'max err':>10}  reason"
    ]
    for r in summary["layers"]:
        sb = r["storage_bytes"]
        store = f"{sb['dense']}/{sb['csr']}/{sb['ours']}" if sb else "-"
        err = f"{r['max_abs_error']:.1e}" if r["max_abs_error"] is not None else "-"
        lines.append(
            f"{r['index']:<5}{'x'.join(map(str, r['weight_shape'])):<20}"
            f"{'rewritten' if r['rewritten'] else 'kept':<10}{r['kind'] or '-':<8}"
            f"{'+'.join(r['fused']) or '-':<34}{store:>26}{err:>10}  "
            f"{'' if r['rewritten'] else r['reason']}"
        )
    for d in summary["unread_filters"]:
        lines.append(
            f"conv {'x'.join(map(str, d['consumer_shape']))} reads {d['read']} of its "
            f"{d['channels']} input channels: "
            + (
                f"conv {'x'.join(map(str, d['producer_shape']))} before it now computes "
                f"{d['computed']} ({' -> '.join(['conv2d', *d['through']])})"
                if d["rewritten"]
                else f"the others are still computed ({d['reason']})"
            )
        )
    st = summary["storage_bytes_rewritten_layers"]
    lines.append(
        f"{summary['rewritten']}/{summary['convs']} convs rewritten, "
        f"{len(summary['compacted'])} structured convs compacted, {len(summary['blocked'])} "
        f"other convs on the blocked kernel; rewritten weights: dense "
        f"{st['dense']} B, CSR {st['csr']} B, ours {st['ours']} B; max abs error vs PyTorch "
        + (
            f"{summary['max_abs_error_vs_pytorch']:.2e}"
            if summary["max_abs_error_vs_pytorch"] is not None
            else "- (compiled for another device; --tracker/--key run arm64 models there)"
        )
        + f"; compile {summary['compile_seconds']} s"
    )
    check = summary.get("verification")
    if check is not None:
        lines.append(
            f"verified end to end against PyTorch on random input: {len(check['outputs'])} "
            f"output(s) within bounds ({check['seconds']} s)"
        )
    elif summary["max_abs_error_vs_pytorch"] is not None:
        lines.append("not verified (--no-verify)")
    if summary.get("remote_latency_ms") is not None:
        lines.append(f"remote latency (median): {summary['remote_latency_ms']:.3f} ms")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    from patsparse.compiler.compile import compile_model
    from patsparse.compiler.tune import logs_for
    from patsparse.model_spec import load_model_spec

    model, arch, source = load_model_spec(args.model, scheme=scheme_of(args))
    logs = logs_for(arch, args.target) if args.logs == "auto" else args.logs
    result = compile_model(
        model,
        arch,
        target=args.target,
        verify=not args.no_verify,
        export=args.out,
        logs=logs,
        tracker=args.tracker,
        key=args.key,
    )
    summary = {"source": source, **result.summary}
    warnings = [f"unscheduled (runs as plain loops): {name}" for name in summary["unscheduled"]]
    rows = []
    if args.profile and summary["max_abs_error_vs_pytorch"] is not None:  # runs here
        import torch

        from patsparse.compiler.op_profile import profile_ops, slow_op_warnings
        from patsparse.models import default_input_shape

        x = torch.randn(default_input_shape(arch), generator=torch.Generator().manual_seed(0))
        rows = profile_ops(result.compiled, model, x)
        warnings += [f"slower than PyTorch: {line}" for line in slow_op_warnings(rows)]
    if args.json:
        print_json(
            {**summary, "profile": [r.to_dict() for r in rows], "warnings": warnings}
            if args.profile
            else {**summary, "warnings": warnings}
        )
    else:
        print(f"{source}\n{format_compile(summary)}")
        if rows:
            from patsparse.compiler.op_profile import format_profile

            print(format_profile(rows))
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
