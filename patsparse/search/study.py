"""NPS phase 2: the scheme search, an optuna study driven by RL + BO (see
:mod:`patsparse.search.controller`). :func:`run_search` runs it in named steps: the reference
latencies and the constraint (:mod:`.latencies`), the seeds (:mod:`.seeding`), the trials
(:mod:`.trials`) and the result (:mod:`.conclude`, :mod:`.results`); its settings are a
:class:`~.config.SearchConfig`.

All state lives in the study: an SQLite file by default (any optuna storage URL, e.g.
PostgreSQL, for many machines), so workers on one storage share a search, and a killed
search resumes (finished trials are kept; a trial left running by a killed worker is marked
failed by optuna's heartbeat after ``grace_period`` seconds). ``budget`` counts *completed*
trials over all workers. Before any trial the search measures the dense model and the fastest
corners of the space (stored in the study, measured once): a constraint below the fastest
measured corner ends with status ``"infeasible"`` and no trial run. With ``seed_corners`` the
corners that meet the constraint and their uniform ladders are the study's first trials.
"""

from __future__ import annotations

import json
import random
import time
import warnings
from collections.abc import Callable
from typing import Any

import optuna
import torch
from torch import nn
from torch.utils.data import DataLoader

from patsparse.core.errors import SearchConfigError
from patsparse.search.conclude import collect, conclude, verify
from patsparse.search.config import SEARCH_VERSION, SearchConfig
from patsparse.search.controller import NPSSampler
from patsparse.search.latencies import StudyLatencies, latency_constraint, measure_references
from patsparse.search.measurement import LatencyMeasurer
from patsparse.search.results import SearchResult
from patsparse.search.seeding import seed_study
from patsparse.search.space import SearchSpace
from patsparse.search.trials import Trials
from patsparse.tasks import CLASSIFICATION, Task


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

    _require_driver(url)
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


#: what installs the database driver SQLAlchemy picks for a storage URL's scheme
DRIVER_FIX = {
    "postgresql": "pip install 'patsparse[postgres]' (psycopg 3, which SQLAlchemy 2 uses for "
    "postgresql:// URLs)",
    "mysql": "pip install pymysql and use a mysql+pymysql:// URL",
}


def _require_driver(url: str) -> None:
    """A typed error naming the package to install when the URL's database driver is
    missing (SQLAlchemy's own is a bare ImportError deep inside optuna)."""
    from sqlalchemy.engine import make_url

    dialect = make_url(url).get_dialect()
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        scheme = url.split(":", 1)[0].split("+", 1)[0]
        fix = DRIVER_FIX.get(scheme, f"install the {dialect.driver!r} driver")
        raise SearchConfigError(
            f"--storage {url.split('@')[-1]!r}: the database driver {dialect.driver!r} is not "
            f"installed ({exc}); {fix}",
            fix=fix,
        ) from None


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
    latencies = StudyLatencies(
        study, space, pretrained, measurer, example, structure_seed=config.structure_seed
    )
    _check_same_search(study, _signature(space, measurer, config, task))

    refs = measure_references(latencies, say, rounds=config.verify_rounds)
    constraint = latency_constraint(config, refs.dense_ms)
    dense_text = "n/a" if refs.dense_ms is None else f"{refs.dense_ms:.4f} ms"
    say(
        f"constraint {constraint:.4f} ms; dense {dense_text}; fastest corner "
        f"{refs.fastest_ms:.4f} ms; space {space.size} configurations"
    )

    def result_of(status: str, message: str) -> SearchResult:
        result = collect(study, status, message, constraint, refs, latencies.cache, config, task)
        result.seconds = time.perf_counter() - start
        return result

    if refs.fastest_ms > constraint:
        result = result_of(
            "infeasible",
            f"no feasible configuration: the latency constraint {constraint:.4f} ms is below "
            f"the fastest corner of the search space (every layer at its scheme's highest "
            f"compression: {refs.fastest_ms:.4f} ms, {refs.fastest_config}); raise "
            f"the constraint to at least {refs.fastest_ms:.4f} ms or add faster schemes "
            "/ higher compression rates",
        )
    else:
        if config.seed_corners and not study.get_trials(deepcopy=False):
            seed_study(latencies, refs, constraint)
        trials = Trials(sampler, latencies, train, val, config, constraint, task, say)
        trials.run()
        result = result_of("ok", "")
        if result.best is not None and config.verify_top > 0:
            verify(result, config, space, pretrained, measurer, example, say)
        conclude(result, task)
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
