"""Image quality metrics of the applications: PSNR and SSIM, on numpy pictures in [0, 1].

SSIM follows Wang et al. (2004): an 11-tap Gaussian window of sigma 1.5, K1 = 0.01,
K2 = 0.03, population (co)variances, averaged over the positions where the window fits
inside the picture (what ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
use_sample_covariance=False)`` computes). Colour pictures are scored per channel and averaged.
"""

from __future__ import annotations

import numpy as np

from patsparse.core.errors import DataError

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # int(3.5 * sigma + 0.5): the window skimage's default truncation gives
SSIM_K1 = 0.01
SSIM_K2 = 0.03

#: the PSNR of identical pictures (MSE floored so the figure stays finite)
MAX_PSNR = 100.0


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise DataError(
            f"pictures to compare differ in shape: {x.shape} vs {y.shape}",
            fix="compare a picture with a reference of the same size",
        )
    if x.ndim not in (2, 3) or min(x.shape[:2]) < 1:
        raise DataError(
            f"a picture must be (H, W) or (H, W, C), got shape {x.shape}",
            fix="pass a grey or colour picture",
        )
    return x, y


def shave(img: np.ndarray, border: int) -> np.ndarray:
    """``img`` without ``border`` pixels on each side (SR scores skip the border)."""
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    if border == 0:
        return img
    if min(img.shape[:2]) <= 2 * border:
        raise DataError(
            f"a {img.shape[0]}x{img.shape[1]} picture has nothing left without a {border}-pixel "
            "border",
            fix="score larger pictures",
        )
    return img[border:-border, border:-border]


def psnr(picture: np.ndarray, reference: np.ndarray, *, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (:data:`MAX_PSNR` for identical pictures)."""
    x, y = _pair(picture, reference)
    mse = float(np.mean((x - y) ** 2))
    floor = data_range * data_range * 10.0 ** (-MAX_PSNR / 10.0)
    return float(10.0 * np.log10(data_range * data_range / max(mse, floor)))


def gaussian_window(sigma: float = SSIM_SIGMA, radius: int = SSIM_RADIUS) -> np.ndarray:
    """The normalised 1-D Gaussian of ``2 * radius + 1`` taps."""
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (t / sigma) ** 2)
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable filtering of a 2-D array with ``g``, only where the window fits."""
    rows = np.apply_along_axis(np.convolve, 0, img, g, mode="valid")
    return np.apply_along_axis(np.convolve, 1, rows, g, mode="valid")


def _ssim_plane(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    g = gaussian_window()
    if min(x.shape) < g.size:
        raise DataError(
            f"SSIM needs pictures of at least {g.size}x{g.size} pixels, got {x.shape[0]}x"
            f"{x.shape[1]}",
            fix="score larger pictures",
        )
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mx, my = _filter_valid(x, g), _filter_valid(y, g)
    vx = _filter_valid(x * x, g) - mx * mx
    vy = _filter_valid(y * y, g) - my * my
    cxy = _filter_valid(x * y, g) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def ssim(picture: np.ndarray, reference: np.ndarray, *, data_range: float = 1.0) -> float:
    """Structural similarity (mean SSIM; per channel and averaged for colour pictures)."""
    x, y = _pair(picture, reference)
    if x.ndim == 2:
        return _ssim_plane(x, y, data_range)
    return float(
        np.mean([_ssim_plane(x[..., c], y[..., c], data_range) for c in range(x.shape[2])])
    )
