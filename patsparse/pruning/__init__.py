"""Pruners (magnitude, ADMM), masks, pattern selection and library extraction."""

from patsparse.pruning.api import PruneConfig, PruneResult, prune
from patsparse.pruning.masks import attach_mask, collect_masks, squash_masks
from patsparse.pruning.pruners import (
    ADMMPruner,
    ADMMSettings,
    BasePruner,
    MagnitudePruner,
    PrunerStateError,
)
from patsparse.pruning.selection import PatternSelector, project_simplex

__all__ = [
    "ADMMPruner",
    "ADMMSettings",
    "BasePruner",
    "MagnitudePruner",
    "PatternSelector",
    "PruneConfig",
    "PruneResult",
    "PrunerStateError",
    "attach_mask",
    "collect_masks",
    "project_simplex",
    "prune",
    "squash_masks",
]
