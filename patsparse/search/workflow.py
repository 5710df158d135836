"""The whole NPS job behind ``patsparse search``: pre-trained model, phases 1-3, result.

``run_nps(NPSJob(...))`` loads (or briefly trains) the pre-trained model, replaces
unfriendly activations (phase 1), searches per-layer schemes and rates against the measured
latency (phase 2), compares pruning algorithms for the winner and trains it (phase 3),
measures the final model, saves it for ``patsparse compile`` and plots the Pareto front.
Kept apart from the CLI so notebooks, benchmarks and tests run the same code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from patsparse.compiler.latency import make_measurer
from patsparse.core.errors import PatsparseError, SearchConfigError
from patsparse.export import load_pruned, save_pruned
from patsparse.models import MODEL_NAMES, build_model, default_input_shape
from patsparse.search.config import SearchConfig
from patsparse.search.evaluate import split_train_val
from patsparse.search.measurement import TimingConfig
from patsparse.search.ops import replace_and_finetune
from patsparse.search.phase3 import Phase3Config, choose_algorithm
from patsparse.search.report import format_search, layer_table, plot_pareto
from patsparse.search.space import SearchSpace, SpaceConfig
from patsparse.search.study import run_search
from patsparse.tasks import CLASSIFICATION, Task
from patsparse.workflow import DataSpec, make_data


@dataclass(frozen=True)
class NPSJob:
    """Everything one ``patsparse search`` run needs (one source of the defaults).

    ``model``: a zoo name (trained ``dense_epochs`` first) or a checkpoint path.
    ``tracker``/``key``: measure on a device behind a TVM RPC tracker instead of the host.
    ``search_only``: stop after phase 2 (extra workers of a shared study need no phase 3).
    ``input_shape``: the input the latency is measured on (default: the zoo model's own,
    e.g. ``(1, 1, 32, 32)`` for sr-net; fully convolutional models such as sr-net may be
    measured on larger images than they are trained on).
    ``dense_lr``: pre-training rate of a zoo model (default: the dataset's task default).
    """

    search: SearchConfig
    model: str = "digits-cnn"
    data: DataSpec = field(default_factory=DataSpec)
    dense_epochs: int = 15
    dense_lr: float | None = None
    phase1_epochs: int = 2
    functional_ops: bool = False
    space: SpaceConfig = field(default_factory=SpaceConfig)
    phase3: Phase3Config = field(default_factory=Phase3Config)
    target: str = "host"
    tracker: str | None = None
    key: str | None = None
    logs: str | None = None
    timing: TimingConfig = field(default_factory=TimingConfig)
    tune_trials: int = 0
    val_fraction: float = 0.15
    seed: int = 0
    out: str | None = None
    plot: str | None = None
    search_only: bool = False
    input_shape: tuple[int, ...] | None = None
    version: int = 1

    def __post_init__(self) -> None:
        if self.input_shape is not None:
            shape = tuple(int(v) for v in self.input_shape)
            if len(shape) != 4 or shape[0] != 1 or min(shape) < 1:
                raise SearchConfigError(
                    f"input_shape must be a batch-1 NCHW shape such as 1,1,128,128; got "
                    f"{self.input_shape}"
                )
            object.__setattr__(self, "input_shape", shape)
        if (self.tracker is None) != (self.key is None):
            raise SearchConfigError(
                "remote measurement needs both --tracker HOST:PORT and --key KEY (the key the "
                "device's RPC server registered); give both or neither"
            )


def load_pretrained(
    spec: str,
    train: Any,
    *,
    epochs: int,
    lr: float | None,
    seed: int,
    task: Task = CLASSIFICATION,
) -> tuple[nn.Module, str]:
    """(model, architecture): a checkpoint as saved, or a zoo model trained ``epochs`` for
    ``task`` (``lr`` ``None``: the task's rate). Raises :class:`DataError` when the model
    does not fit the data (a classifier given super-resolution patches)."""
    path = Path(spec)
    if path.suffix in (".pt", ".pth") or path.exists():
        loaded = load_pruned(path)
        if loaded.arch is None:
            raise PatsparseError(f"{spec}: checkpoint of a model outside the zoo")
        task.check_model(loaded.model, train, model_name=spec)
        return loaded.model.eval(), loaded.arch
    if spec not in MODEL_NAMES:
        raise PatsparseError(
            f"{spec!r} is neither a checkpoint file nor a zoo model; zoo models: "
            f"{', '.join(MODEL_NAMES)}"
        )
    torch.manual_seed(seed)
    model = build_model(spec)
    task.check_model(model, train, model_name=spec)
    task.fit(model, train, epochs=epochs, lr=lr, desc="pre-train")
    return model.eval(), spec


def run_nps(job: NPSJob, *, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Phases 1-3; a JSON-ready summary (``status`` ``ok``, ``no_feasible``, ``infeasible``)."""
    start = time.perf_counter()
    say = progress or (lambda _m: None)
    measurer = make_measurer(
        target=job.target,
        tracker=job.tracker,
        key=job.key,
        logs=job.logs,
        timing=job.timing,
        tune_trials=job.tune_trials,
    )
    check = getattr(measurer, "check", None)
    if check is not None:
        check()  # fail before any training when the tracker is dead
    train_full, test = make_data(job.data, seed=job.seed)
    task = job.data.task
    train, val = split_train_val(train_full, val_fraction=job.val_fraction, seed=job.seed)
    model, arch = load_pretrained(
        job.model, train, epochs=job.dense_epochs, lr=job.dense_lr, seed=job.seed, task=task
    )
    dense_test = task.evaluate(model, test)
    say(f"pre-trained {arch}: test {task.metric_name} {task.format(dense_test)}")

    model, phase1 = replace_and_finetune(
        model, train, val, epochs=job.phase1_epochs, functional=job.functional_ops, task=task
    )
    say(f"phase 1: {len(phase1.replaced)} activation(s) replaced")

    example = torch.zeros(job.input_shape or default_input_shape(arch))
    space = SearchSpace.from_model(model, job.space)
    result = run_search(
        model, space, train, val, measurer, example, config=job.search, progress=say, task=task
    )
    summary: dict[str, Any] = {
        "model": arch,
        "dataset": job.data.name,
        "metric": task.metric_name,
        "unit": task.unit.strip(),
        "device": measurer.key,
        "input_shape": list(example.shape),
        "dense_test_accuracy": round(dense_test, 3),
        "phase1": phase1.to_dict(),
        "space": space.to_dict(),
        "search": result.to_dict(),
        "status": result.status,
        "message": result.message,
    }
    if job.plot:
        plotted = plot_pareto(result, job.plot)
        summary["plot"] = str(plotted) if plotted else None
    summary["_text"] = format_search(result)
    if result.best is None or job.search_only:
        if result.best is not None:
            summary["config"] = result.best.config
            summary["layers"] = layer_table(result.best.config)
        summary["seconds"] = round(time.perf_counter() - start, 2)
        return summary

    config = result.best.config
    plan = space.plan(config)
    say(f"phase 3: comparing {', '.join(job.phase3.methods)} on the chosen configuration")
    phase3 = choose_algorithm(model, plan, train, val, config=job.phase3, seed=job.seed, task=task)
    final = phase3.model.eval()
    test_acc = task.evaluate(final, test)
    measured = measurer.measure(final, example)
    summary.update(
        {
            "layers": layer_table(config),
            "config": config,
            "phase3": phase3.to_dict(),
            "final": {
                "test_accuracy": round(test_acc, 3),
                "latency_ms": measured.median_ms,
                "latency_min_ms": measured.min_ms,
                "meets_constraint": measured.median_ms <= result.constraint_ms,
                "search_latency_ms": result.best.latency_ms,
                "rewritten_convs": measured.rewritten_convs,
            },
        }
    )
    if job.out:
        schemes = {n: d.scheme for n, d in phase3.result.decisions.items()}
        path = save_pruned(
            job.out,
            final,
            phase3.result.masks,
            schemes=schemes,
            plan=plan,
            arch=arch,
            metrics={
                "test_accuracy": round(test_acc, 3),
                "latency_ms": measured.median_ms,
                "constraint_ms": result.constraint_ms,
                "method": phase3.method,
            },
        )
        summary["checkpoint"] = str(path)
        if phase1.replaced:
            summary["checkpoint_note"] = (
                "phase 1 replaced activations; the checkpoint stores the zoo architecture's "
                "weights, which load into the original activations: rebuild with "
                "patsparse.search.replace_ops(model) after loading to deploy the replaced ones"
            )
    summary["seconds"] = round(time.perf_counter() - start, 2)
    return summary
