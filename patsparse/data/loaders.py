"""DataLoader construction shared by training and evaluation."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset


def make_loaders(
    train: Dataset[Any], test: Dataset[Any], *, batch_size: int = 64, seed: int = 0
) -> tuple[DataLoader[Any], DataLoader[Any]]:
    """``(train_loader, test_loader)``, single-process (``num_workers=0``).

    The train loader reshuffles every epoch from a generator seeded with ``seed``, so two
    calls with the same seed iterate identically; the test loader keeps dataset order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    gen = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(
        train, batch_size=batch_size, shuffle=True, generator=gen, num_workers=0
    )
    test_loader = DataLoader(test, batch_size=batch_size, shuffle=False, num_workers=0)
    return train_loader, test_loader
