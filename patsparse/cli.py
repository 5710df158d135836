"""The ``patsparse`` command line.

Subcommands: ``demo`` (the main job), ``prune``, ``compile``, ``tune``, ``bench``,
``search`` (:mod:`patsparse.search.cli`), ``rpc`` / ``devices`` (:mod:`patsparse.cli_remote`),
``report``, ``patterns``, ``extract``.
Every subcommand has ``--help``; ``--json`` prints one machine-readable JSON document on
stdout (progress bars go to stderr). Typed patsparse errors exit with status 2 and a
one-line message.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from patsparse import cli_remote
from patsparse._version import __version__
from patsparse.cli_remote import add_device_args
from patsparse.core.errors import PatsparseError

if TYPE_CHECKING:
    from patsparse.schemes import Scheme


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def _add_scheme_args(
    p: argparse.ArgumentParser, *, compression: float | None, help_compression: str
) -> None:
    """--scheme/--compression/--library/--block-size, shared by prune, compile and tune."""
    from patsparse.schemes import scheme_names

    p.add_argument("--scheme", default="pattern+connectivity", choices=scheme_names())
    p.add_argument("--compression", type=float, default=compression, help=help_compression)
    p.add_argument("--library", default="designed-8", help="pattern library name")
    p.add_argument("--block-size", type=int, default=None, help="filters per block")


def _scheme_from_args(
    name: str, compression: float | None, library: str, block: int | None
) -> Scheme:
    from patsparse.schemes import make_scheme, scheme_class

    opts: dict[str, Any] = {}
    fields = scheme_class(name).__dataclass_fields__  # type: ignore[attr-defined]
    if "density" in fields:
        if compression is None:
            compression = 6.0
        if compression <= 0:
            from patsparse.core.errors import InvalidRateError

            raise InvalidRateError(f"--compression must be > 0 (e.g. 8 for 8x), got {compression}")
        opts["density"] = 1.0 / compression
    if "library" in fields:
        opts["library"] = library
    if block is not None:
        if "block_size" in fields:
            opts["block_size"] = block
        elif "block_rows" in fields:
            opts["block_rows"] = block
    return make_scheme(name, **opts)


def _parse_layer(spec: str, library: str, block: int | None) -> tuple[str, Scheme | None]:
    """``NAME=SCHEME[:COMPRESSION]`` or ``NAME=dense``."""
    if "=" not in spec:
        raise PatsparseError(
            f"--layer {spec!r}: expected NAME=SCHEME[:COMPRESSION], e.g. features.3=filter:2"
        )
    name, rhs = spec.split("=", 1)
    if rhs == "dense":
        return name, None
    scheme, _, comp = rhs.partition(":")
    return name, _scheme_from_args(scheme, float(comp) if comp else None, library, block)


def _prune_parser(sub: argparse._SubParsersAction) -> None:
    from patsparse.models import MODEL_NAMES

    p = sub.add_parser(
        "prune",
        help="train a dense model, prune it (ADMM or magnitude), report and save",
        description="Train a dense model on real data, prune it with a scheme, retrain with "
        "masks, print dense vs pruned accuracy, per-layer compression and pattern violations.",
    )
    p.add_argument("--model", default="digits-cnn", choices=MODEL_NAMES)
    p.add_argument("--data", default="digits", help="digits (bundled), cifar10 or imagefolder")
    p.add_argument("--data-root", default=None, help="folder of an on-disk dataset")
    _add_scheme_args(p, compression=None, help_compression="target compression of pruned layers")
    p.add_argument("--method", default="admm", choices=("admm", "magnitude"))
    p.add_argument(
        "--layer",
        action="append",
        default=[],
        metavar="NAME=SCHEME[:COMPRESSION]",
        help="per-layer override (repeatable); NAME=dense keeps a layer dense",
    )
    p.add_argument("--prune-first-conv", action="store_true", help="do not skip the first conv")
    p.add_argument("--prune-last-linear", action="store_true", help="do not skip the last linear")
    p.add_argument("--fallback", default=None, help="scheme for layers the default cannot take")
    p.add_argument("--dense-epochs", type=int, default=15)
    p.add_argument("--admm-epochs", type=int, default=10)
    p.add_argument("--retrain-epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="checkpoint path to write")
    _add_json(p)


def _run_prune(args: argparse.Namespace) -> dict[str, Any]:
    from patsparse.schemes import PruningPlan
    from patsparse.workflow import DataSpec, PruneJob, run_prune

    default = _scheme_from_args(args.scheme, args.compression, args.library, args.block_size)
    layers = dict(_parse_layer(s, args.library, args.block_size) for s in args.layer)
    fallback = (
        _scheme_from_args(args.fallback, args.compression, args.library, args.block_size)
        if args.fallback
        else None
    )
    plan = PruningPlan(
        default=default,
        layers=layers,
        skip_first_conv=not args.prune_first_conv,
        skip_last_linear=not args.prune_last_linear,
        fallback=fallback,
    )
    data = DataSpec(args.data, args.data_root)
    job = PruneJob(
        plan=plan,
        model=args.model,
        data=data,
        dense_epochs=args.dense_epochs,
        config=data.task.prune_config(
            method=args.method,
            admm_epochs=args.admm_epochs,
            retrain_epochs=args.retrain_epochs,
        ),
        seed=args.seed,
        out=args.out,
    )
    return run_prune(job, progress=True)


def _demo_tvm(checkpoint: str) -> dict[str, Any]:
    """Import the pruned checkpoint into TVM, rewrite, verify, run the digits test set."""
    from patsparse.compiler.compile import compile_model, compiled_accuracy
    from patsparse.data import load_digits_split, make_loaders
    from patsparse.model_spec import load_model_spec

    model, arch, _ = load_model_spec(checkpoint)
    result = compile_model(model, arch, verify=True)
    _, test = make_loaders(*load_digits_split(seed=0), seed=0)
    s = result.summary
    return {
        "rewritten_convs": s["rewritten"],
        "blocked_convs": len(s["blocked"]),
        "convs": s["convs"],
        "max_abs_error_vs_pytorch": s["max_abs_error_vs_pytorch"],
        "max_layer_error": max(
            (r["max_abs_error"] or 0.0 for r in [*s["layers"], *s["blocked"]] if r["rewritten"]),
            default=0.0,
        ),
        "accuracy": round(compiled_accuracy(result.compiled, test), 3),
        "storage_bytes_rewritten_layers": s["storage_bytes_rewritten_layers"],
        "compile_seconds": s["compile_seconds"],
    }


def _print_prune(summary: dict[str, Any], as_json: bool) -> None:
    text = summary.pop("_report_text")
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    print(text)
    print(
        f"\n{summary['model']} on {summary['dataset']} ({summary['method']}): dense accuracy "
        f"{summary['dense_accuracy']:.2f}% -> pruned {summary['pruned_accuracy']:.2f}% "
        f"(drop {summary['accuracy_drop']:.2f} points), compression "
        f"{summary['compression']:.2f}x overall / {summary['pruned_layers_compression']:.2f}x "
        f"pruned layers, pattern violations {summary['pattern_violations']}"
    )
    if "checkpoint" in summary:
        print(f"saved {summary['checkpoint']}")
    if "tvm" in summary:
        t = summary["tvm"]
        st = t["storage_bytes_rewritten_layers"]
        print(
            f"TVM (host): {t['rewritten_convs']}/{t['convs']} convs rewritten to pattern-sparse "
            f"kernels, {t['blocked_convs']} layers on the blocked kernel, accuracy "
            f"{t['accuracy']:.2f}%, max abs error vs PyTorch "
            f"{t['max_abs_error_vs_pytorch']:.1e}; weights of rewritten layers: dense "
            f"{st['dense']} B, CSR {st['csr']} B, ours {st['ours']} B"
        )


def _cmd_report(args: argparse.Namespace) -> None:
    import torch

    from patsparse.export import load_pruned
    from patsparse.models import default_input_shape
    from patsparse.report import sparsity_report
    from patsparse.schemes.plan import LayerDecision

    loaded = load_pruned(args.checkpoint)
    if loaded.arch is None:
        raise PatsparseError("report needs a zoo model checkpoint")
    decisions = {}
    for name, module in loaded.model.named_modules():
        if name in loaded.schemes:
            w = module.weight
            decisions[name] = LayerDecision(
                name, type(module).__name__.lower(), tuple(w.shape), loaded.schemes[name], ""
            )
    report = sparsity_report(
        loaded.model, torch.zeros(default_input_shape(loaded.arch)), decisions=decisions
    )
    if args.json:
        print(json.dumps({"checkpoint": args.checkpoint, **report.to_dict()}, indent=2))
    else:
        print(report.format())


def _cmd_patterns(args: argparse.Namespace) -> None:
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


def _cmd_extract(args: argparse.Namespace) -> None:
    import copy

    import torch

    from patsparse.data import load_digits_split, make_loaders
    from patsparse.models import build_model
    from patsparse.pruning.extraction import ExtractionConfig, extract_library
    from patsparse.train import fit

    torch.manual_seed(args.seed)
    train, _test = make_loaders(*load_digits_split(seed=args.seed), seed=args.seed)
    model = build_model("digits-cnn")
    fit(model, train, epochs=args.dense_epochs, lr=0.05, progress=True, desc="dense")
    sizes = tuple(int(s) for s in args.sizes.split(","))
    result = extract_library(
        copy.deepcopy(model),
        train,
        config=ExtractionConfig(sizes=sizes, epochs_per_step=args.epochs_per_step),
        progress=True,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    for step in result.steps:
        print(f"{step.size_before} -> {step.size_after} patterns")
    print(result.library.render())
    print(f"overlap with the designed 8: {result.overlap_with_designed}/8")


def _compile_parser(sub: argparse._SubParsersAction) -> None:

    p = sub.add_parser(
        "compile",
        help="compile a pruned model with TVM (pattern-sparse kernels) and report per layer",
        description="MODEL is a checkpoint written by 'patsparse prune --out' or a zoo name "
        "(pruned one-shot with --scheme/--compression on random weights). Prints, per conv: "
        "rewritten or why not, fused ops, storage (dense/CSR/ours), max abs error.",
    )
    p.add_argument("model", help="checkpoint path or zoo model name")
    p.add_argument("--target", default="host", help="compilation target (host, arm64, adreno)")
    _add_scheme_args(p, compression=8.0, help_compression="compression of a zoo model")
    p.add_argument("--no-verify", action="store_true", help="skip per-layer numeric checks")
    p.add_argument("--out", default=None, help="export the compiled library here (.so)")
    p.add_argument(
        "--logs",
        default=None,
        help="apply MetaSchedule logs: a directory, or 'auto' for tuning_logs/<model>/<target>",
    )
    add_device_args(p)
    _add_json(p)


def _tune_parser(sub: argparse._SubParsersAction) -> None:

    p = sub.add_parser(
        "tune",
        help="tune every task of a pruned model with MetaSchedule (XGBoost cost model)",
        description="Writes a MetaSchedule JSON database to tuning_logs/<model>/<target key>. "
        "A second run tunes nothing; an interrupted run resumes. MODEL as for compile.",
    )
    p.add_argument("model", help="checkpoint path or zoo model name")
    p.add_argument("--target", default="host", help="host, arm64 or adreno (with --tracker)")
    p.add_argument("--trials", type=int, default=32, help="trials per task")
    _add_scheme_args(p, compression=8.0, help_compression="compression of a zoo model")
    p.add_argument("--logs-root", default="tuning_logs")
    add_device_args(p)
    _add_json(p)


def _cmd_tune(args: argparse.Namespace) -> None:
    from patsparse.compiler.tune import tune_model
    from patsparse.model_spec import load_model_spec

    if args.trials < 1:
        raise PatsparseError(f"--trials must be >= 1, got {args.trials}")
    scheme = _scheme_from_args(args.scheme, args.compression, args.library, args.block_size)
    model, arch, source = load_model_spec(args.model, scheme=scheme)
    report = tune_model(
        model,
        arch,
        target=args.target,
        trials_per_task=args.trials,
        logs_root=args.logs_root,
        tracker=args.tracker,
        key=args.key,
        progress=True,
    )
    if args.json:
        print(json.dumps({"source": source, **report}, indent=2))
        return
    print(
        f"{source}: {report['tasks']} tasks, tuned {len(report['tuned'])}, skipped "
        f"{len(report['skipped'])} (already tuned), {report['trials']} new trials "
        f"({report['failed']} failed, retried by the next run) in "
        f"{report['seconds']:.0f} s -> {report['work_dir']}"
    )
    for name, ms in sorted(report["best_ms"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:<40} {ms:9.4f} ms")


def _bench_parser(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--scheme", default="block-pattern", choices=scheme_names())
    p.add_argument("--compression", type=float, default=None, help="default: the papers' rate")
    p.add_argument("--block-size", type=int, default=None, help="filters per block")
    p.add_argument(
        "--others",
        default="block",
        choices=("block", "dense"),
        help="1x1 convs and linear layers: block-pruned at the same rate, or dense",
    )
    p.add_argument("--trials", type=int, default=0, help="tune first (trials per task)")
    p.add_argument("--logs-root", default="tuning_logs", help="where tuning logs live")
    p.add_argument("--no-logs", action="store_true", help="default schedules only")
    p.add_argument(
        "--prune-logs",
        action="store_true",
        help="after tuning, drop the logs' workloads (and records) that are no task of the "
        "model any more, e.g. kernels from before a layout change",
    )
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--threads", type=int, default=None, help="default: all cores")
    p.add_argument("--no-layers", action="store_true", help="skip the per-layer table")
    p.add_argument("--no-memory", action="store_true", help="skip peak-memory probes")
    p.add_argument("--no-tvm-dense", action="store_true", help="skip the TVM dense engines")
    p.add_argument(
        "--clock",
        default="wall",
        choices=("wall", "cpu"),
        help="wall time, or process CPU time (busy shared machines; use with --threads 1)",
    )
    p.add_argument(
        "--target",
        default="host",
        help="host, or arm64 on a device behind --tracker/--key (the engines run there and "
        "are compared with TVM dense on the device; PyTorch is not run)",
    )
    add_device_args(p)
    _add_json(p)


def _cmd_bench(args: argparse.Namespace) -> None:
    from patsparse.bench import BenchConfig, format_bench, run_bench

    configs = [
        BenchConfig(
            model=m,
            scheme=args.scheme,
            compression=args.compression,
            block_size=args.block_size,
            others=args.others,
            trials=args.trials,
            logs_root=None if args.no_logs else args.logs_root,
            repeat=args.repeat,
            threads=args.threads,
            layers=not args.no_layers,
            tvm_dense=not args.no_tvm_dense,
            memory=not args.no_memory,
            clock=args.clock,
            prune_logs=args.prune_logs,
            target=args.target,
            tracker=args.tracker,
            key=args.key,
        )
        for m in args.models
    ]  # all validated before anything runs
    results = []
    for cfg in configs:
        res = run_bench(cfg)
        results.append(res)
        if not args.json:
            print(format_bench(res), flush=True)
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))


def format_compile(summary: dict[str, Any]) -> str:
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
    if summary.get("remote_latency_ms") is not None:
        lines.append(f"remote latency (median): {summary['remote_latency_ms']:.3f} ms")
    return "\n".join(lines)


def _cmd_compile(args: argparse.Namespace) -> None:
    from patsparse.compiler.compile import compile_model
    from patsparse.compiler.tune import logs_for
    from patsparse.model_spec import load_model_spec

    scheme = _scheme_from_args(args.scheme, args.compression, args.library, args.block_size)
    model, arch, source = load_model_spec(args.model, scheme=scheme)
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
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{source}\n{format_compile(summary)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="patsparse",
        description="Pattern-based sparsity for CNNs: prune in PyTorch, run fast through TVM.",
    )
    parser.add_argument("--version", action="version", version=f"patsparse {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="the main job: prune a CNN on real digits with ADMM, compile it with TVM, run",
        description="Train a small CNN on scikit-learn's digits, prune it to pattern+"
        "connectivity sparsity with ADMM, retrain, save runs/demo.pt, then import it into "
        "TVM, rewrite its convs into pattern-sparse kernels, verify them and run the test set.",
    )
    demo.add_argument("--compression", type=float, default=6.0)
    demo.add_argument("--out", default=None, help="checkpoint path (default runs/demo.pt)")
    _add_json(demo)

    _prune_parser(sub)
    _compile_parser(sub)
    _tune_parser(sub)
    _bench_parser(sub)
    cli_remote.add_parser(sub)
    from patsparse.search.cli import add_parser as _search_parser

    _search_parser(sub)

    rep = sub.add_parser("report", help="sparsity report of a saved checkpoint")
    rep.add_argument("checkpoint")
    _add_json(rep)

    pat = sub.add_parser("patterns", help="show a pattern library")
    pat.add_argument("--library", default="designed-8")
    _add_json(pat)

    ext = sub.add_parser(
        "extract",
        help="extract a pattern library from the 126 candidates (digits CNN)",
        description="ADMM with pattern selection over all 126 candidates, shrinking the "
        "library step by step (paper 002 §5.2); reports overlap with the designed 8.",
    )
    ext.add_argument("--sizes", default="32,12,8,4", help="comma-separated library sizes")
    ext.add_argument("--epochs-per-step", type=int, default=3)
    ext.add_argument("--dense-epochs", type=int, default=15)
    ext.add_argument("--seed", type=int, default=0)
    _add_json(ext)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from patsparse.workflow import default_out_dir

            ns = build_parser().parse_args(["prune"])
            ns.compression = args.compression
            ns.out = args.out or str(default_out_dir() / "demo.pt")
            summary = _run_prune(ns)
            summary["tvm"] = _demo_tvm(ns.out)
            _print_prune(summary, args.json)
        elif args.command == "tune":
            _cmd_tune(args)
        elif args.command == "search":
            from patsparse.search.cli import run as _cmd_search

            return _cmd_search(args)
        elif args.command == "compile":
            _cmd_compile(args)
        elif args.command == "bench":
            _cmd_bench(args)
        elif args.command == "prune":
            _print_prune(_run_prune(args), args.json)
        elif args.command == "report":
            _cmd_report(args)
        elif args.command == "patterns":
            _cmd_patterns(args)
        elif args.command == "extract":
            _cmd_extract(args)
        elif hasattr(args, "run_command"):
            cli_remote.run(args)
    except PatsparseError as exc:
        print(f"patsparse {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
