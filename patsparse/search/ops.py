"""NPS phase 1: replace mobile-unfriendly activations, then a short fine-tune.

Sigmoid, SiLU/Swish, GELU and Mish need ``exp``/``erf``; their piecewise-linear stand-ins
(hard-sigmoid, hard-swish) do not. :func:`replace_ops` swaps activation *modules* by type
through a configurable map; with ``functional=True`` it also rewrites functional calls
(``torch.sigmoid``, ``F.silu``, ``F.gelu``, ``x.sigmoid()``, ...) through ``torch.fx``, so a
hand-written swish ``x * torch.sigmoid(x)`` becomes ``x * hardsigmoid(x)`` (= hard-swish).
:func:`replace_and_finetune` runs the replacement, fine-tunes and reports the accuracy change.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from patsparse.tasks import CLASSIFICATION, Task

#: module type -> factory of its replacement (the default phase-1 map)
DEFAULT_MODULE_MAP: Mapping[type[nn.Module], Callable[[], nn.Module]] = {
    nn.Sigmoid: nn.Hardsigmoid,
    nn.SiLU: nn.Hardswish,
    nn.GELU: nn.Hardswish,
    nn.Mish: nn.Hardswish,
}

#: functional op -> its replacement (used with ``functional=True``)
DEFAULT_FUNCTION_MAP: Mapping[Any, Callable[..., Any]] = {
    torch.sigmoid: F.hardsigmoid,
    F.sigmoid: F.hardsigmoid,
    F.silu: F.hardswish,
    F.gelu: F.hardswish,
    F.mish: F.hardswish,
}
_METHOD_MAP: Mapping[str, Callable[..., Any]] = {"sigmoid": F.hardsigmoid}


@dataclass
class ReplacementReport:
    """What phase 1 changed: ``(where, old op, new op)`` per replacement, and the task's
    metric (``metric``: accuracy or PSNR) before and after."""

    replaced: list[tuple[str, str, str]] = field(default_factory=list)
    metric: str = "accuracy"
    accuracy_before: float | None = None
    accuracy_after_replace: float | None = None
    accuracy_after_finetune: float | None = None
    finetune_epochs: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "replaced": [list(r) for r in self.replaced],
            "metric": self.metric,
            "accuracy_before": self.accuracy_before,
            "accuracy_after_replace": self.accuracy_after_replace,
            "accuracy_after_finetune": self.accuracy_after_finetune,
            "finetune_epochs": self.finetune_epochs,
        }


def replace_ops(
    model: nn.Module,
    *,
    module_map: Mapping[type[nn.Module], Callable[[], nn.Module]] | None = None,
    functional: bool = False,
    function_map: Mapping[Any, Callable[..., Any]] | None = None,
) -> tuple[nn.Module, list[tuple[str, str, str]]]:
    """A copy of ``model`` with unfriendly activations replaced, and the replacements made.

    Module replacement keeps the model's class; ``functional=True`` returns an
    ``fx.GraphModule`` when a functional call was replaced (the model must then be
    ``torch.fx``-traceable).
    """
    mapping = DEFAULT_MODULE_MAP if module_map is None else module_map
    out = copy.deepcopy(model)
    replaced: list[tuple[str, str, str]] = []
    for name, module in list(out.named_modules()):
        for child_name, child in list(module.named_children()):
            factory = mapping.get(type(child))
            if factory is None:
                continue
            new = factory()
            setattr(module, child_name, new)
            where = f"{name}.{child_name}" if name else child_name
            replaced.append((where, type(child).__name__, type(new).__name__))
    if functional:
        out, calls = _replace_functional(out, function_map or DEFAULT_FUNCTION_MAP)
        replaced.extend(calls)
    return out, replaced


def _replace_functional(
    model: nn.Module, function_map: Mapping[Any, Callable[..., Any]]
) -> tuple[nn.Module, list[tuple[str, str, str]]]:
    gm = torch.fx.symbolic_trace(model)
    replaced: list[tuple[str, str, str]] = []
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in function_map:
            new = function_map[node.target]
            replaced.append((node.name, _fn_name(node.target), _fn_name(new)))
            node.target = new
            if new in (F.hardswish, F.hardsigmoid):  # they take no extra arguments
                node.args, node.kwargs = node.args[:1], {}
        elif node.op == "call_method" and node.target in _METHOD_MAP:
            new = _METHOD_MAP[str(node.target)]
            replaced.append((node.name, f"Tensor.{node.target}", _fn_name(new)))
            node.op, node.target = "call_function", new
            node.args, node.kwargs = node.args[:1], {}
    if not replaced:
        return model, []
    gm.graph.lint()
    gm.recompile()
    return gm, replaced


def _fn_name(fn: Any) -> str:
    module = getattr(fn, "__module__", "") or ""
    return f"{module}.{getattr(fn, '__name__', repr(fn))}".lstrip(".")


def replace_and_finetune(
    model: nn.Module,
    train: DataLoader,
    test: DataLoader,
    *,
    epochs: int = 2,
    lr: float | None = None,
    module_map: Mapping[type[nn.Module], Callable[[], nn.Module]] | None = None,
    functional: bool = False,
    task: Task = CLASSIFICATION,
) -> tuple[nn.Module, ReplacementReport]:
    """Phase 1: replace, fine-tune ``epochs`` (skipped when nothing changed), report.

    The report's ``accuracy_*`` fields hold ``task``'s metric (PSNR for super-resolution);
    ``lr`` defaults to the task's fine-tuning rate.
    """
    accuracy = task.evaluate
    report = ReplacementReport(accuracy_before=accuracy(model, test), metric=task.metric_name)
    new, report.replaced = replace_ops(model, module_map=module_map, functional=functional)
    if not report.replaced:
        report.accuracy_after_replace = report.accuracy_after_finetune = report.accuracy_before
        return new, report
    report.accuracy_after_replace = accuracy(new, test)
    if epochs > 0:
        task.fit(
            new,
            train,
            epochs=epochs,
            lr=task.finetune_lr if lr is None else lr,
            desc="phase 1 fine-tune",
        )
        report.finetune_epochs = epochs
    report.accuracy_after_finetune = accuracy(new, test)
    return new.eval(), report
