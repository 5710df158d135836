"""Training an app's model from photos: deterministic, logged, evaluated on held-out photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patsparse.apps.base import AppTrainConfig
from patsparse.apps.photos import PhotoSet, load_photo
from patsparse.apps.sr import SuperResolution
from patsparse.apps.train import train_app

TINY = AppTrainConfig(steps=6, batch_size=4, patch=16, lr=2e-3, seed=3, pairs=16)


@pytest.fixture(scope="module")
def photos() -> PhotoSet:
    a = load_photo("astronaut")
    return PhotoSet(
        train={"face": a[:96, 160:256], "grass": load_photo("grass")[:96, :96]},
        held_out={"rocket": load_photo("rocket")[:40, :48]},
        source="test crops",
    )


def _state(model: torch.nn.Module) -> list[np.ndarray]:
    return [v.detach().numpy().copy() for v in model.state_dict().values()]


def test_same_seed_same_model_other_seed_other_model(photos):
    app = SuperResolution()
    m1, log1 = train_app(app, photos, config=TINY, evaluate=False, log_every=2)
    m2, log2 = train_app(app, photos, config=TINY, evaluate=False, log_every=2)
    for a, b in zip(_state(m1), _state(m2), strict=True):
        np.testing.assert_array_equal(a, b)
    assert log1.losses == log2.losses
    assert [s for s, _ in log1.losses] == [2, 4, 6]
    m3, _ = train_app(
        app, photos, config=AppTrainConfig(**{**TINY.__dict__, "seed": 4}), evaluate=False
    )
    assert any(not np.array_equal(a, b) for a, b in zip(_state(m1), _state(m3), strict=True))


def test_training_lowers_the_loss_and_reports_held_out_quality(photos):
    app = SuperResolution()
    cfg = AppTrainConfig(steps=30, batch_size=8, patch=16, lr=3e-3, seed=0, pairs=64)
    model, log = train_app(app, photos, config=cfg, log_every=10)
    assert not model.training
    first, last = log.losses[0][1], log.losses[-1][1]
    assert last < first
    assert set(log.quality) == set(log.baseline) == {"psnr", "ssim"}
    assert log.seconds > 0 and log.to_dict()["config"]["steps"] == 30


def test_bad_budgets_are_rejected(photos):
    app = SuperResolution()
    with pytest.raises(ValueError, match="fill a batch"):
        train_app(app, photos, config=AppTrainConfig(steps=1, batch_size=8, pairs=4, patch=16))
    with pytest.raises(ValueError, match="log_every"):
        train_app(app, photos, config=TINY, log_every=0)
    with pytest.raises(ValueError, match="steps"):
        AppTrainConfig(steps=0)
