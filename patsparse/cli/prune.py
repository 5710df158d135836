"""``patsparse prune``: train a dense model, prune it (ADMM or magnitude), report and save."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from patsparse.cli.options import (
    add_json,
    add_scheme_args,
    default_of,
    given,
    print_json,
    scheme_from_args,
)
from patsparse.core.errors import PatsparseError
from patsparse.pruning.api import PruneConfig

if TYPE_CHECKING:
    from patsparse.schemes import Scheme
    from patsparse.workflow import PruneJob

#: the command line's ADMM and retraining budget (a quick run; PruneConfig's own is longer)
CLI_ADMM_EPOCHS = 10
CLI_RETRAIN_EPOCHS = 10


def add_parser(sub: argparse._SubParsersAction) -> None:
    from patsparse.models import MODEL_NAMES

    p = sub.add_parser(
        "prune",
        help="train a dense model, prune it (ADMM or magnitude), report and save",
        description="Train a dense model on real data, prune it with a scheme, retrain with "
        "masks, print dense vs pruned accuracy, per-layer compression and pattern violations.",
    )
    add_arguments(p, models=MODEL_NAMES)
    p.set_defaults(run=run)


def add_arguments(p: argparse.ArgumentParser, *, models: tuple[str, ...] | None = None) -> None:
    """The prune options (``demo`` reads their defaults). Options left at ``None`` take the
    default of :class:`~patsparse.workflow.PruneJob` / ``DataSpec`` when the job is built
    (importing the workflow loads the datasets' libraries: not worth it for ``--help``)."""
    p.add_argument("--model", default=None, choices=models, help="default: digits-cnn")
    p.add_argument(
        "--data", default=None, help="digits (bundled, the default), cifar10 or imagefolder"
    )
    p.add_argument("--data-root", default=None, help="folder of an on-disk dataset")
    add_scheme_args(p, compression=None, help_compression="target compression of pruned layers")
    p.add_argument(
        "--method", default=default_of(PruneConfig, "method"), choices=("admm", "magnitude")
    )
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
    p.add_argument("--dense-epochs", type=int, default=None)
    p.add_argument("--admm-epochs", type=int, default=CLI_ADMM_EPOCHS)
    p.add_argument("--retrain-epochs", type=int, default=CLI_RETRAIN_EPOCHS)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", default=None, help="checkpoint path to write")
    add_json(p)


def defaults() -> argparse.Namespace:
    """The prune options as if none were given."""
    p = argparse.ArgumentParser(add_help=False)
    add_arguments(p)
    return p.parse_args([])


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
    return name, scheme_from_args(scheme, float(comp) if comp else None, library, block)


def prune_job(args: argparse.Namespace) -> PruneJob:
    """The :class:`~patsparse.workflow.PruneJob` the prune options describe."""
    from patsparse.schemes import PruningPlan
    from patsparse.workflow import DataSpec, PruneJob

    default = scheme_from_args(args.scheme, args.compression, args.library, args.block_size)
    layers = dict(_parse_layer(s, args.library, args.block_size) for s in args.layer)
    fallback = (
        scheme_from_args(args.fallback, args.compression, args.library, args.block_size)
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
    data = DataSpec(**given(name=args.data, root=args.data_root))
    return PruneJob(
        plan=plan,
        data=data,
        config=data.task.prune_config(
            method=args.method,
            admm_epochs=args.admm_epochs,
            retrain_epochs=args.retrain_epochs,
        ),
        out=args.out,
        **given(model=args.model, dense_epochs=args.dense_epochs, seed=args.seed),
    )


def print_prune(summary: dict[str, Any], as_json: bool) -> None:
    text = summary.pop("_report_text")
    if as_json:
        print_json(summary)
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


def run(args: argparse.Namespace) -> None:
    from patsparse.workflow import run_prune

    print_prune(run_prune(prune_job(args), progress=True), args.json)
