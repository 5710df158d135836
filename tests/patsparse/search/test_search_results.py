"""The reward of a trial and the accuracy/latency Pareto front."""

from __future__ import annotations

import pytest

from patsparse.search import TrialSummary, pareto_front, reward


def test_reward_and_pareto_front():
    assert reward(90.0, 1.0, 2.0, penalty=1.0) == 90.0
    assert reward(90.0, 3.0, 2.0, penalty=1.0) == pytest.approx(40.0)

    def t(n, acc, lat):
        return TrialSummary(n, {}, acc, lat, True, acc, "rl", False)

    trials = [t(0, 90, 1.0), t(1, 95, 2.0), t(2, 89, 1.5), t(3, 95, 2.5), t(4, 80, 0.5)]
    assert [x.number for x in pareto_front(trials)] == [4, 0, 1]
