"""The RL side of NPS: a REINFORCE policy over per-layer categorical choices, and the optuna
sampler that mixes it with Bayesian optimisation.

:class:`ReinforcePolicy` keeps one logit vector per searchable layer; a configuration is
sampled layer by layer, and after each evaluated configuration the logits move along
``(reward - baseline) * grad log pi`` (the baseline is an exponential moving average of the
reward; advantages are normalised by a moving standard deviation and clipped).

:class:`NPSSampler` is an ``optuna`` sampler: each trial is proposed either by the policy or
by a BO sampler (TPE or GP), chosen by a seeded draw per trial number (``rl_fraction``).
The policy holds no state of its own: it is rebuilt by replaying the study's finished trials
in trial order (both proposers' trials are experience), so a resumed search or a second
worker on the same storage continues with the same policy. The first ``warmup_trials``
trials are sampled from the prior (uniform policy, TPE/GP random start-up), which makes
them identical for the same seed.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from patsparse.core.errors import SearchConfigError
from patsparse.search.space import SearchSpace

BO_SAMPLERS = ("tpe", "gp")
#: user attribute naming which side proposed a trial
PROPOSER_ATTR = "proposer"


class ReinforcePolicy:
    """Independent softmax policies, one per layer, trained with REINFORCE + baseline."""

    def __init__(self, sizes: Sequence[int], *, lr: float = 0.3, decay: float = 0.8) -> None:
        if any(n < 1 for n in sizes):
            raise SearchConfigError(f"every layer needs at least one choice, got sizes {sizes}")
        self.logits = [np.zeros(n, dtype=np.float64) for n in sizes]
        self.lr, self.decay = lr, decay
        self.baseline: float | None = None
        self.var = 1.0
        self.updates = 0

    def probs(self) -> list[np.ndarray]:
        out = []
        for z in self.logits:
            e = np.exp(z - z.max())
            out.append(e / e.sum())
        return out

    def sample(self, rng: random.Random) -> list[int]:
        """One action per layer (inverse-CDF draws from ``rng``: reproducible)."""
        actions = []
        for p in self.probs():
            u, acc = rng.random(), 0.0
            idx = len(p) - 1
            for i, pi in enumerate(p):
                acc += float(pi)
                if u < acc:
                    idx = i
                    break
            actions.append(idx)
        return actions

    def update(self, actions: Sequence[int], reward: float) -> None:
        """One policy-gradient step on ``(actions, reward)``."""
        if self.baseline is None:
            self.baseline = reward
        adv = reward - self.baseline
        std = math.sqrt(self.var) if self.updates else 1.0
        adv = max(-3.0, min(3.0, adv / max(std, 1e-6)))
        for z, p, a in zip(self.logits, self.probs(), actions, strict=True):
            grad = -p
            grad[a] += 1.0
            z += self.lr * adv * grad
        diff = reward - self.baseline
        self.var = self.decay * self.var + (1 - self.decay) * diff * diff
        self.baseline = self.decay * self.baseline + (1 - self.decay) * reward
        self.updates += 1

    @classmethod
    def replay(
        cls, space: SearchSpace, trials: Sequence[FrozenTrial], *, lr: float = 0.3
    ) -> ReinforcePolicy:
        """The policy after learning from ``trials`` (finished ones, in trial order)."""
        layers = list(space.layers)
        policy = cls([len(space.layers[n]) for n in layers], lr=lr)
        for t in sorted(trials, key=lambda t: t.number):
            if t.state != TrialState.COMPLETE or t.value is None:
                continue
            try:
                actions = [space.labels(n).index(t.params[space.param_name(n)]) for n in layers]
            except (KeyError, ValueError):
                continue  # a trial from another space: not experience for this policy
            policy.update(actions, float(t.value))
        return policy


def _derived_seed(seed: int, number: int, salt: int) -> int:
    return (seed * 1_000_003 + number * 7919 + salt) % (2**31 - 1)


class NPSSampler(BaseSampler):
    """RL (REINFORCE) and BO (optuna TPE or GP) proposals, mixed per trial; see module doc."""

    def __init__(
        self,
        space: SearchSpace,
        *,
        seed: int = 0,
        rl_fraction: float = 0.5,
        bo: str = "tpe",
        warmup_trials: int = 4,
        policy_lr: float = 0.3,
    ) -> None:
        if not 0.0 <= rl_fraction <= 1.0:
            raise SearchConfigError(f"rl_fraction must be in [0, 1], got {rl_fraction}")
        if bo not in BO_SAMPLERS:
            raise SearchConfigError(f"unknown BO sampler {bo!r}; choose one of {BO_SAMPLERS}")
        if warmup_trials < 0:
            raise SearchConfigError(f"warmup_trials must be >= 0, got {warmup_trials}")
        self.space = space
        self.seed = seed
        self.rl_fraction = rl_fraction
        self.bo = bo
        self.warmup_trials = warmup_trials
        self.policy_lr = policy_lr
        self._bo_cache: dict[int, BaseSampler] = {}

    # -- who proposes -------------------------------------------------------------------
    def proposer(self, number: int) -> str:
        """``"rl"`` or ``"bo"`` for trial ``number`` (a seeded draw: same on every worker)."""
        draw = random.Random(_derived_seed(self.seed, number, 1)).random()
        return "rl" if draw < self.rl_fraction else "bo"

    def _bo_sampler(self, number: int) -> BaseSampler:
        # One BO sampler per trial, seeded by (seed, trial number): reproducible for a seed
        # and different on two workers (a shared seed would repeat its random start-up).
        if number not in self._bo_cache:
            seed = _derived_seed(self.seed, number, 2)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                sampler: BaseSampler
                if self.bo == "tpe":
                    sampler = optuna.samplers.TPESampler(
                        seed=seed, n_startup_trials=self.warmup_trials, multivariate=True
                    )
                else:
                    sampler = optuna.samplers.GPSampler(
                        seed=seed, n_startup_trials=self.warmup_trials
                    )
            self._bo_cache = {number: sampler}  # keep only the current trial's
        return self._bo_cache[number]

    def _distributions(self) -> dict[str, BaseDistribution]:
        return {
            self.space.param_name(n): CategoricalDistribution(list(self.space.labels(n)))
            for n in self.space.layers
        }

    # -- optuna's sampler interface ------------------------------------------------------
    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        if self.proposer(trial.number) == "rl":
            return self._distributions()
        return self._bo_sampler(trial.number).infer_relative_search_space(study, trial)

    def sample_relative(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        search_space: dict[str, BaseDistribution],
    ) -> dict[str, Any]:
        if self.proposer(trial.number) == "rl":
            return self.rl_params(study, trial.number)
        return self._bo_sampler(trial.number).sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        if self.proposer(trial.number) == "rl":  # all params are relative; a stray one
            rng = random.Random(_derived_seed(self.seed, trial.number, 3))
            assert isinstance(param_distribution, CategoricalDistribution)
            return rng.choice(list(param_distribution.choices))
        return self._bo_sampler(trial.number).sample_independent(
            study, trial, param_name, param_distribution
        )

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.proposer(trial.number) == "bo":
            self._bo_sampler(trial.number).before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        if self.proposer(trial.number) == "bo" and trial.number in self._bo_cache:
            self._bo_cache[trial.number].after_trial(study, trial, state, values)

    # -- the policy ----------------------------------------------------------------------
    def policy(self, study: optuna.Study, *, before: int | None = None) -> ReinforcePolicy:
        """The policy replayed from the study's finished trials (numbered below ``before``)."""
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if before is not None:
            trials = [t for t in trials if t.number < before]
        return ReinforcePolicy.replay(self.space, trials, lr=self.policy_lr)

    def rl_params(self, study: optuna.Study, number: int) -> dict[str, str]:
        """The policy's proposal for trial ``number`` (prior during warm-up)."""
        layers = list(self.space.layers)
        if number < self.warmup_trials:
            policy = ReinforcePolicy([len(self.space.layers[n]) for n in layers])
        else:
            policy = self.policy(study, before=number)
        actions = policy.sample(random.Random(_derived_seed(self.seed, number, 0)))
        return {
            self.space.param_name(n): self.space.labels(n)[a]
            for n, a in zip(layers, actions, strict=True)
        }
