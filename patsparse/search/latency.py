"""Measured latency of the *compiled* candidate model, on the host or over a TVM RPC tracker.

The NPS reward uses the latency of the whole compiled model (fusion and tuned schedules
included), not a per-layer table. Code generation needs only the sparsity structure, so a
candidate is :func:`structure_model`: the model with seeded random weights, one-shot
magnitude-pruned by the candidate's plan. A :class:`LatencyMeasurer` compiles it with
``tvm_ext.pipeline.compile_torch`` (tuning logs applied when given) and times it with
TVM's ``time_evaluator`` (median of ``repeat`` runs). :class:`LocalLatency` runs on this
machine, :class:`RPCLatency` on a device behind an RPC tracker; anything with the same
``key``/``measure`` surface plugs in. :class:`LatencyCache` keeps one measurement per
(device, structure).
"""

from __future__ import annotations

import copy
import os
import socket
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from patsparse.core.errors import LatencyMeasurementError, SearchConfigError, TrackerUnavailableError
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


@runtime_checkable
class SplitMeasurer(Protocol):
    """A measurer whose code generation and timing are separate steps: the search compiles
    a candidate in a worker process (:func:`compile_pool`) while its accuracy evaluation
    trains, then times it with the cores free."""

    @property
    def key(self) -> str: ...

    def submit_compile(self, pool: Any, model: nn.Module, example: torch.Tensor) -> Any: ...

    def time(self, compiled: Any, example: torch.Tensor) -> LatencyMeasurement: ...


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


def _summarise(results_s: list[float], compile_s: float, rewritten: int, device: str) -> Any:
    ms = [r * 1e3 for r in results_s]
    if not ms or min(ms) <= 0:
        raise LatencyMeasurementError(
            f"time_evaluator returned no positive timings ({ms}); raise TimingConfig.number"
        )
    return LatencyMeasurement(
        median_ms=float(statistics.median(ms)),
        min_ms=float(min(ms)),
        max_ms=float(max(ms)),
        repeat=len(ms),
        compile_seconds=compile_s,
        rewritten_convs=rewritten,
        device=device,
    )


def _compile(model: nn.Module, example: torch.Tensor, target: Any, logs: Path | None) -> Any:
    from tvm_ext.pipeline import compile_torch

    try:
        return compile_torch(model, example, target=target, logs=logs)
    except Exception as exc:  # TVM raises its own error types; name the candidate's problem
        raise LatencyMeasurementError(
            f"compiling the candidate failed: {type(exc).__name__}: {exc}. Check the model "
            "compiles with 'patsparse compile' (or leave its scheme out of the search space)"
        ) from exc


@dataclass(frozen=True)
class CompiledLibrary:
    """A candidate compiled and exported to a shared library (picklable across processes)."""

    path: str
    compile_seconds: float
    rewritten_convs: int


def _plain(obj: Any) -> Any:
    """A TVM target export (Map/Array of FFI objects) as plain JSON-able Python."""
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    if hasattr(obj, "items"):
        return {str(k): _plain(v) for k, v in obj.items()}
    if hasattr(obj, "__iter__"):
        return [_plain(v) for v in obj]
    return str(obj)


def compile_library(
    model: nn.Module,
    example: torch.Tensor,
    target_config: dict[str, Any],
    logs: str | None,
    path: str,
) -> CompiledLibrary:
    """Compile ``model`` for ``target_config`` and export it to ``path``.

    A plain function of picklable arguments: the search runs it in a worker process while
    the candidate trains (``torch.export`` is not thread-safe next to training, so a thread
    will not do).
    """
    from tvm_ext._compat import Target

    compiled = _compile(model, example, Target(target_config), Path(logs) if logs else None)
    compiled.export_library(path)
    rewritten = sum(r.rewritten for r in compiled.records)
    return CompiledLibrary(path, compiled.compile_seconds, rewritten)


def _compile_worker_init() -> None:
    torch.set_num_threads(1)
    import tvm_ext.pipeline  # noqa: F401  (pay the import once, not in the first candidate)


class CompilePool:
    """One worker process for :func:`compile_library` (TVM's popen pool: a fresh
    interpreter that does not re-import the caller's ``__main__``); a context manager."""

    def __init__(self) -> None:
        from tvm_ext._compat import PopenPoolExecutor

        self._pool = PopenPoolExecutor(max_workers=1, initializer=_compile_worker_init)

    def submit(self, fn: Any, *args: Any) -> Any:
        return self._pool.submit(fn, *args)

    def __enter__(self) -> CompilePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown()


def compile_pool() -> CompilePool:
    """The worker pool the search compiles candidates in while they train."""
    return CompilePool()


class _LibraryCompiler:
    """Shared by the measurers: submit a candidate's compilation to a worker pool."""

    target: Any
    logs: Path | None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    def submit_compile(self, pool: Any, model: nn.Module, example: torch.Tensor) -> Any:
        """A future of :class:`CompiledLibrary`, compiled in ``pool`` (:func:`compile_pool`)."""
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="patsparse-candidates-")
        fd, path = tempfile.mkstemp(suffix=".so", dir=self._tmp.name)
        os.close(fd)
        target = _plain(self.target.export())
        logs = str(self.logs) if self.logs is not None else None
        return pool.submit(compile_library, model, example, target, logs, path)


class LocalLatency(_LibraryCompiler):
    """Compile for this machine and time it here (``target``: a TVM Target; default host).

    ``logs``: a MetaSchedule database applied to every candidate. ``tune_trials`` > 0 also
    tunes each candidate's new tasks into ``logs`` (default
    ``tuning_logs/search/<target key>``) with that many trials per task before compiling;
    tasks are keyed by structure, so a layer structure met again is not tuned again.
    """

    def __init__(
        self,
        *,
        target: Any = None,
        logs: str | Path | None = None,
        timing: TimingConfig | None = None,
        tune_trials: int = 0,
    ) -> None:
        from tvm_ext._compat import host_target, set_threads

        self.timing = timing or TimingConfig()
        threads = self.timing.threads or int(os.environ.get("TVM_NUM_THREADS") or 1)
        set_threads(threads)
        self.threads = threads
        self.target = target if target is not None else host_target(num_cores=threads)
        if tune_trials < 0:
            raise SearchConfigError(f"tune_trials must be >= 0, got {tune_trials}")
        self.tune_trials = tune_trials
        if tune_trials and logs is None:
            from tvm_ext.tuning.tune import log_dir

            logs = log_dir("search", self.target)
        self.logs = Path(logs) if logs is not None else None
        if self.logs is not None and tune_trials:
            self.logs.mkdir(parents=True, exist_ok=True)
        if self.logs is not None and not self.logs.is_dir():
            raise SearchConfigError(
                f"tuning logs {str(self.logs)!r} do not exist; run 'patsparse tune' first or "
                "leave the logs out"
            )

    @property
    def overlappable(self) -> bool:
        """Whether code generation may run beside training (tuning measures: it may not)."""
        return not self.tune_trials

    @property
    def key(self) -> str:
        from tvm_ext.tuning.tune import target_key

        logs = f"+logs:{self.logs}" if self.logs else ""
        tuned = f"+tune:{self.tune_trials}" if self.tune_trials else ""
        return f"local:{target_key(self.target)}:{self.threads}t{logs}{tuned}"

    def compile(self, model: nn.Module, example: torch.Tensor) -> Any:
        """Code generation (tuning first with ``tune_trials``), no timing: may run while
        something else trains."""
        if self.tune_trials and self.logs is not None:
            from tvm_ext.pipeline import import_torch
            from tvm_ext.tuning.tune import lower_for_tuning, tune_module

            try:
                lowered = lower_for_tuning(import_torch(model, example), self.target)
                tune_module(lowered, self.target, self.logs, trials_per_task=self.tune_trials)
            except Exception as exc:
                raise LatencyMeasurementError(
                    f"tuning the candidate failed ({type(exc).__name__}: {exc}); lower "
                    "--tune-trials or leave tuning out"
                ) from exc
        return _compile(model, example, self.target, self.logs)

    def measure(self, model: nn.Module, example: torch.Tensor) -> LatencyMeasurement:
        return self.time(self.compile(model, example), example)

    def time(self, compiled: Any, example: torch.Tensor) -> LatencyMeasurement:
        """Time a model from :meth:`compile` or a :class:`CompiledLibrary`."""
        from tvm_ext._compat import relax, tensor, tvm

        dev = tvm.cpu()
        if isinstance(compiled, CompiledLibrary):
            vm = relax.VirtualMachine(tvm.runtime.load_module(compiled.path), dev)
            seconds, rewritten = compiled.compile_seconds, compiled.rewritten_convs
        else:
            vm = compiled.vm
            seconds = compiled.compile_seconds
            rewritten = sum(r.rewritten for r in compiled.records)
        t = self.timing
        timer = vm.time_evaluator(
            "main", dev, number=t.number, repeat=t.repeat, min_repeat_ms=t.min_repeat_ms
        )
        res = timer(tensor(np.ascontiguousarray(example.numpy(), dtype=np.float32), dev))
        return _summarise(list(res.results), seconds, rewritten, self.key)


def parse_tracker(address: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port), with a typed error naming the expected form."""
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SearchConfigError(
            f"--tracker {address!r}: expected HOST:PORT, e.g. 127.0.0.1:9190 (the address "
            "'python -m tvm.exec.rpc_tracker' prints)"
        )
    return host, int(port)


class RPCLatency(_LibraryCompiler):
    """Compile here, run on a device behind a TVM RPC tracker (``tracker`` = ``HOST:PORT``).

    The library is exported (``export`` builds the shared object; pass a cross-compiler
    for another architecture), uploaded, loaded and timed on the remote device.
    """

    def __init__(
        self,
        tracker: str,
        key: str,
        *,
        target: Any = None,
        logs: str | Path | None = None,
        timing: TimingConfig | None = None,
        session_timeout: int = 120,
        connect_timeout: float = 5.0,
        export: Callable[[Any, str], None] | None = None,
    ) -> None:
        from tvm_ext._compat import host_target

        self.host, self.port = parse_tracker(tracker)
        if not key:
            raise SearchConfigError("--key is empty: pass the device key the RPC server uses")
        self.device_key = key
        self.timing = timing or TimingConfig()
        self.target = target if target is not None else host_target()
        self.logs = Path(logs) if logs is not None else None
        self.session_timeout = session_timeout
        self.connect_timeout = connect_timeout
        self.export = export

    @property
    def overlappable(self) -> bool:
        """Background compilation exports with the default linker: not with ``export``."""
        return self.export is None

    @property
    def key(self) -> str:
        from tvm_ext.tuning.tune import target_key

        logs = f"+logs:{self.logs}" if self.logs else ""
        return f"rpc:{self.device_key}:{target_key(self.target)}{logs}"

    def _tracker(self) -> Any:
        from tvm_ext._compat import rpc

        fix = (
            f"start one ('python -m tvm.exec.rpc_tracker --host {self.host} --port "
            f"{self.port}') or fix --tracker"
        )
        try:
            # TVM's client retries for a minute; a refused socket is a dead tracker now
            socket.create_connection((self.host, self.port), timeout=self.connect_timeout).close()
            tracker = rpc.connect_tracker(self.host, self.port)
            summary = tracker.summary()
        except Exception as exc:
            raise TrackerUnavailableError(
                f"cannot reach the RPC tracker at {self.host}:{self.port} "
                f"({type(exc).__name__}: {exc}); {fix}"
            ) from exc
        keys = sorted(summary.get("queue_info", {}))
        if self.device_key not in keys:
            raise TrackerUnavailableError(
                f"no RPC server is registered under key {self.device_key!r} at tracker "
                f"{self.host}:{self.port} (keys there: {keys or 'none'}); start one with "
                f"'python -m tvm.exec.rpc_server --tracker {self.host}:{self.port} --key "
                f"{self.device_key}' or fix --key"
            )
        return tracker

    def check(self) -> None:
        """Raise :class:`TrackerUnavailableError` unless the tracker serves ``key``."""
        self._tracker()

    def compile(self, model: nn.Module, example: torch.Tensor) -> Any:
        """Code generation only (no timing): may run while something else trains."""
        return _compile(model, example, self.target, self.logs)

    def measure(self, model: nn.Module, example: torch.Tensor) -> LatencyMeasurement:
        return self.time(self.compile(model, example), example)

    def time(self, compiled: Any, example: torch.Tensor) -> LatencyMeasurement:
        """Export, upload and time a model returned by :meth:`compile` on the device."""
        from tvm_ext._compat import relax, tensor

        tracker = self._tracker()
        with tempfile.TemporaryDirectory(prefix="patsparse-rpc-") as tmp:
            if isinstance(compiled, CompiledLibrary):
                path = compiled.path
                seconds, rewritten = compiled.compile_seconds, compiled.rewritten_convs
            else:
                path = str(Path(tmp) / "candidate.so")
                if self.export is not None:
                    self.export(compiled.executable, path)
                else:
                    compiled.export_library(path)
                seconds = compiled.compile_seconds
                rewritten = sum(r.rewritten for r in compiled.records)
            try:
                remote = tracker.request(self.device_key, session_timeout=self.session_timeout)
                remote.upload(path, target="candidate.so")
                lib = remote.load_module("candidate.so")
                dev = remote.cpu()
                vm = relax.VirtualMachine(lib, dev)
                t = self.timing
                timer = vm.time_evaluator(
                    "main", dev, number=t.number, repeat=t.repeat, min_repeat_ms=t.min_repeat_ms
                )
                x = tensor(np.ascontiguousarray(example.numpy(), dtype=np.float32), dev)
                res = timer(x)
            except Exception as exc:
                raise LatencyMeasurementError(
                    f"remote measurement on {self.device_key!r} via {self.host}:{self.port} "
                    f"failed ({type(exc).__name__}: {exc}); check the device's RPC server log"
                ) from exc
        return _summarise(list(res.results), seconds, rewritten, self.key)


def structure_key(model: nn.Module) -> str:
    """A hash of the model's sparsity structure: each Conv2d/Linear weight's shape and
    non-zero pattern (values do not matter to the compiler)."""
    import hashlib

    digest = hashlib.sha1()
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            w = module.weight.detach()
            digest.update(f"{name}:{tuple(w.shape)}:{type(module).__name__};".encode())
            digest.update(np.packbits((w != 0).numpy().ravel()).tobytes())
    return digest.hexdigest()


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
