"""Compiler-aware pruning search (NPS, paper 003): per-layer scheme and rate, rewarded by the
measured latency of the compiled model.

Phase 1 (:mod:`.ops`) replaces mobile-unfriendly activations; phase 2 (:mod:`.search`)
searches a :class:`SearchSpace` with RL + BO in an optuna study, timing candidates through
a :class:`LatencyMeasurer` (:mod:`.latency`, host or RPC) and ranking them by fast
evaluation (:mod:`.evaluate`); phase 3 (:mod:`.phase3`) picks the pruning algorithm and
trains the final model. :func:`run_nps` (:mod:`.nps`) runs all three.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from patsparse.search.controller import NPSSampler, ReinforcePolicy
    from patsparse.search.evaluate import FastEvalConfig, fast_evaluate, split_train_val
    from patsparse.search.latency import (
        LatencyCache,
        LatencyMeasurement,
        LatencyMeasurer,
        LocalLatency,
        MemoLatency,
        RPCLatency,
        TimingConfig,
        structure_model,
    )
    from patsparse.search.ops import ReplacementReport, replace_and_finetune, replace_ops
    from patsparse.search.search import (
        SearchConfig,
        SearchResult,
        TrialSummary,
        pareto_front,
        reward,
        run_search,
    )
    from patsparse.search.space import Choice, SearchSpace, SpaceConfig

# Imported on first use: ``patsparse --help`` loads this package's CLI without optuna.
_LAZY = {
    "Choice": "patsparse.search.space",
    "FastEvalConfig": "patsparse.search.evaluate",
    "LatencyCache": "patsparse.search.latency",
    "LatencyMeasurement": "patsparse.search.latency",
    "LatencyMeasurer": "patsparse.search.latency",
    "LocalLatency": "patsparse.search.latency",
    "MemoLatency": "patsparse.search.latency",
    "NPSSampler": "patsparse.search.controller",
    "RPCLatency": "patsparse.search.latency",
    "ReinforcePolicy": "patsparse.search.controller",
    "ReplacementReport": "patsparse.search.ops",
    "SearchConfig": "patsparse.search.search",
    "SearchResult": "patsparse.search.search",
    "SearchSpace": "patsparse.search.space",
    "SpaceConfig": "patsparse.search.space",
    "TimingConfig": "patsparse.search.latency",
    "TrialSummary": "patsparse.search.search",
    "fast_evaluate": "patsparse.search.evaluate",
    "pareto_front": "patsparse.search.search",
    "replace_and_finetune": "patsparse.search.ops",
    "replace_ops": "patsparse.search.ops",
    "reward": "patsparse.search.search",
    "run_search": "patsparse.search.search",
    "split_train_val": "patsparse.search.evaluate",
    "structure_model": "patsparse.search.latency",
}

__all__ = [
    "Choice",
    "FastEvalConfig",
    "LatencyCache",
    "LatencyMeasurement",
    "LatencyMeasurer",
    "LocalLatency",
    "MemoLatency",
    "NPSSampler",
    "RPCLatency",
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
