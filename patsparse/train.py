"""Small training and evaluation loops used by the pruners, the CLI and the tests."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

OPTIMIZERS = ("sgd", "adam")


def make_optimizer(
    model: nn.Module,
    *,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    kind: str = "sgd",
) -> torch.optim.Optimizer:
    """SGD with momentum (classification) or Adam (regression tasks such as SR)."""
    if kind == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
        )
    if kind == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {kind!r}; choose one of {', '.join(OPTIMIZERS)}")


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


@torch.no_grad()
def psnr(model: nn.Module, loader: DataLoader, *, peak: float = 1.0) -> float:
    """Mean per-image PSNR in dB of ``model(x)`` (clamped to ``[0, peak]``) against ``y``.

    Images the model reproduces exactly count as 100 dB (the MSE is floored at 1e-10 peak²).
    """
    model.eval()
    total, count = 0.0, 0
    for x, y in loader:
        out = model(x).clamp(0.0, peak)
        if out.shape != y.shape:
            raise ValueError(
                f"psnr: model output {tuple(out.shape)} does not match the targets "
                f"{tuple(y.shape)}; is this an image-to-image model for this dataset?"
            )
        mse = ((out - y) ** 2).flatten(1).mean(1).clamp_min(1e-10 * peak * peak)
        total += float((10.0 * torch.log10(peak * peak / mse)).sum())
        count += len(x)
    return total / max(count, 1)


def fit(
    model: nn.Module,
    loader: DataLoader,
    *,
    epochs: int,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    loss_fn: LossFn | None = None,
    optimizer: str = "sgd",
    progress: bool = False,
    desc: str = "train",
) -> list[float]:
    """Plain training (SGD or Adam, see :func:`make_optimizer`) with a cosine schedule;
    returns per-epoch losses."""
    opt = make_optimizer(model, lr=lr, momentum=momentum, weight_decay=weight_decay, kind=optimizer)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    losses = []
    for _ in tqdm(range(epochs), desc=desc, disable=not progress, leave=False):
        losses.append(train_epoch(model, loader, opt, loss_fn=loss_fn))
        sched.step()
    return losses
