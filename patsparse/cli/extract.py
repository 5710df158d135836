"""``patsparse extract``: extract a pattern library from the 126 candidates (digits CNN)."""

from __future__ import annotations

import argparse
import json

from patsparse.cli.options import add_json, default_of
from patsparse.pruning.extraction import ExtractionConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extract",
        help="extract a pattern library from the 126 candidates (digits CNN)",
        description="ADMM with pattern selection over all 126 candidates, shrinking the "
        "library step by step (paper 002 §5.2); reports overlap with the designed 8.",
    )
    p.add_argument(
        "--sizes",
        default=",".join(map(str, default_of(ExtractionConfig, "sizes"))),
        help="comma-separated library sizes",
    )
    p.add_argument(
        "--epochs-per-step", type=int, default=default_of(ExtractionConfig, "epochs_per_step")
    )
    # None: the dense digits CNN is trained as 'prune' trains it (PruneJob's defaults)
    p.add_argument("--dense-epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    add_json(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    import copy

    import torch

    from patsparse.data import load_digits_split, make_loaders
    from patsparse.models import build_model
    from patsparse.pruning.extraction import extract_library
    from patsparse.train import fit
    from patsparse.workflow import PruneJob

    seed = default_of(PruneJob, "seed") if args.seed is None else args.seed
    epochs = (
        default_of(PruneJob, "dense_epochs") if args.dense_epochs is None else args.dense_epochs
    )
    torch.manual_seed(seed)
    train, _test = make_loaders(*load_digits_split(seed=seed), seed=seed)
    model = build_model("digits-cnn")
    fit(model, train, epochs=epochs, lr=0.05, progress=True, desc="dense")
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
