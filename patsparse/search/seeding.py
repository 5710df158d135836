"""Seeding a new study (``SearchConfig.seed_corners``): the corners of the space that meet the
constraint are enqueued as its first trials (proposer ``"corner"``), each followed by its
scheme's uniform ladder down to the last rate that still meets the constraint (proposer
``"uniform"``, measured before enqueueing).

The RL policy and the BO model then start from known-feasible points instead of a uniform
prior, which on a space where most random mixes are too slow is the difference between finding
a feasible configuration in the budget or not, and the search never ends below the best uniform
configuration its fast evaluation can see.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

from patsparse.search.controller import PROPOSER_ATTR
from patsparse.search.latencies import References, StudyLatencies
from patsparse.search.space import SearchSpace

#: proposer of the uniform corners enqueued before the search (``seed_corners``)
CORNER = "corner"
#: proposer of a corner's uniform ladder (same scheme, lower rates) enqueued after it
UNIFORM = "uniform"


def seed_study(latencies: StudyLatencies, refs: References, constraint: float) -> None:
    """Step 2: enqueue the corners that meet ``constraint`` and their uniform ladders."""
    seeds = uniform_seeds(
        latencies.space, refs.corners, constraint, lambda c: latencies.measure(c)[0]
    )
    for proposer, cfg in seeds:
        if proposer == UNIFORM:  # the corners' latencies were stored with the probe
            latencies.store(cfg)
    seed_corners(latencies.study, latencies.space, seeds)


def uniform_seeds(
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


def seed_corners(
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
