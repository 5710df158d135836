"""``patsparse report``: the sparsity report of a saved checkpoint."""

from __future__ import annotations

import argparse
import json

from patsparse.cli.options import add_json
from patsparse.core.errors import PatsparseError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="sparsity report of a saved checkpoint")
    p.add_argument("checkpoint")
    add_json(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
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
