"""The colorization app: YCbCr conversions, the mean-chroma baseline, the colourfulness-
aware loss and metrics, the photo <-> tensor conversions, and a few training steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patsparse.apps.color import (
    ColorizationApp,
    colorfulness,
    mean_chroma,
    rgb_to_ycbcr,
    ycbcr_to_rgb,
)
from patsparse.apps.photos import COLOR_PHOTOS, HELD_OUT, builtin_photos, random_crops
from patsparse.core.errors import DataError


class TinyColor(ColorizationApp):
    width = 4


@pytest.fixture(scope="module")
def photos():
    return builtin_photos(color_only=True)


def _mid_photo(seed: int = 0, shape: tuple[int, int] = (30, 42)) -> np.ndarray:
    """A colourful photo away from the RGB cube's faces (no clipping on the way back)."""
    return np.random.default_rng(seed).uniform(0.3, 0.7, (*shape, 3)).astype(np.float32)


def test_ycbcr_round_trip_and_grey_has_no_chroma():
    p = _mid_photo()
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(p)), p, atol=1e-5)
    grey = np.full((4, 4, 3), 0.4, np.float32)
    np.testing.assert_allclose(rgb_to_ycbcr(grey)[..., 1:], 0.0, atol=1e-6)


def test_mean_chroma_is_the_pixel_mean_of_the_training_photos(photos):
    app = ColorizationApp()
    assert set(photos.train) == set(COLOR_PHOTOS) - set(HELD_OUT)
    every = np.concatenate([rgb_to_ycbcr(p)[..., 1:].reshape(-1, 2) for p in photos.train.values()])
    np.testing.assert_allclose(app.chroma, every.astype(np.float64).mean(0), atol=1e-6)
    np.testing.assert_allclose(mean_chroma(photos.train), app.chroma)
    with pytest.raises(DataError):
        mean_chroma({})


def test_baseline_is_the_photos_lightness_with_the_mean_chroma():
    app = ColorizationApp(chroma=(-0.05, 0.08))
    p = _mid_photo()
    ycc = rgb_to_ycbcr(app.baseline_picture(p))
    np.testing.assert_allclose(ycc[..., 0], rgb_to_ycbcr(p)[..., 0], atol=1e-5)
    np.testing.assert_allclose(
        ycc[..., 1:], np.broadcast_to([-0.05, 0.08], ycc[..., 1:].shape), atol=1e-5
    )
    assert app.baseline({"p": p}) == app.score(app.baseline_picture(p), p)


def test_score_perfect_and_grey():
    app = ColorizationApp(chroma=(0.0, 0.0))
    p = _mid_photo()
    perfect = app.score(p, p)
    assert perfect["chroma_psnr"] == pytest.approx(100.0) and perfect["colorfulness_err"] == 0.0
    grey = app.score(app.baseline_picture(p), p)
    assert grey["chroma_psnr"] < 40.0
    assert grey["colorfulness_err"] == pytest.approx(colorfulness(p), rel=1e-3)
    with pytest.raises(DataError):
        app.score(p[:10], p)


def test_colorfulness_grey_is_zero_and_saturated_is_high():
    assert colorfulness(np.full((8, 8, 3), 0.5)) == pytest.approx(0.0)
    stripes = np.zeros((8, 8, 3))
    stripes[::2, :, 0] = 1.0
    stripes[1::2, :, 2] = 1.0
    assert colorfulness(stripes) > 80.0


def test_loss_pays_for_committing_to_a_colour_where_mse_pays_for_grey():
    """Half the pixels red, half blue: MSE prefers grey (the mean), this loss a colour."""
    app = ColorizationApp(chroma=(0.0, 0.0))
    target = torch.zeros(1, 2, 4, 4)
    target[:, 1, :2] = 0.3
    target[:, 1, 2:] = -0.3
    grey = torch.zeros_like(target)
    red = torch.zeros_like(target)
    red[:, 1] = 0.3
    mse = torch.nn.functional.mse_loss
    assert mse(grey, target) < mse(red, target)
    assert app.loss(red, target) < app.loss(grey, target)
    assert float(app.loss(target, target)) == pytest.approx(0.0, abs=1e-6)


def test_pairs_are_centred_lightness_and_chroma():
    app = ColorizationApp(chroma=(0.0, 0.0))
    crops = np.stack([_mid_photo(i, (8, 12)) for i in range(3)])
    x, y = app.pairs(crops).tensors
    assert x.shape == (3, 1, 8, 12) and y.shape == (3, 2, 8, 12)
    ycc = rgb_to_ycbcr(crops)
    np.testing.assert_allclose(x[:, 0].numpy(), ycc[..., 0] - 0.5, atol=1e-6)
    np.testing.assert_allclose(y.permute(0, 2, 3, 1).numpy(), ycc[..., 1:], atol=1e-6)
    with pytest.raises(DataError):
        app.pairs(crops[:, :7])
    with pytest.raises(DataError):
        app.pairs(crops[..., 0])


def test_to_input_pads_and_to_picture_keeps_the_photos_lightness():
    app = TinyColor(chroma=(0.0, 0.0))
    p = _mid_photo(shape=(30, 42))
    x = app.to_input(p)
    assert x.shape == (1, 1, 32, 44)
    out = torch.zeros(1, 2, 32, 44)
    out[:, 1] = 0.1
    pic = app.to_picture(out, p)
    assert pic.shape == p.shape
    ycc = rgb_to_ycbcr(pic)
    np.testing.assert_allclose(ycc[..., 0], rgb_to_ycbcr(p)[..., 0], atol=1e-5)
    np.testing.assert_allclose(ycc[..., 2], 0.1, atol=1e-5)
    assert app.picture(app.build(), p).shape == p.shape
    with pytest.raises(DataError):
        app.to_picture(torch.zeros(1, 2, 8, 8), p)
    with pytest.raises(DataError):
        app.to_input(p[..., 0])


def test_a_few_training_steps_reduce_the_loss(photos):
    torch.manual_seed(0)
    app = TinyColor()
    x, y = app.pairs(random_crops(photos.train, size=16, count=16, seed=0)).tensors
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
