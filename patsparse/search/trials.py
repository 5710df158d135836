"""The trial loop of the phase-2 search (:class:`Trials`): each trial picks one choice per
searchable layer, measures the compiled candidate's latency (:mod:`.measurement`, cached per
structure; compiled in the background while the candidate trains when the measurer allows) and
its fast-evaluation accuracy (:mod:`.evaluate`), and scores its :func:`~.results.reward`.

``budget`` counts *completed* trials over all workers (a worker's in-flight trial still
finishes when the budget is met); a candidate that cannot be compiled or timed fails its own
trial only.
"""

from __future__ import annotations

import json
import os
import socket
import warnings
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from torch.utils.data import DataLoader

from patsparse.core.errors import LatencyMeasurementError, RemoteError
from patsparse.search.config import SearchConfig
from patsparse.search.controller import PROPOSER_ATTR, NPSSampler
from patsparse.search.evaluate import fast_evaluate
from patsparse.search.latencies import StudyLatencies
from patsparse.search.measurement import SplitMeasurer
from patsparse.search.results import completed, reward
from patsparse.tasks import Task


class _NoPool:
    """Stands in for the compile pool when candidates compile in the search's process."""

    def __enter__(self) -> _NoPool:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class _CandidateFailed(Exception):
    """One candidate could not be compiled/timed: the trial fails, the search goes on."""


class Trials:
    """Step 3: the study's trials until the budget is met (one :meth:`objective` each)."""

    def __init__(
        self,
        sampler: NPSSampler,
        latencies: StudyLatencies,
        train: DataLoader,
        val: DataLoader,
        config: SearchConfig,
        constraint: float,
        task: Task,
        say: Callable[[str], None],
    ) -> None:
        self.sampler, self.latencies, self.train, self.val = sampler, latencies, train, val
        self.config, self.constraint, self.task, self.say = config, constraint, task, say
        self.study, self.space = latencies.study, latencies.space
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        measurer = latencies.measurer
        overlap = config.overlap and bool(getattr(measurer, "overlappable", True))
        self.split: SplitMeasurer | None = (
            measurer if overlap and isinstance(measurer, SplitMeasurer) else None
        )
        self.pool: Any = None
        self.session_trials = 0

    def run(self) -> None:
        if len(completed(self.study)) >= self.config.budget:
            return
        pool = self.split.compile_pool() if self.split else _NoPool()
        with warnings.catch_warnings(), pool as self.pool:
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.study.optimize(
                self.objective,
                n_trials=None,
                callbacks=[self.stop_at_budget],
                catch=(_CandidateFailed,),
            )

    def stop_at_budget(self, study: optuna.Study, _t: FrozenTrial) -> None:
        self.session_trials += 1
        # the second condition ends a session whose candidates keep failing
        budget = self.config.budget
        if len(completed(study)) >= budget or self.session_trials >= 3 * budget:
            study.stop()

    def objective(self, trial: optuna.Trial) -> float:
        space, config, task = self.space, self.config, self.task
        cfg = {
            n: trial.suggest_categorical(space.param_name(n), space.labels(n)) for n in space.layers
        }
        proposer = str(trial.user_attrs.get(PROPOSER_ATTR) or self.sampler.proposer(trial.number))
        trial.set_user_attr(PROPOSER_ATTR, proposer)
        trial.set_user_attr("worker", self.worker)
        trial.set_user_attr("config", cfg)
        key, known = self.latencies.lookup(cfg)
        future: Future[Any] | None = None
        if known is None and self.split is not None:
            # code generation needs only the structure: it runs while the candidate trains
            structure = self.latencies.structure(cfg)
            future = self.split.submit_compile(self.pool, structure, self.latencies.example)
        acc = fast_evaluate(
            self.latencies.pretrained,
            space.plan(cfg),
            self.train,
            self.val,
            config=config.fast_eval,
            seed=config.seed + trial.number,
            task=task,
        )
        try:
            lat, hit, key = self._latency(cfg, key, future)
        except RemoteError:
            raise  # the device or tracker is gone: stop the search, not just this trial
        except LatencyMeasurementError as exc:
            trial.set_user_attr("error", str(exc))
            raise _CandidateFailed(str(exc)) from exc
        feasible = lat <= self.constraint
        trial.set_user_attr("latency_ms", lat)
        trial.set_user_attr("latency_key", key)
        trial.set_user_attr("cached_latency", hit)
        trial.set_user_attr("accuracy", acc)
        trial.set_user_attr("feasible", feasible)
        value = reward(acc, lat, self.constraint, penalty=config.penalty)
        done = len(completed(self.study)) + 1
        self.say(
            f"trial {trial.number} [{proposer}] {done}/{config.budget}: {task.metric_name} "
            f"{task.format(acc)} "
            f"latency {lat:.4f} ms{' (cached)' if hit else ''} "
            f"{'feasible' if feasible else 'over the constraint'} reward {value:.2f} "
            f"{json.dumps(cfg)}"
        )
        return value

    def _latency(
        self, cfg: dict[str, str], key: str, future: Future[Any] | None
    ) -> tuple[float, bool, str]:
        """(latency ms, cached, key): timed from the background compilation when there is
        one, else looked up or measured here."""
        if future is None or self.split is None:
            return self.latencies.measure(cfg)
        try:
            compiled = future.result()
        except LatencyMeasurementError:
            raise
        except Exception as exc:  # the compile worker died (e.g. a crash in TVM)
            raise LatencyMeasurementError(
                f"the compile worker failed on this candidate ({type(exc).__name__}: "
                f"{exc}); rerun with --no-overlap to see the error in-process"
            ) from exc
        lat = self.split.time(compiled, self.latencies.example).median_ms
        cache = self.latencies.cache
        cache.entries[key] = lat
        cache.misses += 1
        return lat, False, key
