"""Latency of *compiled* search candidates, on this machine or on a device behind an RPC
tracker: the TVM side of the search's :class:`~patsparse.search.measurement.LatencyMeasurer`.

A candidate (:func:`~patsparse.search.measurement.structure_model`) is compiled with
:func:`~patsparse.compiler.compile.compile_torch` (tuning logs applied when given) and timed
with TVM's ``time_evaluator`` (median of ``repeat`` runs). :class:`LocalLatency` runs here,
:class:`RPCLatency` on a device behind a tracker (:mod:`tvm_ext.rpc.session`); both can
compile in a worker process (:class:`CompilePool`) while the search trains the candidate.
:func:`make_measurer` picks one from the ``patsparse search`` options.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from patsparse.compiler.compile import compile_torch, import_torch
from patsparse.compiler.targets import resolve_target
from patsparse.core.errors import (
    DeviceKeyMissingError,
    LatencyMeasurementError,
    RemoteError,
    SearchConfigError,
    TrackerUnreachableError,
)
from patsparse.search.measurement import LatencyMeasurement, LatencyMeasurer, TimingConfig
from tvm_ext._compat import (
    PopenPoolExecutor,
    Target,
    host_target,
    relax,
    set_threads,
    tensor,
    tvm,
)
from tvm_ext.pipeline import lower_for_tuning
from tvm_ext.rpc.session import TrackerAddress, open_session, query_keys
from tvm_ext.targets import load_library
from tvm_ext.tuning.logs import log_dir, target_key
from tvm_ext.tuning.tune import tune_module


def _compile(model: nn.Module, example: torch.Tensor, target: Any, logs: Path | None) -> Any:
    try:
        # a candidate is compiled to be timed, not shipped: no verification (compile_torch's
        # default, about 60 % more compile time per candidate)
        return compile_torch(model, example, target=target, logs=logs, verify=False)
    except Exception as exc:  # TVM raises its own error types; name the candidate's problem
        raise LatencyMeasurementError(
            f"compiling the candidate failed: {type(exc).__name__}: {exc}. Check the model "
            "compiles with 'patsparse compile' (or leave its scheme out of the search space)"
        ) from exc


def _timed(vm: Any, dev: Any, example: torch.Tensor, timing: TimingConfig) -> list[float]:
    """Seconds per repeat of ``vm``'s ``main`` on ``example`` (``time_evaluator``)."""
    timer = vm.time_evaluator(
        "main",
        dev,
        number=timing.number,
        repeat=timing.repeat,
        min_repeat_ms=timing.min_repeat_ms,
    )
    res = timer(tensor(np.ascontiguousarray(example.numpy(), dtype=np.float32), dev))
    return list(res.results)


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
    compiled = _compile(model, example, Target(target_config), Path(logs) if logs else None)
    compiled.export_library(path)
    rewritten = sum(r.rewritten for r in compiled.records)
    return CompiledLibrary(path, compiled.compile_seconds, rewritten)


def _compile_worker_init() -> None:
    torch.set_num_threads(1)


class CompilePool:
    """One worker process for :func:`compile_library` (TVM's popen pool: a fresh
    interpreter that does not re-import the caller's ``__main__``); a context manager."""

    def __init__(self) -> None:
        self._pool = PopenPoolExecutor(max_workers=1, initializer=_compile_worker_init)

    def submit(self, fn: Any, *args: Any) -> Any:
        return self._pool.submit(fn, *args)

    def __enter__(self) -> CompilePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown()


class _LibraryCompiler:
    """Shared by the measurers: compile a candidate to a library in a worker pool."""

    target: Any
    logs: Path | None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    def compile_pool(self) -> CompilePool:
        """The worker pool :meth:`submit_compile` compiles in while the search trains."""
        return CompilePool()

    def submit_compile(self, pool: Any, model: nn.Module, example: torch.Tensor) -> Any:
        """A future of :class:`CompiledLibrary`, compiled in ``pool`` (:meth:`compile_pool`)."""
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
        self.timing = timing or TimingConfig()
        threads = self.timing.threads or int(os.environ.get("TVM_NUM_THREADS") or 1)
        set_threads(threads)
        self.threads = threads
        self.target = target if target is not None else host_target(num_cores=threads)
        if tune_trials < 0:
            raise SearchConfigError(f"tune_trials must be >= 0, got {tune_trials}")
        self.tune_trials = tune_trials
        if tune_trials and logs is None:
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
        logs = f"+logs:{self.logs}" if self.logs else ""
        tuned = f"+tune:{self.tune_trials}" if self.tune_trials else ""
        return f"local:{target_key(self.target)}:{self.threads}t{logs}{tuned}"

    def compile(self, model: nn.Module, example: torch.Tensor) -> Any:
        """Code generation (tuning first with ``tune_trials``), no timing: may run while
        something else trains."""
        if self.tune_trials and self.logs is not None:
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
        dev = tvm.cpu()
        if isinstance(compiled, CompiledLibrary):
            vm = relax.VirtualMachine(load_library(compiled.path), dev)
            seconds, rewritten = compiled.compile_seconds, compiled.rewritten_convs
        else:
            vm = compiled.vm
            seconds = compiled.compile_seconds
            rewritten = sum(r.rewritten for r in compiled.records)
        return LatencyMeasurement.from_seconds(
            _timed(vm, dev, example, self.timing),
            compile_seconds=seconds,
            rewritten_convs=rewritten,
            device=self.key,
        )


class RPCLatency(_LibraryCompiler):
    """Compile here, run on a device behind a TVM RPC tracker (``tracker`` = ``HOST:PORT``).

    The library is exported (``export`` builds the shared object; pass a cross-compiler
    for another architecture), uploaded, loaded and timed on the remote device in a session
    of at most ``session_timeout`` seconds, after waiting up to ``queue_timeout`` seconds for
    a free server.
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
        queue_timeout: float = 60.0,
        connect_timeout: float = 5.0,
        export: Callable[[Any, str], None] | None = None,
    ) -> None:
        try:
            self.address = TrackerAddress.parse(tracker)
        except ValueError as exc:
            raise SearchConfigError(
                f"--tracker: {exc} (the address 'patsparse rpc tracker' or "
                "'python -m tvm.exec.rpc_tracker' prints)"
            ) from None
        if not key:
            raise SearchConfigError("--key is empty: pass the device key the RPC server uses")
        self.device_key = key
        self.timing = timing or TimingConfig()
        self.target = target if target is not None else host_target()
        self.logs = Path(logs) if logs is not None else None
        self.session_timeout = session_timeout
        self.queue_timeout = queue_timeout
        self.connect_timeout = connect_timeout
        self.export = export

    @property
    def overlappable(self) -> bool:
        """Background compilation exports with the default linker: not with ``export``."""
        return self.export is None

    @property
    def key(self) -> str:
        logs = f"+logs:{self.logs}" if self.logs else ""
        return f"rpc:{self.device_key}:{target_key(self.target)}{logs}"

    def check(self) -> None:
        """Raise :class:`TrackerUnreachableError` when the tracker does not answer and
        :class:`DeviceKeyMissingError` when no server is registered under ``key``."""
        address = self.address
        try:
            keys = query_keys(address, timeout=self.connect_timeout)
        except TrackerUnreachableError as exc:
            raise TrackerUnreachableError(
                f"cannot reach the RPC tracker at {address} ({exc}); TVM's own tracker works "
                f"too ('python -m tvm.exec.rpc_tracker --host {address.host} --port "
                f"{address.port}'), or fix --tracker"
            ) from exc
        if self.device_key not in keys:
            raise DeviceKeyMissingError(
                f"no RPC server is registered under key {self.device_key!r} at tracker "
                f"{address} (keys there: {sorted(keys) or 'none'}); start one with "
                f"'python -m tvm.exec.rpc_server --tracker {address} --key "
                f"{self.device_key}' or fix --key"
            )

    def compile(self, model: nn.Module, example: torch.Tensor) -> Any:
        """Code generation only (no timing): may run while something else trains."""
        return _compile(model, example, self.target, self.logs)

    def measure(self, model: nn.Module, example: torch.Tensor) -> LatencyMeasurement:
        return self.time(self.compile(model, example), example)

    def time(self, compiled: Any, example: torch.Tensor) -> LatencyMeasurement:
        """Export, upload and time a model from :meth:`compile` (or a
        :class:`CompiledLibrary`) on the device.

        Tracker and device problems raise :class:`~patsparse.core.errors.RemoteError`s (the
        search stops); anything else on the device is the candidate's
        :class:`LatencyMeasurementError` (its trial fails).
        """
        self.check()
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
                with open_session(
                    self.address,
                    self.device_key,
                    queue_timeout=self.queue_timeout,
                    session_timeout=self.session_timeout,
                ) as remote:
                    remote.upload(path, target="candidate.so")
                    dev = remote.cpu()
                    vm = relax.VirtualMachine(remote.load_module("candidate.so"), dev)
                    results = _timed(vm, dev, example, self.timing)
            except RemoteError:
                raise
            except Exception as exc:
                raise LatencyMeasurementError(
                    f"remote measurement on {self.device_key!r} via {self.address} failed "
                    f"({type(exc).__name__}: {exc}); check the device's RPC server log"
                ) from exc
        return LatencyMeasurement.from_seconds(
            results, compile_seconds=seconds, rewritten_convs=rewritten, device=self.key
        )


def make_measurer(
    *,
    target: str = "host",
    tracker: str | None = None,
    key: str | None = None,
    logs: str | None = None,
    timing: TimingConfig | None = None,
    tune_trials: int = 0,
) -> LatencyMeasurer:
    """The host measurer, or the RPC one when a tracker is given (``target``: a preset name
    of :func:`~patsparse.compiler.targets.resolve_target`)."""
    tgt = resolve_target(target)
    if tracker is not None:
        if key is None:
            raise SearchConfigError("--tracker needs --key (the device's RPC key)")
        if tune_trials:
            raise SearchConfigError(
                "--tune-trials tunes on this machine; for a remote device tune it first "
                "('patsparse tune') and pass the logs with --logs"
            )
        return RPCLatency(tracker, key, target=tgt, logs=logs, timing=timing)
    return LocalLatency(logs=logs, timing=timing, tune_trials=tune_trials)
