"""Tune a (pruned) PyTorch model's tasks with MetaSchedule into its log directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from patsparse.compiler.compile import import_torch
from patsparse.compiler.remote import remote_measure
from patsparse.compiler.targets import resolve_target
from patsparse.models import default_input_shape
from tvm_ext.pipeline import lower_for_tuning
from tvm_ext.tuning.logs import DEFAULT_LOG_ROOT, log_dir
from tvm_ext.tuning.tune import tune_module


def logs_for(arch: str, target: str, root: str | Path = DEFAULT_LOG_ROOT) -> Path:
    """``tuning_logs/<model family>/<target key>``: where ``tune`` writes and ``compile`` reads."""
    return log_dir(arch, resolve_target(target), root)


def tune_model(
    model: nn.Module,
    arch: str,
    *,
    target: str = "host",
    trials_per_task: int,
    logs_root: str | Path = DEFAULT_LOG_ROOT,
    tracker: str | None = None,
    key: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Tune every task of the (pruned) model into ``tuning_logs/<arch>/<target key>``.

    ``tracker`` (``HOST:PORT``) and ``key``: measure on that device over RPC (required for
    ``arm64`` / ``adreno``: their code cannot run here)."""
    tgt = resolve_target(target)
    builder, runner = remote_measure(tgt, tracker, key)
    x = torch.randn(default_input_shape(arch), generator=torch.Generator().manual_seed(0))
    lowered = lower_for_tuning(import_torch(model, x), tgt)
    work = logs_for(arch, target, logs_root)
    report = tune_module(
        lowered,
        tgt,
        work,
        trials_per_task=trials_per_task,
        builder=builder,
        runner=runner,
        progress=progress,
    )
    out = {"model": arch, "target": target, **report.to_dict()}
    if tracker:
        out["device"] = {"tracker": tracker, "key": key}
    return out
