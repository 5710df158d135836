"""PSNR and SSIM: known values, the properties that define them, and skimage's SSIM."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import metrics

from patsparse.apps.metrics import gaussian_window, psnr, shave, ssim
from patsparse.apps.photos import load_photo
from patsparse.core.errors import DataError


def _pic(seed: int, shape=(40, 48)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape)


def test_psnr_known_values():
    a = np.zeros((8, 8))
    assert psnr(a + 0.1, a) == pytest.approx(20.0)  # MSE 0.01
    assert psnr(a + 0.01, a) == pytest.approx(40.0)
    assert psnr(a + 0.2, a, data_range=2.0) == pytest.approx(20.0)
    assert psnr(a, a) == pytest.approx(100.0)


def test_gaussian_window_is_normalised_and_symmetric():
    g = gaussian_window()
    assert g.size == 11 and g.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(g, g[::-1])
    assert g.argmax() == 5


def test_ssim_identity_symmetry_and_noise():
    a, b = _pic(0), _pic(1)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, b) == pytest.approx(ssim(b, a))
    rng = np.random.default_rng(2)
    little = ssim(np.clip(a + 0.02 * rng.standard_normal(a.shape), 0, 1), a)
    lots = ssim(np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1), a)
    assert 1.0 > little > lots
    # a constant picture against itself: the stabilising constants make it exactly 1
    assert ssim(np.full((16, 16), 0.3), np.full((16, 16), 0.3)) == pytest.approx(1.0)


def test_ssim_matches_skimage_on_a_photo():
    photo = load_photo("camera")[100:180, 120:220, 0].astype(np.float64)
    noisy = np.clip(photo + 0.05 * np.random.default_rng(0).standard_normal(photo.shape), 0, 1)
    ref = metrics.structural_similarity(
        noisy,
        photo,
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim(noisy, photo) == pytest.approx(ref, abs=1e-9)


def test_ssim_of_colour_is_the_mean_of_its_channels():
    a, b = _pic(3, (20, 20, 3)), _pic(4, (20, 20, 3))
    assert ssim(a, b) == pytest.approx(np.mean([ssim(a[..., c], b[..., c]) for c in range(3)]))


def test_bad_pictures_are_typed_errors():
    with pytest.raises(DataError, match="differ in shape"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(DataError, match="at least 11x11"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))
    with pytest.raises(DataError, match="nothing left"):
        shave(np.zeros((4, 4)), 2)
    assert shave(np.zeros((10, 12)), 2).shape == (6, 8)
