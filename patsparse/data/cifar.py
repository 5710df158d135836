"""CIFAR-10 from the standard "python version" folder (``cifar-10-batches-py``).

Reads the pickled batches directly (no torchvision). The folder is never downloaded here;
get ``cifar-10-python.tar.gz`` from https://www.cs.toronto.edu/~kriz/cifar.html and unpack it.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from patsparse.core.errors import DataError

CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
"""Per-channel mean of the CIFAR-10 training images, pixels scaled to [0, 1]."""
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)
"""Per-channel standard deviation of the CIFAR-10 training images, pixels scaled to [0, 1]."""

TRAIN_FILES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES: tuple[str, ...] = ("test_batch",)
_SUBDIR = "cifar-10-batches-py"


def _resolve_root(root: Path) -> Path:
    """``root`` itself, or ``root/cifar-10-batches-py`` when that is where the batches are."""
    if not (root / TEST_FILES[0]).exists() and not (root / TRAIN_FILES[0]).exists():
        sub = root / _SUBDIR
        if sub.is_dir():
            return sub
    return root


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(data uint8 (N, 3072), labels int64 (N,))`` from one pickled batch file."""
    try:
        with path.open("rb") as fh:
            # The official batches are trusted pickles; only point this at files you trust.
            obj: Any = pickle.load(fh, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DataError(
            f"Cannot read CIFAR-10 batch {str(path)!r} ({exc}); re-extract "
            f"cifar-10-python.tar.gz so the file is an intact pickle."
        ) from exc
    if not isinstance(obj, dict) or b"data" not in obj or b"labels" not in obj:
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise DataError(
            f"CIFAR-10 batch {str(path)!r} is not a dict with b'data' and b'labels' (got "
            f"{keys}); use the python version of CIFAR-10 (cifar-10-python.tar.gz)."
        )
    data = np.asarray(obj[b"data"])
    labels = np.asarray(obj[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(
            f"CIFAR-10 batch {str(path)!r}: b'data' must be uint8 of shape (N, 3072), got "
            f"{data.dtype} {data.shape}; use the python version of CIFAR-10."
        )
    if labels.shape != (data.shape[0],):
        raise DataError(
            f"CIFAR-10 batch {str(path)!r}: {data.shape[0]} images but labels of shape "
            f"{labels.shape}; the file is corrupt, re-extract it."
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(
            f"CIFAR-10 batch {str(path)!r}: labels must be 0..9, got {labels.min()}.."
            f"{labels.max()}; is this CIFAR-100? Only CIFAR-10 is supported."
        )
    return data, labels


def load_cifar10(root: str | os.PathLike[str], *, train: bool) -> TensorDataset:
    """The CIFAR-10 training (``data_batch_1..5``) or test (``test_batch``) split.

    ``root`` is the ``cifar-10-batches-py`` folder or its parent. Yields ``(image, label)``:
    float32 ``(3, 32, 32)`` normalised with :data:`CIFAR10_MEAN` / :data:`CIFAR10_STD`,
    int64 label 0..9. Raises :class:`DataError` if the folder or a batch file is missing or
    malformed.
    """
    base = Path(root).expanduser()
    expected = TRAIN_FILES if train else TEST_FILES
    if not base.is_dir():
        raise DataError(
            f"CIFAR-10 folder {str(base)!r} does not exist; pass the unpacked "
            f"{_SUBDIR!r} folder (containing {', '.join(TRAIN_FILES + TEST_FILES)})."
        )
    folder = _resolve_root(base)
    missing = [f for f in expected if not (folder / f).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 folder {str(folder)!r} is missing {', '.join(missing)}; it must contain "
            f"{', '.join(expected)} (the python version, cifar-10-python.tar.gz, unpacked)."
        )
    parts = [_read_batch(folder / f) for f in expected]
    data = np.concatenate([d for d, _ in parts])
    labels = np.concatenate([lab for _, lab in parts])
    x = torch.from_numpy(data).reshape(-1, 3, 32, 32).to(torch.float32).div_(255.0)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    x = (x - mean) / std
    return TensorDataset(x, torch.from_numpy(labels))
