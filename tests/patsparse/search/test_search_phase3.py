"""Phase 3: magnitude vs ADMM on the chosen plan; the winner is the final model."""

from __future__ import annotations

import pytest

from patsparse.core.errors import SearchConfigError
from patsparse.search.phase3 import Phase3Config, choose_algorithm


def test_choose_algorithm_keeps_the_most_accurate(small_space, search_splits):
    model, space = small_space
    plan = space.plan({"features.3": "pattern+connectivity@8", "features.7": "dense"})
    cfg = Phase3Config(admm_epochs=1, retrain_epochs=1)
    result = choose_algorithm(model, plan, *search_splits, config=cfg)
    assert set(result.val_accuracy) == {"magnitude", "admm"}
    assert result.val_accuracy[result.method] == max(result.val_accuracy.values())
    w = result.model.features[3].weight
    assert float((w != 0).float().mean()) == pytest.approx(1 / 8, abs=0.01)
    assert (result.model.features[7].weight != 0).all()  # kept dense
    assert set(result.result.masks) == {"features.3"}


def test_phase3_config_validation():
    with pytest.raises(SearchConfigError, match="subset"):
        Phase3Config(methods=("magnitude", "lottery"))
    with pytest.raises(SearchConfigError):
        Phase3Config(methods=())
