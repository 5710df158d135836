"""One call from a trained model and a plan to a pruned, retrained model.

``prune(model, plan, loader, config=PruneConfig(method="admm"))`` runs ADMM (penalised
training with a Z/U update after every epoch), hard-prunes, retrains with the masks fixed
and squashes them. ``method="magnitude"`` is one-shot projection + the same retraining.
The model is pruned in place and returned in the result.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from patsparse.pruning.pruners import ADMMPruner, ADMMSettings, BasePruner, MagnitudePruner
from patsparse.schemes.plan import LayerDecision, PruningPlan
from patsparse.train import OPTIMIZERS, LossFn, make_optimizer, train_epoch

METHODS = ("admm", "magnitude")


@dataclass(frozen=True)
class PruneConfig:
    """How to prune: algorithm, epochs and learning rates (one place for the defaults)."""

    method: str = "admm"
    admm_epochs: int = 12
    retrain_epochs: int = 12
    lr: float = 0.01
    retrain_lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    optimizer: str = "sgd"
    admm: ADMMSettings = field(default_factory=ADMMSettings)
    version: int = 1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown pruning method {self.method!r}; choose one of {METHODS}")
        if self.admm_epochs < 0 or self.retrain_epochs < 0:
            raise ValueError("epochs must be >= 0")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
            )
        if isinstance(self.admm, dict):
            object.__setattr__(self, "admm", ADMMSettings(**self.admm))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PruneConfig:
        return cls(**data)


@dataclass
class PruneResult:
    """The pruned model (masks squashed), its masks, per-layer decisions and a training log."""

    model: nn.Module
    masks: dict[str, torch.Tensor]
    decisions: dict[str, LayerDecision]
    history: list[dict[str, Any]]
    seconds: float


def prune(
    model: nn.Module,
    plan: PruningPlan,
    loader: DataLoader,
    *,
    config: PruneConfig | None = None,
    loss_fn: LossFn | None = None,
    progress: bool = False,
) -> PruneResult:
    """Prune ``model`` in place following ``plan``; see the module docstring."""
    cfg = config or PruneConfig()
    start = time.perf_counter()
    history: list[dict[str, Any]] = []
    pruner: BasePruner
    if cfg.method == "admm":
        admm = ADMMPruner(plan, cfg.admm)
        admm.prepare(model)
        opt = make_optimizer(
            model,
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            kind=cfg.optimizer,
        )
        for epoch in tqdm(range(cfg.admm_epochs), desc="ADMM", disable=not progress, leave=False):
            loss = train_epoch(model, loader, opt, loss_fn=loss_fn, penalty=admm.penalty)
            admm.step()
            history.append({"phase": "admm", "epoch": epoch, "loss": loss, **admm.history[-1]})
        admm.hard_prune()
        pruner = admm
    else:
        pruner = MagnitudePruner(plan)
        pruner.prepare(model)
        pruner.step()
    opt = make_optimizer(model, lr=cfg.retrain_lr, momentum=cfg.momentum, kind=cfg.optimizer)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.retrain_epochs, 1))
    for epoch in tqdm(range(cfg.retrain_epochs), desc="retrain", disable=not progress, leave=False):
        loss = train_epoch(model, loader, opt, loss_fn=loss_fn)
        sched.step()
        history.append({"phase": "retrain", "epoch": epoch, "loss": loss})
    masks = pruner.squash_mask()
    model.eval()
    return PruneResult(
        model=model,
        masks=masks,
        decisions=pruner.decisions,
        history=history,
        seconds=time.perf_counter() - start,
    )
