"""Seeding a study: the corners that meet the constraint and their uniform ladders."""

from __future__ import annotations

import optuna

from patsparse.models import build_model
from patsparse.search import SearchSpace, SpaceConfig
from patsparse.search.seeding import CORNER, UNIFORM, seed_corners, uniform_seeds


def test_uniform_ladder_stops_at_the_constraint():
    cfg = SpaceConfig(schemes=("dense", "pattern+connectivity", "filter", "block"))
    space = SearchSpace.from_model(build_model("digits-cnn"), cfg)
    corners = space.extremes()
    assert len(corners) == 3
    filter8 = space.uniform("filter@8")
    assert filter8 in corners
    assert space.ladder(filter8) == [space.uniform(f"filter@{r:g}") for r in (6, 4, 3, 2)]
    assert space.ladder({**filter8, "features.3": "dense"}) == []  # mixed: no ladder
    latency = {f"filter@{r:g}": 10.0 - r for r in (8, 6, 4, 3, 2)}  # lower rate, slower

    def measure(c):
        return latency[next(iter(c.values()))] if len(set(c.values())) == 1 else 99.0

    probes = [[1.0 if c == filter8 else 9.0, c] for c in corners]  # only filter@8 fits
    seeds = uniform_seeds(space, probes, 6.5, measure)  # filter@6 (4 ms), @4 (6 ms) fit
    assert seeds == [
        (CORNER, filter8),
        (UNIFORM, space.uniform("filter@6")),
        (UNIFORM, space.uniform("filter@4")),
    ]
    study = optuna.create_study(direction="maximize")
    seed_corners(study, space, seeds)
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [space.from_params(t.system_attrs["fixed_params"]) for t in waiting] == [
        c for _, c in seeds
    ]
    assert [t.user_attrs["proposer"] for t in waiting] == [CORNER, UNIFORM, UNIFORM]
    seed_corners(study, space, [(CORNER, corners[0])])  # a study with trials: left alone
    assert len(study.get_trials()) == 3
