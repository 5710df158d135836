"""NPS phase-2 settings: :class:`SearchConfig`, the one source of the search's defaults (read
by :func:`patsparse.search.study.run_search` and ``patsparse search``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from patsparse.core.errors import SearchConfigError
from patsparse.search.evaluate import FastEvalConfig

SEARCH_VERSION = 1


@dataclass(frozen=True)
class SearchConfig:
    """Phase-2 settings (one source of the defaults).

    Give the constraint as ``latency_ms`` or as ``latency_fraction`` of the measured dense
    latency. ``storage``: an optuna storage URL (``sqlite:///nps.db``); ``None`` keeps the
    study in memory (no resume, one worker). ``verify_rounds``: rounds of interleaved timing
    for the reference points (dense model, fastest corners) and for the ``verify_top``
    best trials re-measured at the end.
    """

    latency_ms: float | None = None
    latency_fraction: float | None = None
    budget: int = 20
    seed: int = 0
    storage: str | None = None
    study_name: str = "nps"
    rl_fraction: float = 0.5
    bo: str = "tpe"
    warmup_trials: int = 4
    policy_lr: float = 0.3
    penalty: float = 1.0
    structure_seed: int = 0
    overlap: bool = True
    verify_top: int = 3
    verify_rounds: int = 3
    seed_corners: bool = True
    fast_eval: FastEvalConfig = field(default_factory=FastEvalConfig)
    heartbeat_interval: int = 10
    grace_period: int = 30
    version: int = SEARCH_VERSION

    def __post_init__(self) -> None:
        if (self.latency_ms is None) == (self.latency_fraction is None):
            raise SearchConfigError(
                "give exactly one latency constraint: latency_ms (e.g. --latency-ms 0.5) or "
                "latency_fraction of the dense latency (e.g. --latency-fraction 0.5)"
            )
        for name in ("latency_ms", "latency_fraction"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise SearchConfigError(f"{name} must be > 0, got {v}")
        if self.budget < 1:
            raise SearchConfigError(f"budget must be >= 1 trial, got {self.budget}")
        if self.penalty < 0:
            raise SearchConfigError(f"penalty must be >= 0, got {self.penalty}")
        if self.verify_top < 0 or self.verify_rounds < 1:
            raise SearchConfigError(
                f"verify_top must be >= 0 and verify_rounds >= 1, got {self.verify_top}, "
                f"{self.verify_rounds}"
            )
        if isinstance(self.fast_eval, dict):
            object.__setattr__(self, "fast_eval", FastEvalConfig(**self.fast_eval))

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["fast_eval"] = self.fast_eval.to_dict()
        return d
