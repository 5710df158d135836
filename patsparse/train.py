"""Small training and evaluation loops used by the pruners, the CLI and the tests."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_optimizer(
    model: nn.Module, *, lr: float, momentum: float = 0.9, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def train_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    *,
    loss_fn: LossFn | None = None,
    penalty: Callable[[], torch.Tensor] | None = None,
) -> float:
    """One pass over ``loader``; ``penalty()`` (e.g. the ADMM term) is added to the loss.

    Returns the mean task loss (without the penalty).
    """
    loss_fn = loss_fn or nn.functional.cross_entropy
    model.train()
    total, count = 0.0, 0
    for x, y in loader:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        obj = loss + penalty() if penalty is not None else loss
        obj.backward()
        optimizer.step()
        total += float(loss.detach()) * len(x)
        count += len(x)
    return total / max(count, 1)


@torch.no_grad()
def accuracy(model: nn.Module, loader: DataLoader) -> float:
    """Top-1 accuracy in percent."""
    model.eval()
    correct, count = 0, 0
    for x, y in loader:
        correct += int((model(x).argmax(1) == y).sum())
        count += len(y)
    return 100.0 * correct / max(count, 1)


def fit(
    model: nn.Module,
    loader: DataLoader,
    *,
    epochs: int,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    loss_fn: LossFn | None = None,
    progress: bool = False,
    desc: str = "train",
) -> list[float]:
    """Plain training with SGD + cosine schedule; returns per-epoch losses."""
    opt = make_optimizer(model, lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    losses = []
    for _ in tqdm(range(epochs), desc=desc, disable=not progress, leave=False):
        losses.append(train_epoch(model, loader, opt, loss_fn=loss_fn))
        sched.step()
    return losses
