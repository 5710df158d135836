"""What a model is trained for: loss, quality metric and optimiser defaults, per dataset.

Classification (digits, CIFAR-10, image folders) is trained with cross-entropy and SGD and
scored by top-1 accuracy (%); super-resolution (scikit-image patches) with MSE and Adam and
scored by PSNR (dB). The pruners, the NPS search and the CLI take a :class:`Task` so the same
code prunes and searches either kind of model; higher metric values are better for both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from patsparse.core.errors import DataError
from patsparse.pruning.api import PruneConfig
from patsparse.train import OPTIMIZERS, LossFn, accuracy, fit, psnr

Metric = Callable[[nn.Module, DataLoader], float]

_MODEL_HINT = (
    "use a classifier (digits-cnn, resnet18-cifar, ...) for digits/cifar10/imagefolder and "
    "sr-net for --data sr"
)


@dataclass(frozen=True)
class Task:
    """Loss, metric (higher is better) and training defaults of one kind of model.

    ``lr`` trains a model from scratch; ``finetune_lr`` retrains a pruned one (fast
    evaluation, ADMM, retraining, phase-1 fine-tuning).
    """

    name: str
    metric_name: str
    unit: str
    loss_fn: LossFn
    metric: Metric
    optimizer: str = "sgd"
    lr: float = 0.05
    finetune_lr: float = 0.01
    weight_decay: float = 5e-4

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"task {self.name!r}: unknown optimizer {self.optimizer!r}; choose one of "
                f"{', '.join(OPTIMIZERS)}"
            )

    def format(self, value: float) -> str:
        """``99.44%`` or ``38.21 dB``."""
        return f"{value:.2f}{self.unit}"

    def prune_config(self, **overrides: Any) -> PruneConfig:
        """A :class:`PruneConfig` with this task's optimiser and fine-tuning rate."""
        kw: dict[str, Any] = {
            "lr": self.finetune_lr,
            "retrain_lr": self.finetune_lr,
            "optimizer": self.optimizer,
        }
        kw.update(overrides)
        return PruneConfig(**kw)

    def fit(
        self,
        model: nn.Module,
        loader: DataLoader,
        *,
        epochs: int,
        lr: float | None = None,
        progress: bool = False,
        desc: str = "train",
    ) -> list[float]:
        """:func:`patsparse.train.fit` with this task's loss, optimiser and weight decay
        (``lr`` ``None``: the from-scratch rate)."""
        return fit(
            model,
            loader,
            epochs=epochs,
            lr=self.lr if lr is None else lr,
            weight_decay=self.weight_decay,
            loss_fn=self.loss_fn,
            optimizer=self.optimizer,
            progress=progress,
            desc=desc,
        )

    def evaluate(self, model: nn.Module, loader: DataLoader) -> float:
        """The metric of ``model`` on ``loader`` (model left in eval mode)."""
        return self.metric(model, loader)

    @torch.no_grad()
    def check_model(self, model: nn.Module, loader: DataLoader, *, model_name: str) -> None:
        """Raise :class:`DataError` when ``model``'s output cannot be scored against the
        loader's targets (e.g. a classifier given super-resolution patches)."""
        x, y = next(iter(loader))
        was_training = model.training
        model.eval()
        try:
            out = model(x[:2])
        except RuntimeError as exc:
            raise DataError(
                f"model {model_name!r} cannot run on this dataset's inputs "
                f"{tuple(x.shape[1:])}: {exc}; {_MODEL_HINT}"
            ) from None
        finally:
            model.train(was_training)
        want_ok = (
            out.ndim == 2 and y.ndim == 1
            if self.name == "classification"
            else out.shape[1:] == y.shape[1:]
        )
        if not want_ok:
            raise DataError(
                f"model {model_name!r} outputs {tuple(out.shape[1:])} per sample but this "
                f"{self.name} dataset's targets are {tuple(y.shape[1:]) or 'class labels'}; "
                f"{_MODEL_HINT}"
            )


CLASSIFICATION = Task(
    name="classification",
    metric_name="accuracy",
    unit="%",
    loss_fn=nn.functional.cross_entropy,
    metric=accuracy,
)

SUPER_RESOLUTION = Task(
    name="super-resolution",
    metric_name="PSNR",
    unit=" dB",
    loss_fn=nn.functional.mse_loss,
    metric=psnr,
    optimizer="adam",
    lr=1e-3,
    finetune_lr=5e-4,
    weight_decay=0.0,
)

TASKS: dict[str, Task] = {t.name: t for t in (CLASSIFICATION, SUPER_RESOLUTION)}
