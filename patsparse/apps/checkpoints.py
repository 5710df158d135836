"""Application checkpoints: the shipped ones inside the package and the ones users train.

A checkpoint is :mod:`patsparse.export.checkpoint`'s format (weights, masks, scheme and
plan, metrics as JSON; loads with ``weights_only=True``). The app's name, the checkpoint's
kind (``dense`` or ``pruned``), its quality and how it was made go in the metrics. Shipped
checkpoints live at ``patsparse/apps/weights/{app}-{kind}.pt`` (package data).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from patsparse.apps.base import App
from patsparse.core.errors import CheckpointError
from patsparse.export.checkpoint import load_pruned, save_pruned
from patsparse.schemes.base import Scheme
from patsparse.schemes.plan import PruningPlan

Kind = Literal["dense", "pruned"]
KINDS: tuple[Kind, ...] = ("dense", "pruned")


@dataclass
class AppCheckpoint:
    """A loaded application model: the model (eval mode), its masks (empty when dense) and
    the metadata saved with it."""

    app: str
    kind: Kind
    model: nn.Module
    masks: dict[str, torch.Tensor]
    metrics: dict[str, Any] = field(default_factory=dict)


def shipped_path(app: App, kind: Kind) -> Path:
    """Where the package keeps ``app``'s shipped ``kind`` checkpoint (it may not exist)."""
    _check_kind(kind)
    return Path(str(resources.files("patsparse.apps") / "weights" / f"{app.name}-{kind}.pt"))


def save_app_checkpoint(
    path: str | os.PathLike[str],
    app: App,
    kind: Kind,
    model: nn.Module,
    *,
    masks: dict[str, torch.Tensor] | None = None,
    schemes: dict[str, Scheme | None] | None = None,
    plan: PruningPlan | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` as ``app``'s ``kind`` checkpoint at ``path``."""
    _check_kind(kind)
    meta = {**(metrics or {}), "app": app.name, "kind": kind}
    return save_pruned(path, model, masks or {}, schemes=schemes, plan=plan, metrics=meta)


def load_app_checkpoint(
    app: App, kind: Kind = "pruned", path: str | os.PathLike[str] | None = None
) -> AppCheckpoint:
    """``app``'s checkpoint at ``path`` (default: the shipped ``kind`` one), checked to be a
    checkpoint of this app and kind."""
    _check_kind(kind)
    p = Path(path) if path is not None else shipped_path(app, kind)
    if path is None and not p.is_file():
        then = f", then 'patsparse app prune {app.name} --dense runs/{app.name}-dense.pt'"
        raise CheckpointError(
            f"patsparse ships no {kind} checkpoint of {app.name!r} ({p} is missing)",
            fix=f"train one: 'patsparse app train {app.name}'"
            + (then if kind == "pruned" else "")
            + f", and pass runs/{app.name}-{kind}.pt as the checkpoint",
        )
    loaded = load_pruned(p, model=app.build())
    saved_app = loaded.metrics.get("app")
    if saved_app != app.name:
        raise CheckpointError(
            f"{str(p)!r} is a checkpoint of {saved_app or 'no app'!r}, not of {app.name!r}",
            fix=f"pass a checkpoint written by 'patsparse app train/prune {app.name}'",
        )
    saved_kind = loaded.metrics.get("kind")
    if saved_kind != kind:
        raise CheckpointError(
            f"{str(p)!r} holds the {saved_kind} {app.name} model, not the {kind} one",
            fix=f"pass the {kind} checkpoint",
        )
    return AppCheckpoint(app.name, kind, loaded.model.eval(), loaded.masks, loaded.metrics)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"checkpoint kind must be one of {KINDS}, got {kind!r}")
