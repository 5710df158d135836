"""What every real-time application is: a model, its training pairs, loss, quality metrics
and trivial baseline, and the conversions between a photo and the model's tensors.

An application is an :class:`App` subclass registered in :mod:`patsparse.apps`. The
generic machinery (training, pruning, compiling, running on a picture, the latency table)
only talks to this interface, so the three applications share one code path:

- ``pairs(photos)`` cuts training or evaluation pairs ``(input, target)`` out of photos;
  the pruners and :func:`patsparse.train.fit` consume them as a ``TensorDataset`` with
  ``loss(output, target)`` as the loss (a style-transfer target is the content itself and
  its loss closes over the style's Gram matrices).
- ``quality(model, photos)`` scores a model on whole held-out photos, ``baseline(photos)``
  scores the trivial baseline (bicubic upscaling, the mean chroma, ...) the same way: the
  same keys, higher-is-better or lower-is-better as ``better`` says.
- ``to_input(photo)`` / ``to_picture(output, photo)`` turn a photo into the model's input
  batch and the model's output back into an RGB picture (a colorization keeps the photo's
  lightness, a super-resolution the bicubic chroma).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from patsparse.core.errors import DataError


@dataclass(frozen=True)
class AppTrainConfig:
    """How an application's shipped checkpoint is trained (one home for the defaults; each
    app overrides them with its own ``train_defaults``)."""

    steps: int = 2000
    batch_size: int = 16
    patch: int = 64
    lr: float = 2e-3
    seed: int = 0
    pairs: int = 2048

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "patch", "pairs"):
            if getattr(self, name) < 1:
                raise ValueError(f"AppTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"AppTrainConfig.lr must be > 0, got {self.lr}")


@dataclass(frozen=True)
class Metric:
    """One quality figure: its key, unit and direction."""

    key: str
    unit: str
    better: Literal["higher", "lower"]


class App(abc.ABC):
    """One application (see the module docstring for the contract)."""

    name: ClassVar[str]
    """CLI name: ``sr``, ``color``, ``style``."""
    title: ClassVar[str]
    metrics: ClassVar[tuple[Metric, ...]]
    """The figures ``quality`` and ``baseline`` return; the first is the headline."""
    schemes: ClassVar[tuple[str, ...]]
    """Pruning schemes the paper uses for this app first, then ``block-pattern``."""
    train_defaults: ClassVar[AppTrainConfig]
    color_only: ClassVar[bool] = False
    """Train and evaluate on colour photos only (colorization, style transfer)."""

    @abc.abstractmethod
    def build(self) -> nn.Module:
        """A fresh, untrained model at the shipped size."""

    @abc.abstractmethod
    def pairs(self, crops: np.ndarray) -> TensorDataset:
        """Training/evaluation pairs ``(input, target)`` from float RGB crops ``(N, S, S, 3)``."""

    @abc.abstractmethod
    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch (the pruners retrain with it too)."""

    @abc.abstractmethod
    def to_input(self, photo: np.ndarray) -> torch.Tensor:
        """A float RGB photo ``(H, W, 3)`` as the model's input ``(1, C, h, w)``."""

    @abc.abstractmethod
    def to_picture(self, output: torch.Tensor, photo: np.ndarray) -> np.ndarray:
        """The model's output for ``photo`` as a float RGB picture ``(H', W', 3)`` in [0, 1]."""

    @abc.abstractmethod
    def baseline_picture(self, photo: np.ndarray) -> np.ndarray:
        """The trivial baseline's picture for ``photo`` (what the model must beat)."""

    @abc.abstractmethod
    def score(self, picture: np.ndarray, photo: np.ndarray) -> dict[str, float]:
        """The metrics of one output picture against its source photo."""

    # -- shared behaviour --------------------------------------------------------------

    def example_input(self, size: int) -> torch.Tensor:
        """An input batch for a ``size x size`` photo (what latency is measured on)."""
        return self.to_input(np.zeros((size, size, 3), dtype=np.float32))

    @torch.no_grad()
    def picture(self, model: nn.Module, photo: np.ndarray) -> np.ndarray:
        """``model`` (PyTorch) applied to one photo, as a picture."""
        model.eval()
        return self.to_picture(model(self.to_input(photo)), photo)

    def source(self, photo: np.ndarray) -> np.ndarray:
        """What the app is given when it is scored against ``photo``: the photo itself, or
        (super resolution) the photo degraded to the app's input."""
        return photo

    def quality(self, model: nn.Module, photos: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Each metric averaged over ``photos`` (whole photos, the held-out set)."""
        return _mean([self.score(self.picture(model, self.source(p)), p) for p in photos.values()])

    def baseline(self, photos: Mapping[str, np.ndarray]) -> dict[str, float]:
        """The trivial baseline's metrics over ``photos``, the keys of :meth:`quality`."""
        return _mean(
            [self.score(self.baseline_picture(self.source(p)), p) for p in photos.values()]
        )


def checked_crops(crops: np.ndarray, *, multiple: int, app: str) -> np.ndarray:
    """``crops`` as float32 RGB ``(N, S, S', 3)`` whose sides are multiples of ``multiple``
    (what ``app``'s model needs); :class:`DataError` naming the fix otherwise."""
    a = np.asarray(crops, dtype=np.float32)
    if a.ndim != 4 or a.shape[3] != 3:
        raise DataError(
            f"{app} crops must be float RGB (N, S, S, 3), got shape {a.shape}",
            fix="cut them with patsparse.apps.photos.random_crops",
        )
    if a.shape[1] % multiple or a.shape[2] % multiple:
        raise DataError(
            f"{app} crops need sides that are multiples of {multiple}, got {a.shape[1:3]}",
            fix=f"use a patch size divisible by {multiple}",
        )
    return a


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    if not rows:
        raise DataError("no photos to score", fix="pass at least one photo")
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
