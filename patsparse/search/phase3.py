"""NPS phase 3: for the chosen configuration, compare pruning algorithms and keep the best.

Every method in :data:`patsparse.pruning.api.METHODS` (magnitude = one-shot projection +
retraining, ADMM = penalised training + hard pruning + retraining) prunes a copy of the
pre-trained model with the chosen plan; the most accurate on the validation split wins and
is the final model (its masks squashed, ready for :func:`patsparse.export.save_pruned`).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from patsparse.core.errors import SearchConfigError
from patsparse.pruning.api import METHODS, PruneResult, prune
from patsparse.schemes.plan import PruningPlan
from patsparse.tasks import CLASSIFICATION, Task


@dataclass(frozen=True)
class Phase3Config:
    """Which pruning algorithms to compare and their training budgets."""

    methods: tuple[str, ...] = ("magnitude", "admm")
    admm_epochs: int = 8
    retrain_epochs: int = 8
    lr: float | None = None  # None: the task's fine-tuning rate
    version: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(self.methods))
        unknown = [m for m in self.methods if m not in METHODS]
        if not self.methods or unknown:
            raise SearchConfigError(
                f"phase-3 methods {list(self.methods)} must be a non-empty subset of {METHODS}"
            )
        if self.admm_epochs < 0 or self.retrain_epochs < 0:
            raise SearchConfigError("phase-3 epochs must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["methods"] = list(self.methods)
        return d


@dataclass
class Phase3Result:
    """The winning method, every method's validation accuracy, and the final pruned model."""

    method: str
    val_accuracy: dict[str, float]
    result: PruneResult

    @property
    def model(self) -> nn.Module:
        return self.result.model

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "val_accuracy": {k: round(v, 3) for k, v in self.val_accuracy.items()},
            "seconds": round(self.result.seconds, 2),
        }


def choose_algorithm(
    pretrained: nn.Module,
    plan: PruningPlan,
    train: DataLoader,
    val: DataLoader,
    *,
    config: Phase3Config | None = None,
    seed: int = 0,
    task: Task = CLASSIFICATION,
) -> Phase3Result:
    """Prune with each method, keep the best on ``task``'s validation metric (ties: the
    first listed, cheaper)."""
    cfg = config or Phase3Config()
    lr = cfg.lr if cfg.lr is not None else task.finetune_lr
    results: dict[str, PruneResult] = {}
    accs: dict[str, float] = {}
    for method in cfg.methods:
        model = copy.deepcopy(pretrained)
        torch.manual_seed(seed)
        results[method] = prune(
            model,
            plan,
            train,
            config=task.prune_config(
                method=method,
                admm_epochs=cfg.admm_epochs,
                retrain_epochs=cfg.retrain_epochs,
                lr=lr,
                retrain_lr=lr,
            ),
            loss_fn=task.loss_fn,
        )
        accs[method] = task.evaluate(results[method].model, val)
    best = max(cfg.methods, key=lambda m: (accs[m], -cfg.methods.index(m)))
    return Phase3Result(best, accs, results[best])
