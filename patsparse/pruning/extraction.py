"""Pattern-library extraction (paper 002 §5.2, Algorithm 1).

Start from all 126 4-of-9 candidates; each step runs ADMM with primal-proximal pattern
selection over the current library for a few epochs, counts how many kernels selected each
pattern, and keeps the most selected ones (126 → 32 → 12 → 8 → 4 by default). The result is
the library and its overlap with the designed 8 patterns.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from patsparse.core.patterns import ALL_CANDIDATES, DESIGNED_8, PatternLibrary
from patsparse.pruning.pruners import ADMMPruner, ADMMSettings
from patsparse.schemes.pattern import PatternScheme
from patsparse.schemes.plan import PruningPlan, module_weight
from patsparse.train import LossFn, make_optimizer, train_epoch


@dataclass(frozen=True)
class ExtractionConfig:
    """Library sizes to shrink through, and the ADMM budget per step."""

    sizes: tuple[int, ...] = (32, 12, 8, 4)
    epochs_per_step: int = 3
    lr: float = 0.01
    admm: ADMMSettings = field(default_factory=lambda: ADMMSettings(selection_step=0.5))
    skip_first_conv: bool = False

    def __post_init__(self) -> None:
        sizes = tuple(int(s) for s in self.sizes)
        object.__setattr__(self, "sizes", sizes)
        if not sizes or any(b >= a for a, b in itertools.pairwise(sizes)):
            raise ValueError(f"library sizes must strictly decrease, got {sizes}")
        if sizes[0] > len(ALL_CANDIDATES) or sizes[-1] < 1:
            raise ValueError(f"library sizes must lie in 1..{len(ALL_CANDIDATES)}, got {sizes}")


@dataclass
class ExtractionStep:
    size_before: int
    size_after: int
    counts: dict[int, int]
    library: PatternLibrary

    def to_dict(self) -> dict[str, Any]:
        return {
            "size_before": self.size_before,
            "size_after": self.size_after,
            "library": list(self.library.codes),
            "top_counts": dict(sorted(self.counts.items(), key=lambda kv: -kv[1])[:16]),
        }


@dataclass
class ExtractionResult:
    library: PatternLibrary
    steps: list[ExtractionStep]

    @property
    def overlap_with_designed(self) -> int:
        return self.library.overlap(DESIGNED_8)

    def to_dict(self) -> dict[str, Any]:
        return {
            "library": list(self.library.codes),
            "size": len(self.library),
            "overlap_with_designed_8": self.overlap_with_designed,
            "steps": [s.to_dict() for s in self.steps],
        }


def selection_counts(pruner: ADMMPruner) -> Counter[int]:
    """How many non-empty kernels currently select each pattern code, over all layers."""
    counts: Counter[int] = Counter()
    for name, selector in pruner.selectors.items():
        module = pruner.modules[name]
        w = module_weight(module).detach()
        alive = w.reshape(*w.shape[:2], -1).abs().sum(-1) > 0
        ids = selector.ids()[alive]
        for pid, n in zip(*torch.unique(ids, return_counts=True), strict=True):
            counts[selector.library.codes[int(pid)]] += int(n)
    return counts


def extract_library(
    model: nn.Module,
    loader: DataLoader,
    *,
    config: ExtractionConfig | None = None,
    start: PatternLibrary | Sequence[int] | None = None,
    loss_fn: LossFn | None = None,
    progress: bool = False,
) -> ExtractionResult:
    """Shrink ``start`` (default: all 126 candidates) to ``config.sizes[-1]`` patterns.

    ``model`` is trained in place by the ADMM steps (pass a copy to keep the original).
    """
    cfg = config or ExtractionConfig()
    library = (
        start
        if isinstance(start, PatternLibrary)
        else PatternLibrary(tuple(start) if start is not None else ALL_CANDIDATES, name="all")
    )
    steps: list[ExtractionStep] = []
    for size in tqdm(cfg.sizes, desc="extract", disable=not progress, leave=False):
        if size >= len(library):
            continue
        plan = PruningPlan(
            default=PatternScheme(library=library), skip_first_conv=cfg.skip_first_conv
        )
        settings = ADMMSettings(
            rho=cfg.admm.rho,
            rho_growth=cfg.admm.rho_growth,
            rho_max=cfg.admm.rho_max,
            pattern_selection=True,
            selection_step=cfg.admm.selection_step,
        )
        pruner = ADMMPruner(plan, settings)
        pruner.prepare(model)
        opt = make_optimizer(model, lr=cfg.lr)
        for _ in range(cfg.epochs_per_step):
            train_epoch(model, loader, opt, loss_fn=loss_fn, penalty=pruner.penalty)
            pruner.step()
        counts = selection_counts(pruner)
        # Most selected first; ties by the library's order so the result is deterministic.
        ranked = sorted(library.codes, key=lambda c: (-counts.get(c, 0), library.codes.index(c)))
        new = PatternLibrary(tuple(ranked[:size]), name=f"extracted-{size}")
        steps.append(ExtractionStep(len(library), size, dict(counts), new))
        library = new
    return ExtractionResult(library=library, steps=steps)
