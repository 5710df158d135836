"""The latencies of one study: :class:`StudyLatencies` (a configuration is measured once over
all workers and kept in the study), the reference points measured before any trial
(:func:`measure_references`: the dense model and the fastest corners of the space) and the
latency constraint in ms (:func:`latency_constraint`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from torch import nn

from patsparse.core.errors import SearchConfigError
from patsparse.search.config import SearchConfig
from patsparse.search.measurement import (
    LatencyCache,
    LatencyMeasurer,
    measure_interleaved,
    structure_model,
)
from patsparse.search.results import completed
from patsparse.search.space import SearchSpace


@dataclass(frozen=True)
class References:
    """The reference points of a study, measured once and stored in it: the dense model and
    the fastest corners of the space (``corners``: ``[latency ms, configuration]`` pairs)."""

    dense_ms: float | None
    fastest_ms: float
    fastest_config: dict[str, str]
    corners: list[list[Any]]


class StudyLatencies:
    """The latency cache of one study, keyed by device, configuration and structure seed.

    Filled from the study's trials and stored probes; a configuration not cached yet is
    looked up in the study again (another worker may have measured it meanwhile) before it
    is measured.
    """

    def __init__(
        self,
        study: optuna.Study,
        space: SearchSpace,
        pretrained: nn.Module,
        measurer: LatencyMeasurer,
        example: torch.Tensor,
        *,
        structure_seed: int,
    ) -> None:
        self.study, self.space, self.pretrained = study, space, pretrained
        self.measurer, self.example, self.structure_seed = measurer, example, structure_seed
        self.cache = LatencyCache()
        for t in study.get_trials(deepcopy=False):
            a = t.user_attrs
            if "latency_key" in a and "latency_ms" in a:
                self.cache.entries[str(a["latency_key"])] = float(a["latency_ms"])
        for k, v in study.user_attrs.items():
            if k.startswith("latency:"):
                self.cache.entries.setdefault(k[len("latency:") :], float(v))

    def key(self, cfg: dict[str, str]) -> str:
        return f"{self.measurer.key}|{self.space.key(cfg)}|seed={self.structure_seed}"

    def structure(self, cfg: dict[str, str]) -> nn.Module:
        """The candidate the compiler sees (:func:`structure_model`)."""
        return structure_model(self.pretrained, self.space.plan(cfg), seed=self.structure_seed)

    def lookup(self, cfg: dict[str, str]) -> tuple[str, float | None]:
        """(key, latency ms or ``None`` when nobody measured ``cfg`` yet)."""
        key = self.key(cfg)
        if key not in self.cache.entries:
            for t in completed(self.study):
                if t.user_attrs.get("latency_key") == key:
                    self.cache.entries[key] = float(t.user_attrs["latency_ms"])
                    break
        return key, self.cache.entries.get(key)

    def measure(self, cfg: dict[str, str]) -> tuple[float, bool, str]:
        """(latency ms, whether it was cached, key): measured only when not known."""
        key, _ = self.lookup(cfg)
        ms, hit = self.cache.get_or_measure(
            key, lambda: self.measurer.measure(self.structure(cfg), self.example)
        )
        return ms, hit, key

    def store(self, cfg: dict[str, str]) -> None:
        """Keep ``cfg``'s cached latency in the study (for resumes and other workers)."""
        key = self.key(cfg)
        self.study.set_user_attr(f"latency:{key}", self.cache.entries[key])


def measure_references(
    latencies: StudyLatencies, say: Callable[[str], None], *, rounds: int = 1
) -> References:
    """Step 1: the dense model and the fastest corners, measured once per study (stored in
    it with their latencies). Those not known yet are timed interleaved over ``rounds``
    rounds (:func:`~.measurement.measure_interleaved`): the constraint and the feasibility
    of the whole search rest on them, so one slow moment of the machine must not decide it.
    """
    study, space = latencies.study, latencies.space
    probe_key = f"probe:{latencies.measurer.key}"
    if probe_key in study.user_attrs:
        return References(**json.loads(study.user_attrs[probe_key]))
    say("measuring the dense model and the most compressed configurations ...")
    dense_cfg = space.dense()
    configs = ([dense_cfg] if dense_cfg else []) + list(space.extremes())
    unknown = {}
    for cfg in configs:
        key, ms = latencies.lookup(cfg)
        if ms is None:
            unknown[key] = latencies.structure(cfg)
    measured = measure_interleaved(latencies.measurer, unknown, latencies.example, rounds=rounds)
    latencies.cache.entries.update(measured)
    latencies.cache.misses += len(measured)
    ms_of = {latencies.key(c): latencies.cache.entries[latencies.key(c)] for c in configs}
    dense_ms = ms_of[latencies.key(dense_cfg)] if dense_cfg else None
    corners = [(ms_of[latencies.key(c)], c) for c in space.extremes()]
    fastest_ms, fastest_cfg = min(corners, key=lambda mc: mc[0])
    refs = References(dense_ms, fastest_ms, fastest_cfg, [[m, c] for m, c in corners])
    study.set_user_attr(probe_key, json.dumps(dataclasses.asdict(refs)))
    for cfg in configs:
        latencies.store(cfg)
    return refs


def latency_constraint(config: SearchConfig, dense_ms: float | None) -> float:
    """The latency constraint in ms: given, or a fraction of the measured dense latency."""
    if config.latency_ms is not None:
        return float(config.latency_ms)
    if dense_ms is None:
        raise SearchConfigError(
            "latency_fraction needs the dense latency, but 'dense' is not in the search "
            "space; give latency_ms instead or add dense to the schemes"
        )
    return float(config.latency_fraction or 0) * float(dense_ms)
