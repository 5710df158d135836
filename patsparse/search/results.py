"""What the phase-2 search yields: each trial's :func:`reward`, its :class:`TrialSummary`, the
accuracy/latency :func:`pareto_front` and the :class:`SearchResult`.

A candidate scores ``reward = accuracy`` when ``latency <= constraint``, else
``accuracy - 100 * penalty * (latency / constraint - 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from patsparse.search.controller import PROPOSER_ATTR

STATUSES = ("ok", "no_feasible", "infeasible")


def reward(accuracy: float, latency_ms: float, constraint_ms: float, *, penalty: float) -> float:
    """Accuracy (the task's metric) when the latency constraint holds, penalised linearly in
    the excess otherwise."""
    if latency_ms <= constraint_ms:
        return accuracy
    return accuracy - 100.0 * penalty * (latency_ms / constraint_ms - 1.0)


@dataclass(frozen=True)
class TrialSummary:
    """One finished trial of the study (``accuracy``: the task's metric, e.g. PSNR in dB)."""

    number: int
    config: dict[str, str]
    accuracy: float
    latency_ms: float
    feasible: bool
    reward: float
    proposer: str
    cached_latency: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_trial(cls, t: FrozenTrial) -> TrialSummary:
        a = t.user_attrs
        return cls(
            number=t.number,
            config=dict(a["config"]),
            accuracy=float(a["accuracy"]),
            latency_ms=float(a["latency_ms"]),
            feasible=bool(a["feasible"]),
            reward=float(t.value if t.value is not None else float("nan")),
            proposer=str(a.get(PROPOSER_ATTR, "?")),
            cached_latency=bool(a.get("cached_latency", False)),
        )


def completed(study: optuna.Study) -> list[FrozenTrial]:
    """The study's completed trials, over all workers (not copied)."""
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def pareto_front(trials: list[TrialSummary]) -> list[TrialSummary]:
    """Trials no other trial beats on both accuracy (higher) and latency (lower), by latency."""
    front = []
    for t in trials:
        dominated = any(
            o.accuracy >= t.accuracy
            and o.latency_ms <= t.latency_ms
            and (o.accuracy > t.accuracy or o.latency_ms < t.latency_ms)
            for o in trials
        )
        if not dominated:
            front.append(t)
    unique: dict[tuple[float, float], TrialSummary] = {}
    for t in sorted(front, key=lambda t: (t.latency_ms, -t.accuracy, t.number)):
        unique.setdefault((t.latency_ms, t.accuracy), t)
    return list(unique.values())


@dataclass
class SearchResult:
    """Outcome of phase 2: the chosen configuration (``best``), all trials and the front."""

    status: str
    message: str
    constraint_ms: float
    dense_ms: float | None
    fastest_ms: float
    fastest_config: dict[str, str]
    best: TrialSummary | None
    trials: list[TrialSummary]
    pareto: list[TrialSummary]
    study_name: str
    storage: str | None
    cache_hits: int = 0
    cache_misses: int = 0
    seconds: float = 0.0
    verification: dict[str, Any] | None = None
    metric: str = "accuracy"
    unit: str = "%"

    @property
    def feasible(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "message": self.message,
            "constraint_ms": self.constraint_ms,
            "dense_ms": self.dense_ms,
            "fastest_ms": self.fastest_ms,
            "fastest_config": self.fastest_config,
            "best": self.best.to_dict() if self.best else None,
            "trials": [t.to_dict() for t in self.trials],
            "pareto": [t.to_dict() for t in self.pareto],
            "study_name": self.study_name,
            "storage": self.storage,
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "verification": self.verification,
            "metric": self.metric,
            "unit": self.unit.strip(),
            "seconds": round(self.seconds, 2),
        }
