"""Phase 2 in process: seeded determinism, resume from storage, infeasible constraints, seeded
corners and the RL controller."""

from __future__ import annotations

import random

import optuna
import pytest
import torch
from _search_helpers import SlowStretch

from patsparse.core.errors import SearchConfigError
from patsparse.models import build_model
from patsparse.search import (
    FastEvalConfig,
    NPSSampler,
    ReinforcePolicy,
    SearchConfig,
    SearchSpace,
    SpaceConfig,
    run_search,
)
from patsparse.search.measurement import structure_model
from patsparse.search.seeding import CORNER, UNIFORM

X = torch.zeros(1, 1, 8, 8)
FAST = FastEvalConfig(retrain_epochs=1, max_steps=3)


def _search(space, splits, measurer, **kw):
    model, sp = space
    if "latency_ms" in kw:
        kw["latency_fraction"] = None
    cfg = SearchConfig(**{"latency_fraction": 100.0, "budget": 3, "fast_eval": FAST, **kw})
    return run_search(model, sp, *splits, measurer, X, config=cfg)


def test_same_seed_same_first_trials(small_space, search_splits, count_measurer):
    a = _search(small_space, search_splits, count_measurer, seed=7)
    b = _search(small_space, search_splits, count_measurer, seed=7)
    assert [t.config for t in a.trials] == [t.config for t in b.trials]
    assert [t.proposer for t in a.trials] == [t.proposer for t in b.trials]
    assert [t.accuracy for t in a.trials] == [t.accuracy for t in b.trials]
    assert len(a.trials) == 3 and a.status in ("ok", "no_feasible")
    # the probes ran first: dense latency and the fastest corner are known
    assert a.dense_ms is not None and a.fastest_ms < a.dense_ms
    assert a.constraint_ms == pytest.approx(100.0 * a.dense_ms)


def test_resume_from_storage_keeps_trials_and_latencies(
    small_space, search_splits, host_measurer, tmp_path
):
    storage = f"sqlite:///{tmp_path / 'nps.db'}"
    first = _search(small_space, search_splits, host_measurer, storage=storage, budget=2)
    second = _search(small_space, search_splits, host_measurer, storage=storage, budget=4)
    assert len(first.trials) == 2 and len(second.trials) == 4
    assert [t.to_dict() for t in second.trials[:2]] == [t.to_dict() for t in first.trials]
    # every configuration's latency was stored: the second run measured nothing new
    # (4 configurations: the probes measured 2, the first run at most 2 more)
    assert second.cache_misses <= 4 - len({t.latency_ms for t in first.trials} | {0})
    assert second.dense_ms == first.dense_ms
    with pytest.raises(SearchConfigError, match="another search"):
        _search(small_space, search_splits, host_measurer, storage=storage, latency_fraction=0.4)


def test_constraint_below_anything_reachable_is_a_clear_result(
    small_space, search_splits, host_measurer
):
    result = _search(small_space, search_splits, host_measurer, latency_ms=1e-6)
    assert result.status == "infeasible" and not result.feasible
    assert "no feasible configuration" in result.message
    assert "raise the constraint" in result.message
    assert result.trials == [] and result.best is None


def test_reference_latencies_are_timed_interleaved_so_one_slow_moment_does_not_decide(
    small_space, search_splits
):
    # the dense model and the fastest corner are timed in turns; the machine is slow during
    # the corner's first timing. Over verify_rounds=3 rounds the corner keeps its true
    # latency and a constraint at dense's latency is feasible; timed once, the slow moment
    # makes the corner look 10x slower and the whole search infeasible.
    model, space = small_space
    corner = space.extremes()[0]
    truth = SlowStretch(range(0)).compile(structure_model(model, space.plan(corner)), X) * 1e-4
    robust = _search(small_space, search_splits, SlowStretch(range(1, 2)), latency_fraction=1.0)
    assert robust.status == "ok" and robust.fastest_ms == pytest.approx(truth)
    assert robust.fastest_ms < robust.dense_ms
    once = _search(
        small_space,
        search_splits,
        SlowStretch(range(1, 2)),
        latency_fraction=1.0,
        verify_rounds=1,
    )
    assert once.status == "infeasible" and once.fastest_ms == pytest.approx(10 * truth)


def test_no_feasible_trial_is_reported(small_space, search_splits, count_measurer):
    _, space = small_space
    corner = space.extremes()[0]
    all_dense = {layer: "dense" for layer in corner}
    # an all-RL search whose first proposal is the dense model (the slowest configuration;
    # latencies by kept-weight count: real timings of this tiny model are within noise)
    study = optuna.create_study()
    seed = next(
        s
        for s in range(200)
        if space.from_params(NPSSampler(space, seed=s, rl_fraction=1.0).rl_params(study, 0))
        == all_dense
    )
    probe = _search(small_space, search_splits, count_measurer, latency_ms=10.0, budget=1)
    just_above = probe.fastest_ms * 1.03  # the dense model is not this fast
    result = _search(
        small_space,
        search_splits,
        count_measurer,
        latency_ms=just_above,
        budget=1,
        seed=seed,
        rl_fraction=1.0,
        seed_corners=False,  # the fastest corner meets the constraint
    )
    assert result.status == "no_feasible"
    assert "no feasible configuration among 1 trials" in result.message
    assert result.best is None and len(result.trials) == 1


def test_feasible_corners_and_their_ladders_are_the_first_trials(
    small_space, search_splits, host_measurer
):
    model, _ = small_space
    space = SearchSpace.from_model(
        model, SpaceConfig(schemes=("dense", "pattern+connectivity"), compressions=(4.0, 8.0))
    )
    seeds = [c for corner in space.extremes() for c in [corner, *space.ladder(corner)]]
    assert len(seeds) == 2  # p+c@8, then p+c@4
    budget = len(seeds) + 1
    result = _search((model, space), search_splits, host_measurer, budget=budget, seed=3)
    seeded = result.trials[: len(seeds)]
    assert [t.config for t in seeded] == seeds
    assert {t.proposer for t in seeded} == {CORNER, UNIFORM}
    assert all(t.feasible for t in seeded)  # 100x dense: every uniform configuration fits
    assert result.trials[-1].proposer in ("rl", "bo")
    assert result.cache_misses <= len(seeds) + 2  # seeds were measured once, before enqueueing
    plain = _search(
        (model, space), search_splits, host_measurer, budget=2, seed=3, seed_corners=False
    )
    assert not {CORNER, UNIFORM} & {t.proposer for t in plain.trials}


def test_reinforce_learns_a_bandit():
    policy = ReinforcePolicy([3, 2], lr=0.5)
    rng = random.Random(0)
    for _ in range(200):
        a = policy.sample(rng)
        policy.update(a, 1.0 if a == [2, 0] else 0.0)
    p = policy.probs()
    assert p[0][2] > 0.8 and p[1][0] > 0.8


def test_policy_is_rebuilt_from_the_study():
    cfg = SpaceConfig(schemes=("dense", "pattern+connectivity"), compressions=(8.0,))
    space = SearchSpace.from_model(build_model("digits-cnn"), cfg)
    study = optuna.create_study(direction="maximize")
    labels = {n: space.labels(n) for n in space.layers}
    good = {space.param_name(n): labels[n][1] for n in space.layers}
    for i in range(12):
        params = good if i % 2 else {space.param_name(n): labels[n][0] for n in space.layers}
        dists = NPSSampler(space)._distributions()
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=dists, value=float(i % 2))
        )
    a = NPSSampler(space, seed=1).policy(study).probs()
    b = NPSSampler(space, seed=1).policy(study).probs()
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
    assert all(p[1] > 0.6 for p in a)  # the rewarded choice gained probability


def test_proposers_mix_rl_and_bo_reproducibly():
    space = SearchSpace.from_model(build_model("digits-cnn"), SpaceConfig(compressions=(8.0,)))
    s = NPSSampler(space, seed=3, rl_fraction=0.5)
    who = [s.proposer(n) for n in range(40)]
    assert who == [NPSSampler(space, seed=3).proposer(n) for n in range(40)]
    assert 10 < who.count("rl") < 30
    assert set(NPSSampler(space, rl_fraction=0.0).proposer(n) for n in range(10)) == {"bo"}
    with pytest.raises(SearchConfigError):
        NPSSampler(space, bo="cmaes")


@pytest.mark.parametrize("bo", ["tpe", "gp"])
def test_bo_samplers_drive_an_optuna_study(bo):
    """Both BO back-ends propose valid configurations and replay identically per seed."""
    space = SearchSpace.from_model(
        build_model("digits-cnn"), SpaceConfig(schemes=("dense", "pattern", "filter"))
    )

    def objective(trial):
        cfg = {
            n: trial.suggest_categorical(space.param_name(n), space.labels(n)) for n in space.layers
        }
        return float(sum(label == "dense" for label in space.check(cfg).values()))

    def run(seed):
        sampler = NPSSampler(space, seed=seed, rl_fraction=0.0, bo=bo, warmup_trials=2)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(objective, n_trials=6)
        return [t.params for t in study.trials]

    first = run(5)
    assert first == run(5)
    assert all(space.from_params(p) for p in first)


@pytest.mark.parametrize(
    "url", ["postgresql://nps:secret@127.0.0.1:1/nps", "postgresql+psycopg://127.0.0.1/x"]
)
def test_missing_postgres_driver_is_a_typed_error_naming_the_extra(monkeypatch, url):
    import sys

    from patsparse.search.config import SearchConfig
    from patsparse.search.study import open_study

    monkeypatch.setitem(sys.modules, "psycopg", None)  # as on a machine without the extra
    with pytest.raises(SearchConfigError, match=r"patsparse\[postgres\]") as info:
        open_study(SearchConfig(latency_ms=1.0, storage=url), optuna.samplers.RandomSampler())
    assert "secret" not in str(info.value)  # the password stays out of the message
    assert info.value.fix and "psycopg" in info.value.fix
