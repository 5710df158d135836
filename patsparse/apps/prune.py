"""Prune an application's trained model with :func:`patsparse.pruning.prune` on its own
pairs and loss, and compare ADMM with one-shot magnitude pruning on its headline metric.

The plan: the app's first scheme (``App.schemes[0]``: pattern+connectivity for SR,
block-pattern for colorization, column for style transfer) at ``compression`` on every layer
it applies to, ``fallback`` (block, same rate) on the other convs, and *thin* convs -- fewer than
``min_channels`` input or output channels: the image-in and image-out layers of an
image-to-image network -- kept dense (much of the quality). With ``thin_compression`` > 1
the image-out ones (fewer than ``min_channels`` output channels from at least that many
inputs) are column-pruned at that rate: whole (input channel, tap) columns removed from
every filter, which the thin-conv kernel (``tvm_ext.passes.ThinSparseConv2D``) skips; style
transfer's 9x9 16->3 output conv is a quarter of its time. Image-in convs stay dense: their
kernels compute kept channels whole, so pruning their taps would cost quality and save no
time.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from patsparse.apps.base import App, AppTrainConfig
from patsparse.apps.photos import PhotoSet
from patsparse.apps.train import batches, training_pairs
from patsparse.pruning.api import METHODS, PruneConfig, prune
from patsparse.schemes.options import scheme_from_options
from patsparse.schemes.plan import LayerDecision, PruningPlan, module_weight, prunable_layers

#: how thin convs are pruned when ``AppPruneConfig.thin_compression`` > 1: columns shared by
#: every filter (a thin conv has too few filters for blocks or per-filter structure to pay)
THIN_SCHEME = "column"


@dataclass(frozen=True)
class AppPruneConfig:
    """How an app's model is pruned (one home for the defaults). An ADMM "epoch" is one
    pass over ``pairs`` fresh crops (batches of the app's training batch size)."""

    method: str = "admm"
    scheme: str | None = None
    """``None``: the app's first scheme."""
    compression: float = 8.0
    fallback: str | None = "block"
    min_channels: int = 16
    thin_compression: float = 1.0
    """Image-out thin convs (see the module docstring): 1 keeps them dense, more
    column-prunes them at this rate."""
    admm_epochs: int = 4
    retrain_epochs: int = 4
    lr: float = 5e-4
    pairs: int = 1024
    seed: int = 1
    version: int = 1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown pruning method {self.method!r}; choose one of {METHODS}")
        for name in ("compression", "thin_compression"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"AppPruneConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("admm_epochs", "retrain_epochs", "min_channels"):
            if getattr(self, name) < 0:
                raise ValueError(f"AppPruneConfig.{name} must be >= 0")
        if self.pairs < 1 or not self.lr > 0:
            raise ValueError("AppPruneConfig needs pairs >= 1 and lr > 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class AppPruneResult:
    """The pruned model (masks squashed), its masks and plan, the per-layer rates, the
    training history, wall time and held-out quality."""

    model: nn.Module
    masks: dict[str, torch.Tensor]
    plan: PruningPlan
    decisions: dict[str, LayerDecision]
    layers: list[dict[str, Any]]
    history: list[dict[str, Any]]
    seconds: float
    quality: dict[str, float] = field(default_factory=dict)


def app_plan(app: App, model: nn.Module, config: AppPruneConfig) -> PruningPlan:
    """The pruning plan of ``config`` for ``model`` (see the module docstring)."""
    name = config.scheme or app.schemes[0]
    default = scheme_from_options(name, config.compression, fixed_rate="ignore")
    fallback = (
        scheme_from_options(config.fallback, config.compression, fixed_rate="ignore")
        if config.fallback
        else None
    )
    thin_scheme = (
        scheme_from_options(THIN_SCHEME, config.thin_compression, fixed_rate="ignore")
        if config.thin_compression > 1
        else None
    )
    thin = {
        n: thin_scheme if m.out_channels < config.min_channels <= m.in_channels else None
        for n, m in prunable_layers(model).items()
        if isinstance(m, nn.Conv2d) and min(m.in_channels, m.out_channels) < config.min_channels
    }
    return PruningPlan(
        default=default,
        fallback=fallback,
        layers=thin,
        skip_first_conv=False,
        skip_last_linear=False,
    )


def layer_rates(
    model: nn.Module, decisions: dict[str, LayerDecision], masks: dict[str, torch.Tensor]
) -> list[dict[str, Any]]:
    """One row per prunable layer: shape, scheme, weights kept and compression, and why."""
    rows = []
    layers = prunable_layers(model)
    for name, d in decisions.items():
        total = int(module_weight(layers[name]).numel())
        kept = int(masks[name].sum()) if name in masks else total
        rows.append(
            {
                "layer": name,
                "shape": list(d.shape),
                "scheme": d.scheme.name if d.scheme else "dense",
                "kept": kept,
                "weights": total,
                "compression": round(total / max(kept, 1), 2),
                "reason": d.reason,
            }
        )
    return rows


def prune_app(
    app: App,
    model: nn.Module,
    photos: PhotoSet,
    *,
    config: AppPruneConfig | None = None,
    train: AppTrainConfig | None = None,
    evaluate: bool = True,
    progress: bool = False,
) -> AppPruneResult:
    """Prune a copy of the trained ``model`` (``model`` is left as it is) on the app's pairs
    (``train``: the crop size and batch size, default ``app.train_defaults``) and loss."""
    cfg = config or AppPruneConfig()
    tcfg = dataclasses.replace(train or app.train_defaults, pairs=cfg.pairs, seed=cfg.seed)
    if cfg.pairs < tcfg.batch_size:
        raise ValueError(
            f"{cfg.pairs} pairs per epoch cannot fill a batch of {tcfg.batch_size}; raise pairs"
        )
    net = copy.deepcopy(model)
    plan = app_plan(app, net, cfg)
    loader = batches(training_pairs(app, photos, tcfg), batch_size=tcfg.batch_size, seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    res = prune(
        net,
        plan,
        loader,
        config=PruneConfig(
            method=cfg.method,
            admm_epochs=cfg.admm_epochs,
            retrain_epochs=cfg.retrain_epochs,
            lr=cfg.lr,
            retrain_lr=cfg.lr,
            optimizer="adam",
        ),
        loss_fn=app.loss,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    quality = app.quality(res.model, photos.held_out) if evaluate else {}
    return AppPruneResult(
        model=res.model,
        masks=res.masks,
        plan=plan,
        decisions=res.decisions,
        layers=layer_rates(res.model, res.decisions, res.masks),
        history=res.history,
        seconds=seconds,
        quality=quality,
    )


def compare_methods(
    app: App,
    model: nn.Module,
    photos: PhotoSet,
    *,
    config: AppPruneConfig | None = None,
    train: AppTrainConfig | None = None,
) -> dict[str, dict[str, Any]]:
    """ADMM and one-shot magnitude pruning of the same model with the same plan and the
    same number of training steps (magnitude retrains for ADMM's epochs too): per method its
    held-out quality, headline metric and wall time."""
    cfg = config or AppPruneConfig()
    headline = app.metrics[0].key
    budgets = {
        "admm": dataclasses.replace(cfg, method="admm"),
        "magnitude": dataclasses.replace(
            cfg,
            method="magnitude",
            admm_epochs=0,
            retrain_epochs=cfg.admm_epochs + cfg.retrain_epochs,
        ),
    }
    out: dict[str, dict[str, Any]] = {}
    for method, budget in budgets.items():
        res = prune_app(app, model, photos, config=budget, train=train)
        out[method] = {
            "quality": res.quality,
            headline: res.quality[headline],
            "seconds": round(res.seconds, 1),
        }
    return out
