"""Compiler-aware pruning search (NPS, paper 003): per-layer scheme and rate, rewarded by the
measured latency of the compiled model.

Phase 1 (:mod:`.ops`) replaces mobile-unfriendly activations; phase 2 (:mod:`.study`, settings
in :mod:`.config`, outcome in :mod:`.results`) searches a :class:`SearchSpace` (:mod:`.space`)
with RL + BO (:mod:`.controller`) in an optuna study, timing candidates through a
:class:`LatencyMeasurer` (:mod:`.measurement`; the TVM ones, host or RPC, are in
:mod:`patsparse.compiler.latency`) and ranking them by fast evaluation (:mod:`.evaluate`);
phase 3 (:mod:`.phase3`) picks the pruning algorithm and trains the final model. ``run_nps``
(:mod:`.workflow`) runs all three; :mod:`patsparse.cli.search` is ``patsparse search``.

This package re-exports only its torch-side names (nothing here loads TVM).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from patsparse.search.config import SearchConfig
    from patsparse.search.controller import NPSSampler, ReinforcePolicy
    from patsparse.search.evaluate import FastEvalConfig, fast_evaluate, split_train_val
    from patsparse.search.measurement import (
        LatencyCache,
        LatencyMeasurement,
        LatencyMeasurer,
        MemoLatency,
        TimingConfig,
        structure_model,
    )
    from patsparse.search.ops import ReplacementReport, replace_and_finetune, replace_ops
    from patsparse.search.results import SearchResult, TrialSummary, pareto_front, reward
    from patsparse.search.space import Choice, SearchSpace, SpaceConfig
    from patsparse.search.study import run_search

# Imported on first use: ``patsparse --help`` loads this package's CLI without optuna.
_LAZY = {
    "Choice": "patsparse.search.space",
    "FastEvalConfig": "patsparse.search.evaluate",
    "LatencyCache": "patsparse.search.measurement",
    "LatencyMeasurement": "patsparse.search.measurement",
    "LatencyMeasurer": "patsparse.search.measurement",
    "MemoLatency": "patsparse.search.measurement",
    "NPSSampler": "patsparse.search.controller",
    "ReinforcePolicy": "patsparse.search.controller",
    "ReplacementReport": "patsparse.search.ops",
    "SearchConfig": "patsparse.search.config",
    "SearchResult": "patsparse.search.results",
    "SearchSpace": "patsparse.search.space",
    "SpaceConfig": "patsparse.search.space",
    "TimingConfig": "patsparse.search.measurement",
    "TrialSummary": "patsparse.search.results",
    "fast_evaluate": "patsparse.search.evaluate",
    "pareto_front": "patsparse.search.results",
    "replace_and_finetune": "patsparse.search.ops",
    "replace_ops": "patsparse.search.ops",
    "reward": "patsparse.search.results",
    "run_search": "patsparse.search.study",
    "split_train_val": "patsparse.search.evaluate",
    "structure_model": "patsparse.search.measurement",
}

__all__ = [
    "Choice",
    "FastEvalConfig",
    "LatencyCache",
    "LatencyMeasurement",
    "LatencyMeasurer",
    "MemoLatency",
    "NPSSampler",
    "ReinforcePolicy",
    "ReplacementReport",
    "SearchConfig",
    "SearchResult",
    "SearchSpace",
    "SpaceConfig",
    "TimingConfig",
    "TrialSummary",
    "fast_evaluate",
    "pareto_front",
    "replace_and_finetune",
    "replace_ops",
    "reward",
    "run_search",
    "split_train_val",
    "structure_model",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
