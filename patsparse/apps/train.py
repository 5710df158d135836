"""Train an application's model from photos: random crops of the training photos, the
app's pairs and loss, Adam with a cosine learning-rate schedule over a fixed number of steps.

Deterministic for a given :class:`~patsparse.apps.base.AppTrainConfig` (its ``seed`` draws
the crops, the initial weights and the batch order) on one machine and thread count.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from patsparse.apps.base import App, AppTrainConfig
from patsparse.apps.photos import PhotoSet, random_crops


@dataclass(frozen=True)
class TrainLog:
    """What a training run did: the config, the mean loss of every ``log_every`` steps, the
    wall time and (when evaluated) held-out quality of the model and of the app's baseline."""

    app: str
    config: AppTrainConfig
    losses: tuple[tuple[int, float], ...]
    seconds: float
    quality: dict[str, float] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["losses"] = [list(x) for x in self.losses]
        return d


def training_pairs(app: App, photos: PhotoSet, config: AppTrainConfig) -> TensorDataset:
    """``config.pairs`` pairs cut from random ``config.patch``-pixel crops of the training
    photos (seeded by ``config.seed``)."""
    crops = random_crops(photos.train, size=config.patch, count=config.pairs, seed=config.seed)
    return app.pairs(crops)


def batches(pairs: TensorDataset, *, batch_size: int, seed: int) -> DataLoader:
    """A shuffling loader over ``pairs`` whose order is fixed by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return DataLoader(pairs, batch_size=batch_size, shuffle=True, drop_last=True, generator=g)


def train_app(
    app: App,
    photos: PhotoSet,
    *,
    config: AppTrainConfig | None = None,
    model: nn.Module | None = None,
    evaluate: bool = True,
    log_every: int = 50,
    progress: bool = False,
) -> tuple[nn.Module, TrainLog]:
    """Train ``model`` (default: ``app.build()`` initialised from the seed) for
    ``config.steps`` steps (default ``app.train_defaults``); the model and its :class:`TrainLog`.

    With ``evaluate`` the log holds the quality on ``photos.held_out`` and the baseline's.
    """
    cfg = config or app.train_defaults
    if log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")
    torch.manual_seed(cfg.seed)
    net = model if model is not None else app.build()
    pairs = training_pairs(app, photos, cfg)
    if len(pairs) < cfg.batch_size:
        raise ValueError(
            f"{len(pairs)} training pairs cannot fill a batch of {cfg.batch_size}; raise pairs"
        )
    loader = batches(pairs, batch_size=cfg.batch_size, seed=cfg.seed)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
    start = time.perf_counter()
    losses: list[tuple[int, float]] = []
    window: list[float] = []
    step = 0
    net.train()
    with tqdm(total=cfg.steps, desc=f"train {app.name}", disable=not progress, leave=False) as bar:
        while step < cfg.steps:
            for x, y in loader:
                opt.zero_grad(set_to_none=True)
                loss = app.loss(net(x), y)
                loss.backward()
                opt.step()
                sched.step()
                window.append(float(loss.detach()))
                step += 1
                bar.update()
                if step % log_every == 0 or step == cfg.steps:
                    losses.append((step, sum(window) / len(window)))
                    window.clear()
                if step == cfg.steps:
                    break
    seconds = time.perf_counter() - start
    net.eval()
    quality = app.quality(net, photos.held_out) if evaluate else {}
    baseline = app.baseline(photos.held_out) if evaluate else {}
    return net, TrainLog(app.name, cfg, tuple(losses), seconds, quality, baseline)
