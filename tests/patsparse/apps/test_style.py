"""The style-transfer app: the style picture, the photo-itself baseline, relative losses
as metrics, the photo <-> tensor conversions, and a few training steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patsparse.apps.features import FeatureConfig
from patsparse.apps.photos import load_photo, random_crops
from patsparse.apps.style import (
    STYLE_PHOTO,
    STYLE_SIZE,
    StyleConfig,
    StyleTransferApp,
    style_picture,
)
from patsparse.core.errors import DataError

SMALL = StyleConfig(features=FeatureConfig(widths=(6, 8, 12), content_layer=1))


class TinyStyle(StyleTransferApp):
    widths = (4, 8, 16)
    blocks = 1


def _photo(seed: int = 0, shape: tuple[int, int] = (30, 42)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, (*shape, 3)).astype(np.float32)


def test_style_picture_is_the_shipped_photo_resized():
    s = style_picture()
    src = load_photo(STYLE_PHOTO)
    assert max(s.shape[:2]) == STYLE_SIZE and s.shape[2] == 3
    assert s.mean() == pytest.approx(src.mean(), abs=0.01)
    assert style_picture(_photo(shape=(40, 80)), size=20).shape == (16, 20, 3)
    with pytest.raises(DataError):
        style_picture(_photo(shape=(8, 40)))


def test_baseline_is_the_photo_itself_with_zero_content_loss():
    app = StyleTransferApp(style=_photo(1, (64, 64)), config=SMALL)
    p = _photo(shape=(32, 40))
    np.testing.assert_array_equal(app.baseline_picture(p), p)
    base = app.baseline({"p": p})
    assert base["content_loss"] == 0.0 and base["style_loss"] > 0.0
    assert base == app.score(p, p)


def test_the_style_itself_has_zero_style_loss():
    app = StyleTransferApp(style=_photo(1, (64, 64)), config=SMALL)
    assert app.score(app.style, app.style)["style_loss"] < 1e-10
    with pytest.raises(DataError):
        app.score(app.style[:20], app.style)


def test_pairs_target_is_the_content():
    app = StyleTransferApp(config=SMALL)
    crops = np.stack([_photo(i, (8, 12)) for i in range(2)])
    x, y = app.pairs(crops).tensors
    assert x.shape == (2, 3, 8, 12) and torch.equal(x, y)
    np.testing.assert_array_equal(x.permute(0, 2, 3, 1).numpy(), crops)
    with pytest.raises(DataError):
        app.pairs(crops[:, :7])


def test_to_input_pads_and_to_picture_crops_back():
    app = TinyStyle(config=SMALL)
    p = _photo(shape=(30, 42))
    assert app.to_input(p).shape == (1, 3, 32, 44)
    pic = app.picture(app.build(), p)
    assert pic.shape == p.shape and pic.min() >= 0.0 and pic.max() <= 1.0
    with pytest.raises(DataError):
        app.to_picture(torch.zeros(1, 3, 8, 8), p)
    with pytest.raises(DataError):
        app.to_input(p[..., :2])


def test_bad_weights_are_value_errors():
    with pytest.raises(ValueError):
        StyleConfig(style_weight=0.0)
    with pytest.raises(ValueError):
        StyleConfig(content_weight=-1.0)


def test_a_few_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    app = TinyStyle(config=SMALL)
    x, y = app.pairs(random_crops([load_photo("astronaut")], size=16, count=8, seed=0)).tensors
    model = app.build()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with torch.no_grad():
        before = float(app.loss(model(x), y))
    for _ in range(20):
        opt.zero_grad()
        app.loss(model(x), y).backward()
        opt.step()
    with torch.no_grad():
        after = float(app.loss(model(x), y))
    assert after < 0.8 * before
