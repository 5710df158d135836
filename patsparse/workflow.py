"""End-to-end jobs behind the CLI: train dense, prune, report, save.

Kept apart from :mod:`patsparse.cli` so notebooks and tests call the same code the
command line runs.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from patsparse.core.errors import DataError, UnknownNameError
from patsparse.data import (
    ImageFolderDataset,
    load_cifar10,
    load_digits_split,
    load_sr_patches,
    make_loaders,
)
from patsparse.export.checkpoint import save_pruned
from patsparse.models import build_model, default_input_shape
from patsparse.pruning.api import PruneConfig, prune
from patsparse.report import sparsity_report
from patsparse.schemes.base import Scheme
from patsparse.schemes.plan import PruningPlan
from patsparse.tasks import CLASSIFICATION, SUPER_RESOLUTION, Task

DATASETS = ("digits", "sr", "cifar10", "imagefolder")
BUNDLED = ("digits", "sr")


@dataclass(frozen=True)
class DataSpec:
    """Which dataset to train and evaluate on (``root`` for on-disk datasets).

    Bundled: ``digits`` (scikit-learn, classification) and ``sr`` (x2 super-resolution luma
    patches, 32x32 high-resolution, from scikit-image photos; test photos held out).
    """

    name: str = "digits"
    root: str | None = None
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise UnknownNameError(
                f"unknown dataset {self.name!r}; choose one of {', '.join(DATASETS)}"
            )
        if self.name not in BUNDLED and not self.root:
            raise DataError(
                f"dataset {self.name!r} is read from disk: pass its folder with --data-root"
            )

    @property
    def task(self) -> Task:
        """The loss/metric the dataset is scored with."""
        return SUPER_RESOLUTION if self.name == "sr" else CLASSIFICATION


def make_data(spec: DataSpec, *, seed: int = 0) -> tuple[DataLoader, DataLoader]:
    if spec.name == "digits":
        train, test = load_digits_split(seed=seed)
    elif spec.name == "sr":
        train, test = load_sr_patches(seed=seed)
    elif spec.name == "cifar10":
        assert spec.root is not None
        train, test = load_cifar10(spec.root, train=True), load_cifar10(spec.root, train=False)
    else:
        assert spec.root is not None
        root = Path(spec.root)
        train = ImageFolderDataset(root / "train")  # type: ignore[assignment]
        test = ImageFolderDataset(root / "val")  # type: ignore[assignment]
    return make_loaders(train, test, batch_size=spec.batch_size, seed=seed)


@dataclass(frozen=True)
class PruneJob:
    """A full prune run: model, data, plan and budgets."""

    plan: PruningPlan
    model: str = "digits-cnn"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    data: DataSpec = field(default_factory=DataSpec)
    dense_epochs: int = 15
    dense_lr: float | None = None  # None: the dataset's task default
    config: PruneConfig = field(default_factory=PruneConfig)
    seed: int = 0
    out: str | None = None


def run_prune(job: PruneJob, *, progress: bool = True) -> dict[str, Any]:
    """Train the dense model, prune it, and return a JSON-ready summary."""
    start = time.perf_counter()
    torch.manual_seed(job.seed)
    train, test = make_data(job.data, seed=job.seed)
    task = job.data.task
    dense = build_model(job.model, **job.model_kwargs)
    task.check_model(dense, train, model_name=job.model)
    task.fit(
        dense, train, epochs=job.dense_epochs, lr=job.dense_lr, progress=progress, desc="dense"
    )
    dense_acc = task.evaluate(dense, test)
    model = copy.deepcopy(dense)
    torch.manual_seed(job.seed + 1)
    result = prune(
        model, job.plan, train, config=job.config, loss_fn=task.loss_fn, progress=progress
    )
    pruned_acc = task.evaluate(model, test)
    example = torch.zeros(default_input_shape(job.model))
    report = sparsity_report(model, example, decisions=result.decisions)
    schemes: dict[str, Scheme | None] = {n: d.scheme for n, d in result.decisions.items()}
    summary: dict[str, Any] = {
        "model": job.model,
        "dataset": job.data.name,
        "metric": task.metric_name,
        "method": job.config.method,
        "plan": job.plan.to_dict(),
        "dense_accuracy": round(dense_acc, 3),
        "pruned_accuracy": round(pruned_acc, 3),
        "accuracy_drop": round(dense_acc - pruned_acc, 3),
        "compression": round(report.compression, 4),
        "pruned_layers_compression": round(report.pruned_compression, 4),
        "flop_reduction": round(report.flop_reduction, 4),
        "pattern_violations": report.pattern_violations,
        "admm_residuals": [round(h["residual"], 5) for h in result.history if "residual" in h],
        "report": report.to_dict(),
        "seconds": round(time.perf_counter() - start, 2),
    }
    if job.out:
        path = save_pruned(
            job.out,
            model,
            result.masks,
            schemes=schemes,
            plan=job.plan,
            arch=job.model,
            arch_kwargs=job.model_kwargs,
            metrics={k: summary[k] for k in ("dense_accuracy", "pruned_accuracy", "compression")},
        )
        summary["checkpoint"] = str(path)
    summary["_report_text"] = report.format()
    return summary


def default_out_dir() -> Path:
    return Path(os.environ.get("PATSPARSE_RUNS", "runs"))
