"""A model named on the command line: a checkpoint path, or a zoo name pruned one-shot."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from patsparse.core.errors import PatsparseError
from patsparse.models import MODEL_NAMES, build_model
from patsparse.pruning.pruners import MagnitudePruner
from patsparse.schemes.base import Scheme
from patsparse.schemes.plan import PruningPlan


def load_model_spec(
    spec: str, *, scheme: Scheme | None = None, seed: int = 0
) -> tuple[nn.Module, str, str]:
    """A checkpoint path, or a zoo name pruned one-shot with ``scheme`` (random weights).

    Returns (model, architecture name, where it came from).
    """
    path = Path(spec)
    if path.suffix in (".pt", ".pth") or path.exists():
        from patsparse.export import load_pruned

        loaded = load_pruned(path)
        if loaded.arch is None:
            raise PatsparseError(f"{spec}: checkpoint of a model outside the zoo")
        return loaded.model, loaded.arch, f"checkpoint {spec}"
    if spec not in MODEL_NAMES:
        raise PatsparseError(
            f"{spec!r} is neither a checkpoint file nor a zoo model; zoo models: "
            f"{', '.join(MODEL_NAMES)}"
        )
    torch.manual_seed(seed)
    model = build_model(spec).eval()
    if scheme is not None:
        pruner = MagnitudePruner(PruningPlan(default=scheme))
        pruner.prepare(model)
        pruner.step()
        pruner.squash_mask()
    return (
        model.eval(),
        spec,
        f"zoo {spec} with random weights, {scheme.describe() if scheme else 'dense'}",
    )
