"""NPS phase 2: the scheme search, an optuna study driven by RL + BO (see
:mod:`patsparse.search.controller`).

Each trial picks one choice per searchable layer, measures the compiled candidate's latency
(:mod:`.measurement`, cached per structure) and its fast-evaluation accuracy (:mod:`.evaluate`),
and scores ``reward = accuracy`` when ``latency <= constraint``, else
``accuracy - 100 * penalty * (latency / constraint - 1)``.

All state lives in the study: an SQLite file by default (any optuna storage URL, e.g.
PostgreSQL, for many machines), so workers on one storage share a search, and a killed
search resumes (finished trials are kept; a trial left running by a killed worker is marked
failed by optuna's heartbeat after ``grace_period`` seconds). ``budget`` counts *completed*
trials over all workers (a worker's in-flight trial still finishes when the budget is met).
Before any trial the search measures the dense model and the fastest corners of the space
(stored in the study, measured once): a constraint below the fastest measured corner ends
with status ``"infeasible"`` and no trial run. With ``seed_corners`` the corners that meet
the constraint are enqueued as the study's first trials (proposer ``"corner"``), each followed
by its scheme's uniform ladder down to the last rate that still meets the constraint
(proposer ``"uniform"``, measured before enqueueing): the RL policy and the BO model start
from known-feasible points instead of a uniform prior, which on a space where most random
mixes are too slow is the difference between finding a feasible configuration in the budget
or not, and the search never ends below the best uniform configuration its fast evaluation
can see.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import socket
import statistics
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from torch import nn
from torch.utils.data import DataLoader

from patsparse.core.errors import LatencyMeasurementError, RemoteError, SearchConfigError
from patsparse.search.controller import PROPOSER_ATTR, NPSSampler
from patsparse.search.evaluate import FastEvalConfig, fast_evaluate
from patsparse.search.measurement import (
    LatencyCache,
    LatencyMeasurer,
    SplitMeasurer,
    structure_model,
)
from patsparse.search.space import SearchSpace
from patsparse.tasks import CLASSIFICATION, Task

SEARCH_VERSION = 1
#: proposer of the uniform corners enqueued before the search (``seed_corners``)
CORNER = "corner"
#: proposer of a corner's uniform ladder (same scheme, lower rates) enqueued after it
UNIFORM = "uniform"
STATUSES = ("ok", "no_feasible", "infeasible")


@dataclass(frozen=True)
class SearchConfig:
    """Phase-2 settings (one source of the defaults).

    Give the constraint as ``latency_ms`` or as ``latency_fraction`` of the measured dense
    latency. ``storage``: an optuna storage URL (``sqlite:///nps.db``); ``None`` keeps the
    study in memory (no resume, one worker).
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


def open_study(config: SearchConfig, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """Create or load the study (``load_if_exists``): the shared state of every worker."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = config.storage
    if not url or url.split(":", 1)[0].split("+", 1)[0] not in ("sqlite", "postgresql", "mysql"):
        return optuna.create_study(
            storage=url,
            study_name=config.study_name,
            direction="maximize",
            sampler=sampler,
            load_if_exists=True,
        )
    from sqlalchemy.exc import SQLAlchemyError

    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # two workers on one file: wait for the other's write lock instead of failing
        engine_kwargs = {"connect_args": {"timeout": 120}}
    attempts = 6
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=config.heartbeat_interval,
                    grace_period=config.grace_period,
                    engine_kwargs=engine_kwargs,
                )
            return optuna.create_study(
                storage=storage,
                study_name=config.study_name,
                direction="maximize",
                sampler=sampler,
                load_if_exists=True,
            )
        except SQLAlchemyError:
            # workers started together race to create the schema/study; the loser retries
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1) + random.random() * 0.5)
    raise AssertionError("unreachable")


def _completed(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _check_same_search(study: optuna.Study, signature: dict[str, Any]) -> None:
    """A resumed study must have been created for the same space/constraint/reward."""
    text = json.dumps(signature, sort_keys=True)
    have = study.user_attrs.get("signature")
    if have is None:
        study.set_user_attr("signature", text)
    elif have != text:
        raise SearchConfigError(
            f"study {study.study_name!r} in this storage was created for another search "
            f"(space, constraint, device or reward differ):\n  stored: {have}\n  now:    {text}\n"
            "use a new --study-name or --storage, or repeat the original settings"
        )


class _NoPool:
    """Stands in for the compile pool when candidates compile in the search's process."""

    def __enter__(self) -> _NoPool:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class _CandidateFailed(Exception):
    """One candidate could not be compiled/timed: the trial fails, the search goes on."""


@dataclass(frozen=True)
class _References:
    """The reference points of a study, measured once and stored in it: the dense model and
    the fastest corners of the space (``corners``: ``[latency ms, configuration]`` pairs)."""

    dense_ms: float | None
    fastest_ms: float
    fastest_config: dict[str, str]
    corners: list[list[Any]]


class _StudyLatencies:
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
            for t in _completed(self.study):
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


def run_search(
    pretrained: nn.Module,
    space: SearchSpace,
    train: DataLoader,
    val: DataLoader,
    measurer: LatencyMeasurer,
    example: torch.Tensor,
    *,
    config: SearchConfig,
    progress: Callable[[str], None] | None = None,
    task: Task = CLASSIFICATION,
) -> SearchResult:
    """Run (or resume, or join) the phase-2 search until ``config.budget`` trials completed.

    Candidates are scored with ``task``'s metric on ``val`` (accuracy, or PSNR for
    super-resolution); the trials' ``accuracy`` fields hold that metric.
    """
    start = time.perf_counter()
    say = progress or (lambda _msg: None)
    if hasattr(measurer, "check"):
        measurer.check()  # a dead tracker fails here, before any trial
    sampler = NPSSampler(
        space,
        seed=config.seed,
        rl_fraction=config.rl_fraction,
        bo=config.bo,
        warmup_trials=config.warmup_trials,
        policy_lr=config.policy_lr,
    )
    study = open_study(config, sampler)
    latencies = _StudyLatencies(
        study, space, pretrained, measurer, example, structure_seed=config.structure_seed
    )
    _check_same_search(study, _signature(space, measurer, config, task))

    refs = _measure_references(latencies, say)
    constraint = _constraint(config, refs.dense_ms)
    dense_text = "n/a" if refs.dense_ms is None else f"{refs.dense_ms:.4f} ms"
    say(
        f"constraint {constraint:.4f} ms; dense {dense_text}; fastest corner "
        f"{refs.fastest_ms:.4f} ms; space {space.size} configurations"
    )

    def collect(status: str, message: str) -> SearchResult:
        result = _collect(study, status, message, constraint, refs, latencies.cache, config, task)
        result.seconds = time.perf_counter() - start
        return result

    if refs.fastest_ms > constraint:
        result = collect(
            "infeasible",
            f"no feasible configuration: the latency constraint {constraint:.4f} ms is below "
            f"the fastest corner of the search space (every layer at its scheme's highest "
            f"compression: {refs.fastest_ms:.4f} ms, {refs.fastest_config}); raise "
            f"the constraint to at least {refs.fastest_ms:.4f} ms or add faster schemes "
            "/ higher compression rates",
        )
    else:
        if config.seed_corners and not study.get_trials(deepcopy=False):
            _seed_study(latencies, refs, constraint)
        trials = _Trials(sampler, latencies, train, val, config, constraint, task, say)
        trials.run()
        result = collect("ok", "")
        if result.best is not None and config.verify_top > 0:
            _verify(result, config, space, pretrained, measurer, example, say)
        _conclude(result, task)
    return result


def _signature(
    space: SearchSpace, measurer: LatencyMeasurer, config: SearchConfig, task: Task
) -> dict[str, Any]:
    """What a resumed study must share with this search (:func:`_check_same_search`)."""
    signature: dict[str, Any] = {
        "space": space.to_dict(),
        "constraint_ms": config.latency_ms,
        "latency_fraction": config.latency_fraction,
        "device": measurer.key,
        "penalty": config.penalty,
        "fast_eval": config.fast_eval.to_dict(),
        "version": SEARCH_VERSION,
    }
    if task is not CLASSIFICATION:  # studies made before tasks existed keep their signature
        signature["task"] = task.name
    return signature


def _measure_references(latencies: _StudyLatencies, say: Callable[[str], None]) -> _References:
    """Step 1: the dense model and the fastest corners, measured once per study (stored in
    it with their latencies)."""
    study, space = latencies.study, latencies.space
    probe_key = f"probe:{latencies.measurer.key}"
    if probe_key in study.user_attrs:
        return _References(**json.loads(study.user_attrs[probe_key]))
    say("measuring the dense model and the most compressed configurations ...")
    dense_cfg = space.dense()
    dense_ms = latencies.measure(dense_cfg)[0] if dense_cfg else None
    corners = [(latencies.measure(c)[0], c) for c in space.extremes()]
    fastest_ms, fastest_cfg = min(corners, key=lambda mc: mc[0])
    refs = _References(dense_ms, fastest_ms, fastest_cfg, [[m, c] for m, c in corners])
    study.set_user_attr(probe_key, json.dumps(dataclasses.asdict(refs)))
    for cfg in ([dense_cfg] if dense_cfg else []) + [c for _, c in corners]:
        latencies.store(cfg)
    return refs


def _constraint(config: SearchConfig, dense_ms: float | None) -> float:
    """The latency constraint in ms: given, or a fraction of the measured dense latency."""
    if config.latency_ms is not None:
        return float(config.latency_ms)
    if dense_ms is None:
        raise SearchConfigError(
            "latency_fraction needs the dense latency, but 'dense' is not in the search "
            "space; give latency_ms instead or add dense to the schemes"
        )
    return float(config.latency_fraction or 0) * float(dense_ms)


def _seed_study(latencies: _StudyLatencies, refs: _References, constraint: float) -> None:
    """Step 2: enqueue the corners that meet ``constraint`` and their uniform ladders."""
    seeds = _uniform_seeds(
        latencies.space, refs.corners, constraint, lambda c: latencies.measure(c)[0]
    )
    for proposer, cfg in seeds:
        if proposer == UNIFORM:  # the corners' latencies were stored with the probe
            latencies.store(cfg)
    _seed_corners(latencies.study, latencies.space, seeds)


class _Trials:
    """Step 3: the study's trials until the budget is met (one :meth:`objective` each)."""

    def __init__(
        self,
        sampler: NPSSampler,
        latencies: _StudyLatencies,
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
        if len(_completed(self.study)) >= self.config.budget:
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
        if len(_completed(study)) >= budget or self.session_trials >= 3 * budget:
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
        done = len(_completed(self.study)) + 1
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


def _collect(
    study: optuna.Study,
    status: str,
    message: str,
    constraint: float,
    refs: _References,
    cache: LatencyCache,
    config: SearchConfig,
    task: Task,
) -> SearchResult:
    """The study's completed trials as a result; ``best``: the most accurate feasible one."""
    trials = [TrialSummary.from_trial(t) for t in _completed(study)]
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


def _conclude(result: SearchResult, task: Task) -> None:
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


def _uniform_seeds(
    space: SearchSpace,
    corners: list[list[Any]],
    constraint: float,
    latency: Callable[[dict[str, str]], float],
) -> list[tuple[str, dict[str, str]]]:
    """The probed corners that meet ``constraint`` (in probe order), each followed by its
    uniform ladder (:meth:`SearchSpace.ladder`) while the measured latency still meets it."""
    out: list[tuple[str, dict[str, str]]] = []
    for ms, cfg in corners:
        if float(ms) > constraint:
            continue
        out.append((CORNER, dict(cfg)))
        for lower in space.ladder(cfg):
            if latency(lower) > constraint:
                break  # lower rates are slower still
            out.append((UNIFORM, lower))
    return out


def _seed_corners(
    study: optuna.Study, space: SearchSpace, seeds: list[tuple[str, dict[str, str]]]
) -> None:
    """Enqueue ``seeds`` (proposer, configuration) as the study's first trials.

    Only a study without trials is seeded; ``skip_if_exists`` keeps two workers starting
    together from enqueueing a configuration twice.
    """
    if study.get_trials(deepcopy=False):
        return
    for proposer, cfg in seeds:
        study.enqueue_trial(
            space.to_params(cfg), user_attrs={PROPOSER_ATTR: proposer}, skip_if_exists=True
        )


def _verify(
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
    split = hasattr(measurer, "compile") and hasattr(measurer, "time")

    def measure_rounds(configs: dict[str, dict[str, str]]) -> dict[str, float]:
        models = {
            k: structure_model(pretrained, space.plan(c), seed=config.structure_seed)
            for k, c in configs.items()
        }
        compiled = (
            {k: measurer.compile(m, example) for k, m in models.items()}  # type: ignore[attr-defined]
            if split
            else {}
        )
        rounds: dict[str, list[float]] = {k: [] for k in models}
        for _ in range(config.verify_rounds):
            for k, m in models.items():
                lat = (
                    measurer.time(compiled[k], example)  # type: ignore[attr-defined]
                    if split
                    else measurer.measure(m, example)
                )
                rounds[k].append(lat.median_ms)
        return {k: statistics.median(v) for k, v in rounds.items()}

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
