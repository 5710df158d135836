"""NPS fast accuracy evaluation: one-shot magnitude pruning + a short retrain.

Starting from the pre-trained model, a candidate plan is applied by
:class:`~patsparse.pruning.MagnitudePruner` (one projection, masks kept as
parametrizations) and retrained for a few epochs (or at most ``max_steps`` batches); the
accuracy on a held-out split ranks candidates against each other (paper 003 §2.2).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from patsparse.core.errors import SearchConfigError
from patsparse.data import make_loaders
from patsparse.pruning.pruners import MagnitudePruner
from patsparse.schemes.plan import PruningPlan
from patsparse.tasks import CLASSIFICATION, Task
from patsparse.train import make_optimizer


@dataclass(frozen=True)
class FastEvalConfig:
    """Budget of one candidate's accuracy evaluation (one source of the defaults)."""

    retrain_epochs: int = 2
    max_steps: int | None = None
    lr: float | None = None  # None: the task's fine-tuning rate
    momentum: float = 0.9
    version: int = 1

    def __post_init__(self) -> None:
        if self.retrain_epochs < 0 or (self.max_steps is not None and self.max_steps < 0):
            raise SearchConfigError(
                f"fast evaluation needs retrain_epochs >= 0 and max_steps >= 0; got {self}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def fast_evaluate(
    pretrained: nn.Module,
    plan: PruningPlan,
    train: DataLoader,
    val: DataLoader,
    *,
    config: FastEvalConfig | None = None,
    seed: int = 0,
    task: Task = CLASSIFICATION,
) -> float:
    """Validation metric of ``pretrained`` one-shot pruned by ``plan`` and retrained
    (accuracy in % for classification, PSNR in dB for super-resolution)."""
    cfg = config or FastEvalConfig()
    model = copy.deepcopy(pretrained)
    torch.manual_seed(seed)
    pruner = MagnitudePruner(plan)
    pruner.prepare(model)
    pruner.step()
    opt = make_optimizer(
        model,
        lr=cfg.lr if cfg.lr is not None else task.finetune_lr,
        momentum=cfg.momentum,
        kind=task.optimizer,
    )
    # A loader of its own, shuffled from ``seed``: the same candidate sees the same batches
    # whatever ran before it (a shared loader's generator would advance between trials).
    loader = DataLoader(
        train.dataset,
        batch_size=train.batch_size or 64,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    steps = 0
    loss_fn = task.loss_fn
    for _ in range(cfg.retrain_epochs):
        model.train()
        for x, y in loader:
            if cfg.max_steps is not None and steps >= cfg.max_steps:
                break
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
            steps += 1
    pruner.squash_mask()
    return task.evaluate(model, val)


def split_train_val(
    train_loader: DataLoader, *, val_fraction: float = 0.15, seed: int = 0
) -> tuple[DataLoader, DataLoader]:
    """Split a train loader's dataset into (train, validation) loaders, deterministically.

    The search ranks candidates and picks the pruning algorithm on the validation split, so
    the test split reports an unbiased accuracy at the end.
    """
    if not 0.0 < val_fraction < 1.0:
        raise SearchConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    dataset = train_loader.dataset
    n = len(dataset)  # type: ignore[arg-type]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, round(val_fraction * n))
    val_idx, train_idx = sorted(perm[:n_val]), sorted(perm[n_val:])
    batch = train_loader.batch_size or 64
    return make_loaders(
        Subset(dataset, train_idx), Subset(dataset, val_idx), batch_size=batch, seed=seed
    )
