"""How a phase-2 search that ran its trials concludes: its :class:`~.results.SearchResult`
collected from the study (:func:`collect`), the most accurate feasible trials re-measured
(:func:`verify`) and the outcome worded (:func:`conclude`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
import torch
from torch import nn

from patsparse.search.config import SearchConfig
from patsparse.search.latencies import References
from patsparse.search.measurement import (
    LatencyCache,
    LatencyMeasurer,
    measure_interleaved,
    structure_model,
)
from patsparse.search.results import SearchResult, TrialSummary, completed, pareto_front
from patsparse.search.space import SearchSpace
from patsparse.tasks import Task


def collect(
    study: optuna.Study,
    status: str,
    message: str,
    constraint: float,
    refs: References,
    cache: LatencyCache,
    config: SearchConfig,
    task: Task,
) -> SearchResult:
    """The study's completed trials as a result; ``best``: the most accurate feasible one."""
    trials = [TrialSummary.from_trial(t) for t in completed(study)]
    feasible = [t for t in trials if t.feasible]
    best = max(feasible, key=lambda t: (t.accuracy, -t.latency_ms, -t.number)) if feasible else None
    return SearchResult(
        status=status,
        message=message,
        constraint_ms=constraint,
        dense_ms=refs.dense_ms,
        fastest_ms=float(refs.fastest_ms),
        fastest_config=dict(refs.fastest_config),
        best=best,
        trials=trials,
        pareto=pareto_front(trials),
        study_name=study.study_name,
        storage=config.storage,
        cache_hits=cache.hits,
        cache_misses=cache.misses,
        metric=task.metric_name,
        unit=task.unit,
    )


def verify(
    result: SearchResult,
    config: SearchConfig,
    space: SearchSpace,
    pretrained: nn.Module,
    measurer: LatencyMeasurer,
    example: torch.Tensor,
    say: Callable[[str], None],
) -> None:
    """Step 4: re-measure the most accurate feasible trials, ``verify_top`` at a time (the first
    batch interleaved with the dense model for a relative constraint), in
    ``verify_rounds`` rounds; keep the most accurate one that still meets the constraint.

    Updates ``result.best`` (``None`` if none holds), ``constraint_ms`` (re-measured for a
    relative constraint) and ``verification``.
    """
    ranked: list[TrialSummary] = []
    for t in sorted(
        (t for t in result.trials if t.feasible),
        key=lambda t: (-t.accuracy, t.latency_ms, t.number),
    ):
        if all(t.config != o.config for o in ranked):  # distinct configurations only
            ranked.append(t)

    def measure_rounds(configs: dict[str, dict[str, str]]) -> dict[str, float]:
        models = {
            k: structure_model(pretrained, space.plan(c), seed=config.structure_seed)
            for k, c in configs.items()
        }
        return measure_interleaved(measurer, models, example, rounds=config.verify_rounds)

    constraint = result.constraint_ms
    dense_ms: float | None = None
    checked: list[dict[str, Any]] = []
    best: TrialSummary | None = None
    for begin in range(0, len(ranked), config.verify_top):
        batch = ranked[begin : begin + config.verify_top]
        configs = {str(t.number): t.config for t in batch}
        if begin == 0 and config.latency_fraction is not None:
            configs["dense"] = space.dense()
        median = measure_rounds(configs)
        if "dense" in median:
            dense_ms = median["dense"]
            constraint = float(config.latency_fraction or 0) * dense_ms
        for t in batch:
            lat = median[str(t.number)]
            checked.append(
                {
                    "number": t.number,
                    "accuracy": t.accuracy,
                    "search_latency_ms": t.latency_ms,
                    "latency_ms": lat,
                    "feasible": lat <= constraint,
                }
            )
        say(
            "re-measured: "
            + ", ".join(
                f"trial {c['number']} {c['search_latency_ms']:.4f} -> {c['latency_ms']:.4f} ms"
                for c in checked[begin:]
            )
            + f" (constraint {constraint:.4f} ms)"
        )
        best = next((t for t in batch if median[str(t.number)] <= constraint), None)
        if best is not None:
            break
    result.verification = {"constraint_ms": constraint, "dense_ms": dense_ms, "trials": checked}
    result.best = best
    result.constraint_ms = constraint


def conclude(result: SearchResult, task: Task) -> None:
    """Step 5: the status and message of a search that ran its trials (and verification)."""
    if result.best is None:
        fastest = min((t.latency_ms for t in result.trials), default=float("nan"))
        result.status = "no_feasible"
        checked = " (after re-measuring the best candidates)" if result.verification else ""
        result.message = (
            f"no feasible configuration among {len(result.trials)} trials{checked}: the "
            f"fastest measured trial took {fastest:.4f} ms against a constraint of "
            f"{result.constraint_ms:.4f} ms; raise the constraint or the budget"
        )
        return
    b = result.best
    lat = b.latency_ms
    if result.verification:
        lat = next(
            v["latency_ms"] for v in result.verification["trials"] if v["number"] == b.number
        )
    result.message = (
        f"best feasible: trial {b.number}, {task.metric_name} {task.format(b.accuracy)}, "
        "latency "
        f"{lat:.4f} ms <= {result.constraint_ms:.4f} ms"
        + (" (re-measured)" if result.verification else "")
    )
