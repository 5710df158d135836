"""The scikit-learn digits (1797 real 8x8 handwritten digits) as train/test tensors.

Bundled with scikit-learn, so it needs no download: the dataset for fast end-to-end runs
with :class:`patsparse.models.DigitsCNN`.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import TensorDataset

DIGITS_MEAN: float = 0.5
"""Subtracted after scaling pixels from 0..16 to [0, 1]."""
DIGITS_STD: float = 0.5
"""Divided by after subtracting :data:`DIGITS_MEAN`; inputs end up in [-1, 1]."""


def normalize_digits(pixels: np.ndarray) -> torch.Tensor:
    """Raw 0..16 pixel values ``(N, 64)`` or ``(N, 8, 8)`` to float32 ``(N, 1, 8, 8)``.

    ``x = (pixels / 16 - DIGITS_MEAN) / DIGITS_STD``, so values lie in [-1, 1].
    """
    x = torch.as_tensor(np.asarray(pixels, dtype=np.float32)).reshape(-1, 1, 8, 8)
    return (x / 16.0 - DIGITS_MEAN) / DIGITS_STD


def load_digits_split(
    *, test_fraction: float = 0.2, seed: int = 0
) -> tuple[TensorDataset, TensorDataset]:
    """Stratified, deterministic ``(train, test)`` split of the digits.

    Each dataset yields ``(image, label)``: float32 ``(1, 8, 8)`` normalised by
    :func:`normalize_digits`, int64 label 0..9. The same ``seed`` gives the same split.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    bunch = load_digits()
    pixels = np.asarray(bunch.data)
    labels = np.asarray(bunch.target, dtype=np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, random_state=seed, stratify=labels
    )
    x = normalize_digits(pixels)
    y = torch.as_tensor(labels)
    tr = torch.as_tensor(np.sort(idx_train))
    te = torch.as_tensor(np.sort(idx_test))
    return TensorDataset(x[tr], y[tr]), TensorDataset(x[te], y[te])
