"""What the search needs from a latency measurer, and the candidates it hands one.

The NPS reward uses the latency of the whole compiled model (fusion and tuned schedules
included), not a per-layer table. Code generation needs only the sparsity structure, so a
candidate is :func:`structure_model`: the model with seeded random weights, one-shot
magnitude-pruned by the candidate's plan. A :class:`LatencyMeasurer` compiles and times it;
the TVM ones (``LocalLatency`` on this machine, ``RPCLatency`` behind a tracker) live in
:mod:`patsparse.compiler.latency`, and anything with the same ``key``/``measure`` surface
plugs in. :class:`MemoLatency` and :class:`LatencyCache` keep one measurement per
(device, structure). Nothing here imports TVM.
"""

from __future__ import annotations

import copy
import hashlib
import statistics
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from patsparse.core.errors import LatencyMeasurementError, SearchConfigError
from patsparse.pruning.pruners import MagnitudePruner
from patsparse.schemes.plan import PruningPlan


@dataclass(frozen=True)
class TimingConfig:
    """How ``time_evaluator`` times a compiled model (one source of the defaults).

    ``threads``: ``TVM_NUM_THREADS`` for local runs (set before the runtime's pool starts;
    ``None`` keeps the environment's value, or 1 when unset, for stable numbers on shared
    machines).
    """

    number: int = 10
    repeat: int = 7
    min_repeat_ms: int = 25
    threads: int | None = None
    version: int = 1

    def __post_init__(self) -> None:
        if self.number < 1 or self.repeat < 1 or self.min_repeat_ms < 0:
            raise SearchConfigError(
                f"timing needs number >= 1, repeat >= 1, min_repeat_ms >= 0; got {self}"
            )


@dataclass(frozen=True)
class LatencyMeasurement:
    """One timed candidate: median/min/max milliseconds over ``repeat`` runs."""

    median_ms: float
    min_ms: float
    max_ms: float
    repeat: int
    compile_seconds: float
    rewritten_convs: int
    device: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_seconds(
        cls,
        results_s: Sequence[float],
        *,
        compile_seconds: float,
        rewritten_convs: int,
        device: str,
    ) -> LatencyMeasurement:
        """Summarise the per-repeat seconds of a ``time_evaluator`` run."""
        ms = [r * 1e3 for r in results_s]
        if not ms or min(ms) <= 0:
            raise LatencyMeasurementError(
                f"time_evaluator returned no positive timings ({ms}); raise TimingConfig.number"
            )
        return cls(
            median_ms=float(statistics.median(ms)),
            min_ms=float(min(ms)),
            max_ms=float(max(ms)),
            repeat=len(ms),
            compile_seconds=compile_seconds,
            rewritten_convs=rewritten_convs,
            device=device,
        )


@runtime_checkable
class LatencyMeasurer(Protocol):
    """What the search needs from a device: a cache key and a measurement."""

    @property
    def key(self) -> str:
        """Identifies the device and compilation settings (latency cache key prefix)."""
        ...

    def measure(self, model: nn.Module, example: torch.Tensor) -> LatencyMeasurement:
        """Compile ``model`` for ``example``'s shape and time it."""
        ...


@runtime_checkable
class SplitMeasurer(Protocol):
    """A measurer whose code generation and timing are separate steps: the search compiles
    a candidate in the measurer's worker pool while its accuracy evaluation trains, then
    times it with the cores free."""

    @property
    def key(self) -> str: ...

    def compile_pool(self) -> AbstractContextManager[Any]:
        """The worker pool to pass to :meth:`submit_compile` (a context manager)."""
        ...

    def submit_compile(self, pool: Any, model: nn.Module, example: torch.Tensor) -> Any: ...

    def time(self, compiled: Any, example: torch.Tensor) -> LatencyMeasurement: ...


def structure_model(model: nn.Module, plan: PruningPlan, *, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with seeded random weights, one-shot pruned by ``plan``.

    Only the sparsity structure matters to the compiler, so candidates are compiled from
    this (it can be built while the accuracy evaluation trains).
    """
    out = copy.deepcopy(model).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    pruner = MagnitudePruner(plan)
    pruner.prepare(out)
    pruner.step()
    pruner.squash_mask()
    return out.eval()


def structure_key(model: nn.Module) -> str:
    """A hash of the model's sparsity structure: each Conv2d/Linear weight's shape and
    non-zero pattern (values do not matter to the compiler)."""
    digest = hashlib.sha1()
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            w = module.weight.detach()
            digest.update(f"{name}:{tuple(w.shape)}:{type(module).__name__};".encode())
            digest.update(np.packbits((w != 0).numpy().ravel()).tobytes())
    return digest.hexdigest()


def measure_interleaved(
    measurer: LatencyMeasurer,
    models: dict[str, nn.Module],
    example: torch.Tensor,
    *,
    rounds: int,
) -> dict[str, float]:
    """The median latency (ms) of each of ``models`` over ``rounds`` rounds, all models timed
    one after another in every round: a passing slow-down of the machine then hits one
    round of every model instead of every round of one. A measurer with separate
    ``compile``/``time`` steps compiles each model once; others measure it each round."""
    split = hasattr(measurer, "compile") and hasattr(measurer, "time")
    compiled = (
        {k: measurer.compile(m, example) for k, m in models.items()}  # type: ignore[attr-defined]
        if split
        else {}
    )
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for k, m in models.items():
            lat = (
                measurer.time(compiled[k], example)  # type: ignore[attr-defined]
                if split
                else measurer.measure(m, example)
            )
            times[k].append(lat.median_ms)
    return {k: float(statistics.median(v)) for k, v in times.items()}


class MemoLatency:
    """Wraps a measurer; a structure measured once is not measured again in this process
    (keyed by :func:`structure_key` and the example's shape)."""

    def __init__(self, inner: LatencyMeasurer) -> None:
        self.inner = inner
        self.memo: dict[str, LatencyMeasurement] = {}
        self.calls = 0

    @property
    def key(self) -> str:
        return self.inner.key

    def check(self) -> None:
        check = getattr(self.inner, "check", None)
        if check is not None:
            check()

    def measure(self, model: nn.Module, example: torch.Tensor) -> LatencyMeasurement:
        key = f"{structure_key(model)}:{tuple(example.shape)}"
        if key not in self.memo:
            self.calls += 1
            self.memo[key] = self.inner.measure(model, example)
        return self.memo[key]


@dataclass
class LatencyCache:
    """Latency (ms) per structure key; counts hits and misses."""

    entries: dict[str, float] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def get_or_measure(
        self, key: str, measure: Callable[[], LatencyMeasurement]
    ) -> tuple[float, bool]:
        """(latency ms, whether it was cached); ``measure`` runs only on a miss."""
        if key in self.entries:
            self.hits += 1
            return self.entries[key], True
        self.misses += 1
        m = measure()
        self.entries[key] = m.median_ms
        return m.median_ms, False
