"""How ``patsparse bench`` prunes a model: 3x3 convs with the benchmark's scheme, the rest
block-pruned at the same rate (or dense)."""

from __future__ import annotations

import copy

from torch import nn

from patsparse.bench.config import BenchConfig
from patsparse.pruning.pruners import MagnitudePruner
from patsparse.schemes import BlockScheme, PruningPlan, scheme_from_options


def prune_for_bench(model: nn.Module, cfg: BenchConfig) -> nn.Module:
    """A pruned copy: 3x3 convs with ``cfg.scheme``, other convs / linear layers block-pruned
    (or dense). The first conv (the stem) stays dense, as in the papers."""
    scheme = scheme_from_options(cfg.scheme, cfg.rate, block_size=cfg.block, fixed_rate="ignore")
    fallback = (
        BlockScheme(density=1.0 / cfg.rate, block_rows=cfg.block) if cfg.others == "block" else None
    )
    plan = PruningPlan(default=scheme, fallback=fallback, skip_last_linear=False)
    pruned = copy.deepcopy(model)
    pruner = MagnitudePruner(plan)
    pruner.prepare(pruned)
    pruner.step()
    pruner.squash_mask()
    return pruned.eval()
