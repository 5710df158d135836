"""Compiler-aware pruning search (NPS, paper 003): per-layer scheme and rate, rewarded by the
measured latency of the compiled model.

Phase 1 (:mod:`.ops`) replaces mobile-unfriendly activations; phase 2 (:mod:`.search`)
searches a :class:`SearchSpace` with RL + BO in an optuna study, timing candidates through
a :class:`LatencyMeasurer` (:mod:`.latency`, host or RPC) and ranking them by fast
evaluation (:mod:`.evaluate`); phase 3 (:mod:`.phase3`) picks the pruning algorithm and
trains the final model. :func:`run_nps` (:mod:`.nps`) runs all three.
"""

from patsparse.search.controller import NPSSampler, ReinforcePolicy
from patsparse.search.evaluate import FastEvalConfig, fast_evaluate, split_train_val
from patsparse.search.latency import (
    LatencyCache,
    LatencyMeasurement,
    LatencyMeasurer,
    LocalLatency,
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

__all__ = [
    "Choice",
    "FastEvalConfig",
    "LatencyCache",
    "LatencyMeasurement",
    "LatencyMeasurer",
    "LocalLatency",
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
