"""``patsparse search``: the compiler-aware pruning search (:mod:`patsparse.search`).

Progress (one line per trial) goes to stderr; ``--json`` prints one JSON document on
stdout. Exit status 0 with a result, 3 when no configuration meets the constraint.

Options left at ``None`` take the defaults of the search's configs (``SearchConfig``,
``FastEvalConfig``, ``Phase3Config``, ``TimingConfig``, ``NPSJob``, ``DataSpec``) when the job
is built: importing them loads optuna and the datasets' libraries, not worth it for
``--help``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from patsparse.cli.options import DEFAULT_TARGET, add_device_args, add_json, given, print_json

if TYPE_CHECKING:
    from patsparse.search.workflow import NPSJob

NO_FEASIBLE_EXIT = 3


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def _shape(text: str) -> tuple[int, ...]:
    from patsparse.core.errors import SearchConfigError

    try:
        return tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise SearchConfigError(
            f"--input-shape {text!r}: write N,C,H,W integers, e.g. 1,1,128,128"
        ) from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def add_parser(sub: argparse._SubParsersAction) -> None:
    from patsparse.search.space import DEFAULT_COMPRESSIONS, DEFAULT_SCHEMES

    p = sub.add_parser(
        "search",
        help="compiler-aware pruning search (NPS): per-layer scheme and rate under a latency "
        "constraint measured on the compiled model",
        description="Search per-layer pruning schemes and rates (RL + Bayesian optimisation "
        "in an optuna study) rewarded by accuracy under a latency constraint measured on the "
        "TVM-compiled model (host, or a device behind an RPC tracker). Resumable; several "
        "workers may share one --storage. MODEL: a zoo name (trained first) or a checkpoint.",
    )
    p.add_argument("model", help="zoo model name (e.g. digits-cnn) or checkpoint path")
    p.add_argument(
        "--data",
        default=None,
        help="digits (the default) or sr (bundled; sr = x2 super-resolution patches scored by "
        "PSNR, for sr-net), cifar10 or imagefolder",
    )
    p.add_argument("--data-root", default=None, help="folder of an on-disk dataset")
    lat = p.add_mutually_exclusive_group(required=True)
    lat.add_argument("--latency-ms", type=float, default=None, help="latency constraint (ms)")
    lat.add_argument(
        "--latency-fraction",
        type=float,
        default=None,
        help="latency constraint as a fraction of the measured dense latency (e.g. 0.5)",
    )
    p.add_argument(
        "--input-shape",
        default=None,
        help="N,C,H,W input the latency is measured on (default: the model's own, e.g. "
        "1,1,32,32 for sr-net; e.g. 1,1,128,128 to time x2 upscaling to 256x256)",
    )
    p.add_argument("--target", default=DEFAULT_TARGET, help="compilation target (host)")
    add_device_args(p)
    p.add_argument("--logs", default=None, help="MetaSchedule tuning logs to apply")
    p.add_argument(
        "--tune-trials",
        type=int,
        default=None,
        help="tune each candidate's new tasks with this many trials per task (host only; "
        "into --logs or tuning_logs/search/<target>)",
    )
    p.add_argument("--budget", type=int, default=None, help="completed trials (all workers)")
    p.add_argument(
        "--storage",
        default="sqlite:///nps.db",
        help="optuna storage URL shared by workers (sqlite:///FILE, postgresql://...); "
        "'memory' for none",
    )
    p.add_argument("--study-name", default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--schemes", default=",".join(DEFAULT_SCHEMES), help="comma-separated")
    p.add_argument("--compressions", default=",".join(f"{c:g}" for c in DEFAULT_COMPRESSIONS))
    p.add_argument("--bo", default=None, choices=("tpe", "gp"), help="BO sampler (tpe)")
    p.add_argument("--rl-fraction", type=float, default=None, help="share of RL proposals")
    p.add_argument("--warmup-trials", type=int, default=None)
    p.add_argument("--retrain-epochs", type=int, default=None, help="fast-evaluation retraining")
    p.add_argument("--retrain-steps", type=int, default=None, help="cap on retraining batches")
    p.add_argument("--dense-epochs", type=int, default=None, help="pre-training of a zoo model")
    p.add_argument("--phase1-epochs", type=int, default=None, help="fine-tune after replacement")
    p.add_argument(
        "--replace-functional",
        action="store_true",
        help="phase 1 also rewrites functional sigmoid/silu/gelu calls (torch.fx-traceable)",
    )
    p.add_argument("--methods", default=None, help="phase-3 pruning algorithms (magnitude,admm)")
    p.add_argument("--final-epochs", type=int, default=None, help="phase-3 ADMM and retraining")
    p.add_argument("--repeat", type=int, default=None, help="timed runs per measurement")
    p.add_argument(
        "--verify-top",
        type=int,
        default=None,
        help="re-measure this many of the most accurate feasible trials at the end",
    )
    p.add_argument(
        "--no-seed-corners",
        action="store_true",
        help="do not start the study from the corners of the space and their uniform lower-rate "
        "ladders that meet the constraint",
    )
    p.add_argument(
        "--no-overlap",
        action="store_true",
        help="compile candidates in the search process instead of a worker process that "
        "runs while the candidate trains",
    )
    p.add_argument("--threads", type=int, default=None, help="TVM_NUM_THREADS for timing")
    p.add_argument(
        "--search-only",
        action="store_true",
        help="stop after the search (no phase 3): for extra workers of a shared study",
    )
    p.add_argument("--out", default=None, help="checkpoint of the chosen model")
    p.add_argument("--plot", default=None, help="Pareto plot PNG path")
    add_json(p)
    p.set_defaults(run=run)


def job_from_args(args: argparse.Namespace) -> NPSJob:
    """The :class:`~patsparse.search.workflow.NPSJob` the search options describe."""
    from patsparse.search.config import SearchConfig
    from patsparse.search.evaluate import FastEvalConfig
    from patsparse.search.measurement import TimingConfig
    from patsparse.search.phase3 import Phase3Config
    from patsparse.search.space import SpaceConfig
    from patsparse.search.workflow import NPSJob
    from patsparse.workflow import DataSpec

    return NPSJob(
        search=SearchConfig(
            latency_ms=args.latency_ms,
            latency_fraction=args.latency_fraction,
            storage=None if args.storage == "memory" else args.storage,
            overlap=not args.no_overlap,
            seed_corners=not args.no_seed_corners,
            fast_eval=FastEvalConfig(
                **given(retrain_epochs=args.retrain_epochs, max_steps=args.retrain_steps)
            ),
            **given(
                budget=args.budget,
                seed=args.seed,
                study_name=args.study_name,
                rl_fraction=args.rl_fraction,
                bo=args.bo,
                warmup_trials=args.warmup_trials,
                verify_top=args.verify_top,
            ),
        ),
        model=args.model,
        data=DataSpec(**given(name=args.data, root=args.data_root)),
        functional_ops=args.replace_functional,
        space=SpaceConfig(schemes=_names(args.schemes), compressions=_floats(args.compressions)),
        phase3=Phase3Config(
            **given(
                methods=None if args.methods is None else _names(args.methods),
                admm_epochs=args.final_epochs,
                retrain_epochs=args.final_epochs,
            )
        ),
        target=args.target,
        tracker=args.tracker,
        key=args.key,
        logs=args.logs,
        timing=TimingConfig(threads=args.threads, **given(repeat=args.repeat)),
        out=args.out,
        plot=args.plot,
        search_only=args.search_only,
        input_shape=_shape(args.input_shape) if args.input_shape else None,
        **given(
            dense_epochs=args.dense_epochs,
            phase1_epochs=args.phase1_epochs,
            tune_trials=args.tune_trials,
            seed=args.seed,
        ),
    )


def run(args: argparse.Namespace) -> int:
    """Execute ``patsparse search``; returns the exit status."""
    from patsparse.search.workflow import run_nps

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    summary = run_nps(job_from_args(args), progress=progress)
    text = summary.pop("_text")
    if args.json:
        print_json(summary)
    else:
        print(text)
        if "final" in summary:
            f = summary["final"]
            print(
                f"final ({summary['phase3']['method']}): test {summary['metric']} "
                f"{f['test_accuracy']:.2f} {summary['unit']}, "
                f"latency {f['latency_ms']:.4f} ms "
                f"({'meets' if f['meets_constraint'] else 'misses'} the constraint)"
            )
        for k in ("checkpoint", "plot"):
            if summary.get(k):
                print(f"{k}: {summary[k]}")
    if summary["status"] != "ok":
        print(f"patsparse search: {summary['message']}", file=sys.stderr)
        return NO_FEASIBLE_EXIT
    return 0
