"""The super-resolution app: colour conversion, pairs, pictures, scores against bicubic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patsparse.apps import get_app
from patsparse.apps.photos import center_crop, load_photo
from patsparse.apps.sr import SuperResolution, bicubic, rgb_to_ycbcr, ycbcr_to_rgb
from patsparse.core.errors import DataError


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return center_crop(load_photo("astronaut"), 64)


def _bicubic_model(app: SuperResolution) -> torch.nn.Module:
    model = app.build().eval()
    torch.nn.init.zeros_(model.tail.weight)  # the untrained net without its tail: bicubic
    return model


def test_ycbcr_round_trip_and_grey(photo):
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(photo)), photo, atol=1e-5)
    grey = np.full((2, 2, 3), 0.4, np.float32)
    np.testing.assert_allclose(rgb_to_ycbcr(grey), [[[0.4, 0.5, 0.5]] * 2] * 2, atol=1e-6)


def test_pairs_are_luma_and_its_downscale(photo):
    app = SuperResolution()
    crops = np.stack([photo[:48, :48], photo[16:, 16:]])
    lr, hr = app.pairs(crops).tensors
    assert lr.shape == (2, 1, 24, 24) and hr.shape == (2, 1, 48, 48)
    np.testing.assert_allclose(hr[0, 0].numpy(), rgb_to_ycbcr(crops[0])[..., 0], atol=1e-6)
    assert float(lr.min()) >= 0 and float(lr.max()) <= 1
    with pytest.raises(DataError, match="multiples of 2"):
        app.pairs(np.zeros((2, 47, 47, 3), np.float32))


def test_pictures_are_upscaled_and_the_untrained_net_is_bicubic(photo):
    app = SuperResolution()
    small = photo[:30, :40]
    model = _bicubic_model(app)
    pic = app.picture(model, small)
    base = app.baseline_picture(small)
    assert pic.shape == base.shape == (60, 80, 3)
    # luma by the net, chroma bicubic: the bicubic net gives the bicubic picture (up to
    # where RGB clipping moved the luma)
    assert np.abs(pic - base).mean() < 2e-3


def test_quality_degrades_scores_and_beats_nothing_untrained(photo):
    app = SuperResolution()
    photos = {"a": photo, "b": photo[:50, :62]}
    base = app.baseline(photos)
    q = app.quality(_bicubic_model(app), photos)
    assert set(q) == set(base) == {"psnr", "ssim"}
    assert q["psnr"] == pytest.approx(base["psnr"], abs=0.1)
    assert 20 < base["psnr"] < 60 and 0 < base["ssim"] < 1
    hr = app.fit_to_scale(photo)
    assert app.score(hr, photo)["psnr"] == pytest.approx(100.0)
    assert app.degrade(photo[:50, :63]).shape == (25, 31, 3)
    assert bicubic(photo, 0.5).shape == (32, 32, 3)


def test_x4_pairs_and_pictures(photo):
    app = SuperResolution(4)
    lr, hr = app.pairs(photo[None, :48, :48]).tensors
    assert lr.shape == (1, 1, 12, 12) and hr.shape == (1, 1, 48, 48)
    assert app.picture(_bicubic_model(app), photo[:10, :12]).shape == (40, 48, 3)


def test_sr4_is_the_x4_app_on_larger_crops(photo):
    app = get_app("sr4")
    assert app.name == "sr4" and app.scale == 4 and "x4" in app.title
    assert app.train_defaults.patch == 96  # low-resolution crops of 24², as x2's
    assert app.build()(torch.zeros(1, 1, 6, 5)).shape == (1, 1, 24, 20)
    assert get_app("sr").scale == 2


def test_wrong_output_size_is_a_typed_error(photo):
    app = SuperResolution()
    with pytest.raises(DataError, match="not 2x"):
        app.to_picture(torch.zeros(1, 1, 10, 10), photo[:10, :10])
    with pytest.raises(ValueError, match="2, 3 or 4"):
        SuperResolution(5)
