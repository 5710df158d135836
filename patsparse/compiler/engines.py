"""Compile, time and profile whole models for ``patsparse bench``: the TVM half of a benchmark.

:mod:`patsparse.bench` decides what to measure and times PyTorch; it reaches TVM only through
these functions:

- :func:`bench_target`: the target the engines compile for (this machine with a thread
  count, or a device behind an RPC tracker, checked to serve its key before any compiling);
- :func:`tune_engine`, :func:`prune_bench_logs`, :func:`bench_logs`, :func:`has_records`,
  :func:`other_target_logs`: tuning logs under ``<root>/<model>/<target key>``;
- :func:`compile_engines`: patsparse (the pruned model) and TVM dense (blocked kernel; stock
  lowering when tuned, :func:`stock_is_tuned`); :func:`compile_blocked_only` (a pruned
  model without the pattern kernels, for ``patsparse app bench``);
- :func:`engine_call` (a call to time end to end), :func:`conv_kernel_times` (every conv
  kernel timed inside the model's runs by a VM instrument), :func:`time_on_device` (a
  compiled engine uploaded to the device and timed by its runtime);
- :func:`weight_storage`: weight bytes of the dense model and of the compiled engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from patsparse.compiler.compile import compile_torch, import_torch
from patsparse.compiler.remote import remote_measure
from patsparse.compiler.targets import resolve_target
from patsparse.core.errors import PatsparseError, RemoteError
from tvm_ext._compat import host_target, relax, set_threads, tensor, tvm
from tvm_ext._compat import meta_schedule as ms
from tvm_ext.passes import PatternSparseConv2D
from tvm_ext.pipeline import CompiledModel, lower_for_tuning
from tvm_ext.rpc.remote import RemoteModel
from tvm_ext.rpc.session import TrackerAddress
from tvm_ext.tuning.logs import RECORD_FILE, log_dir, other_target_logs, prune_logs
from tvm_ext.tuning.tune import tune_module

__all__ = [
    "BenchTarget",
    "DeviceRuns",
    "KernelCall",
    "bench_logs",
    "bench_target",
    "compile_blocked_only",
    "compile_engines",
    "conv_kernel_times",
    "engine_call",
    "has_records",
    "more_runs",
    "other_target_logs",
    "prune_bench_logs",
    "stock_is_tuned",
    "time_on_device",
    "tune_engine",
    "weight_storage",
]


# -- target and logs -------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchTarget:
    """Where a benchmark's engines compile for and run: the TVM target, the thread count
    (0: the device's own), and the (builder, runner) tuning measures with (None: here)."""

    target: Any
    threads: int
    builder: Any = None
    runner: Any = None

    @property
    def name(self) -> str:
        """The CPU model (host: e.g. znver4), else the triple (arm64: aarch64-linux-gnu)."""
        cfg = self.target.export()
        return str(cfg.get("mcpu") or cfg.get("mtriple", ""))


def bench_target(
    target: str, *, threads: int | None, tracker: str | None, key: str | None
) -> BenchTarget:
    """This machine with ``threads`` (TVM's pool; default all cores), or with ``tracker``
    the preset ``target`` on the device ``key`` (which must serve now: a clear error before
    anything compiles)."""
    if tracker is not None:
        tgt = resolve_target(target)
        builder, runner = remote_measure(tgt, tracker, key)
        return BenchTarget(tgt, 0, builder, runner)
    n = set_threads(threads)
    return BenchTarget(host_target(num_cores=n), n)


def bench_logs(model: str, target: Any, root: str | Path | None) -> Path | None:
    """``<root>/<model family>/<target key>``, or None without a root."""
    return log_dir(model, target, root) if root else None


def has_records(logs: Path | None) -> bool:
    """Whether ``logs`` holds tuning records (a directory can exist before any tuning)."""
    return logs is not None and (logs / RECORD_FILE).is_file()


def tune_engine(
    model: nn.Module,
    x: torch.Tensor,
    where: BenchTarget,
    logs: Path,
    *,
    trials: int,
    blocked: Literal[False] | None = None,
) -> dict[str, Any]:
    """Tune the model's tasks (``blocked=False``: TVM's own lowering of its convs) into
    ``logs`` with ``trials`` per task; what was tuned."""
    rep = tune_module(
        lower_for_tuning(import_torch(model, x), where.target, blocked=blocked),
        where.target,
        logs,
        trials_per_task=trials,
        builder=where.builder,
        runner=where.runner,
    )
    return {
        "seconds": round(rep.seconds, 1),
        "tasks": rep.tasks,
        "tuned": len(rep.tuned),
        "trials": rep.trials,
        # hand schedules measured as candidates (new tasks, or the hand schedule changed)
        "hand_schedules": rep.defaults,
    }


def prune_bench_logs(
    logs: Path, pruned: nn.Module, dense: nn.Module, x: torch.Tensor, target: Any
) -> dict[str, Any]:
    """Drop the workloads (and records) of ``logs`` that are no task of the benchmark: both
    engines' tasks are kept (the stock dense ones too, timed or not: the logs serve both)."""
    tasks = [
        lower_for_tuning(import_torch(pruned, x), target),
        lower_for_tuning(import_torch(dense, x), target, blocked=False),
    ]
    return asdict(prune_logs(logs, tasks, target))


# -- compiling -------------------------------------------------------------------------------


def stock_is_tuned(dense: nn.Module, x: torch.Tensor, target: Any, logs: Path) -> bool:
    """True if the tuning logs hold a record for every conv / matmul task of TVM's stock
    lowering of the dense model (untuned, those run as plain loops: not worth timing)."""
    mod = lower_for_tuning(import_torch(dense, x), target, blocked=False)
    db = ms.database.JSONDatabase(work_dir=str(logs))
    tasks = ms.relax_integration.extract_tasks(mod, target)
    heavy = [t for t in tasks if "conv2d" in t.task_name or "matmul" in t.task_name]
    return bool(heavy) and all(db.has_workload(t.dispatched[0]) for t in heavy)


def compile_engines(
    pruned: nn.Module,
    dense: nn.Module,
    x: torch.Tensor,
    target: Any,
    logs: Path | None,
    *,
    tvm_dense: bool = True,
    verify: bool = True,
    log: Callable[[str], None] = lambda _msg: None,
) -> dict[str, CompiledModel]:
    """The engines by name: ``patsparse`` (the pruned model), and with ``tvm_dense`` the
    dense model on the blocked kernel (``tvm_dense_blocked``) and, when ``logs`` tune every
    heavy task of its stock lowering, through TVM's own lowering (``tvm_dense_stock_tuned``).
    ``verify``: each checked against PyTorch as it compiles (``compile_torch``)."""
    log("compiling patsparse (pruned model)")
    engines = {"patsparse": compile_torch(pruned, x, target=target, logs=logs, verify=verify)}
    if tvm_dense:
        log("compiling TVM dense, blocked kernel")
        engines["tvm_dense_blocked"] = compile_torch(
            dense, x, target=target, logs=logs, verify=verify
        )
        if logs is not None and stock_is_tuned(dense, x, target, logs):
            log("compiling TVM dense, stock lowering with tuning records")
            engines["tvm_dense_stock_tuned"] = compile_torch(
                dense, x, target=target, logs=logs, blocked=False, verify=verify
            )
    return engines


def compile_blocked_only(model: nn.Module, x: torch.Tensor, target: Any) -> CompiledModel:
    """``model`` compiled with no conv on the pattern kernels: a pruned model's convs all on
    the blocked kernel (which still skips the input channels whole filter blocks lack)."""
    # every per-kernel layer estimated slower than the blocked kernel, block layers run per
    # kernel: the pattern pass rewrites none
    no_patterns = PatternSparseConv2D(per_kernel_cost=1e9, prefer_blocks=False)
    return compile_torch(model, x, target=target, sparse=no_patterns)


def weight_storage(dense: nn.Module, sparse: CompiledModel) -> dict[str, int]:
    """Weight bytes (fp32) of the dense model, and of the compiled sparse engine (its
    rewritten layers in their compact storage, the rest dense)."""
    weights = 0
    for m in dense.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            weights += int(m.weight.numel()) * 4
    ours = 0
    taken = 0
    for rec in [*sparse.records, *sparse.blocked_records]:
        if rec.rewritten:
            ours += int(rec.storage_bytes.get("ours", 0))
            taken += int(rec.storage_bytes.get("dense", 0))
    return {"dense_weights": weights, "patsparse_weights": weights - taken + ours}


# -- timing ----------------------------------------------------------------------------------


def engine_call(compiled: CompiledModel, x: np.ndarray) -> Callable[[], object]:
    """A call of the compiled model's ``main`` on ``x`` (copied to the CPU once, here): what
    end-to-end timing times."""
    if compiled.vm is None:
        raise PatsparseError("a model compiled for another device runs there: time_on_device")
    main = compiled.vm["main"]
    xt = tensor(x, tvm.cpu())
    return lambda: main(xt)


@dataclass(frozen=True)
class KernelCall:
    """One conv kernel call of a compiled model: its function, the shapes of its input and
    output tensors and its kernel's tap count (which together identify the layer) and its
    time in each run (ms)."""

    function: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    taps: int
    times: list[float]


def _kernel_taps(symbol: str, shapes: list[tuple[int, ...]]) -> int:
    """kh*kw of the conv a kernel computes: pattern-sparse kernels are 3x3; the blocked
    kernel's weight array is (rows, patterns, slots, taps, lanes); TVM's own conv takes the
    OIHW weight."""
    if symbol.startswith(("pattern_sparse_conv2d", "depthwise_conv2d")):
        return 9
    if len(shapes) > 1 and len(shapes[1]) == 5:
        return shapes[1][3]
    if len(shapes) > 1 and len(shapes[1]) == 4:
        return shapes[1][2] * shapes[1][3]
    return 0


def conv_kernel_times(
    compiled: CompiledModel,
    x: np.ndarray,
    repeat: int,
    clock: Callable[[], float] = time.perf_counter,
) -> list[KernelCall]:
    """Every conv kernel call of a compiled model, in call order, timed inside the model run
    (a VM instrument reads ``clock`` before and after every call). Conv kernels are the
    functions whose name has "conv2d"."""
    vm = relax.VirtualMachine(compiled.executable, compiled.device)
    # kernels reading or writing chained layouts: identify them by their conv's NCHW shapes
    logical = {
        r.function: (tuple(r.in_shape), tuple(r.out_shape))
        for r in getattr(compiled, "chain_records", [])
    }
    runs: list[list[tuple[str, tuple[int, ...], tuple[int, ...], int, float]]] = []
    started: dict[str, tuple[float, tuple[int, ...], tuple[int, ...], int]] = {}

    def instrument(_func: Any, symbol: str, before: bool, _ret: Any, *args: Any) -> int:
        # the clock is read last before the call and first after it: the callback's own work
        # stays outside the kernel's time
        now = clock()
        if "conv2d" not in symbol:
            return 0
        if before:
            shapes = [tuple(int(d) for d in a.shape) for a in args if hasattr(a, "shape")]
            ins, outs = logical.get(
                symbol, (shapes[0] if shapes else (), shapes[-1] if shapes else ())
            )
            started[symbol] = (clock(), ins, outs, _kernel_taps(symbol, shapes))
        elif symbol in started:
            begin, ins, outs, taps = started.pop(symbol)
            runs[-1].append((symbol, ins, outs, taps, (now - begin) * 1e3))
        return 0

    xt = tensor(np.ascontiguousarray(x, dtype=np.float32), compiled.device)
    vm["main"](xt)  # warm-up, uninstrumented
    vm.set_instrument(instrument)
    for _ in range(repeat):
        runs.append([])
        vm["main"](xt)
    calls = len(runs[0])
    if any(len(r) != calls for r in runs):
        raise PatsparseError("conv kernel calls differ between runs; cannot time per layer")
    return [KernelCall(*runs[0][i][:4], times=[r[i][4] for r in runs]) for i in range(calls)]


def more_runs(kernels: list[KernelCall] | None, more: list[KernelCall]) -> list[KernelCall]:
    """``kernels`` with the times of ``more`` (the same calls, timed again) appended."""
    if kernels is None:
        return more
    if [k.function for k in kernels] != [k.function for k in more]:
        raise PatsparseError("conv kernel calls differ between runs; cannot time per layer")
    return [replace(k, times=k.times + m.times) for k, m in zip(kernels, more, strict=True)]


@dataclass(frozen=True)
class DeviceRuns:
    """An engine timed on a device: ms per run, its output (when asked for) and the thread
    count its runtime used (None: its default, not read back)."""

    times_ms: list[float]
    output: np.ndarray | None
    threads: int | None


def time_on_device(
    compiled: CompiledModel,
    x: np.ndarray,
    *,
    name: str,
    tracker: str,
    key: str,
    repeat: int,
    threads: int | None = None,
    output: bool = False,
) -> DeviceRuns:
    """Upload the engine ``name`` to the device ``key`` at ``tracker`` and time ``repeat``
    runs there by its runtime (``threads`` sets its pool); with ``output`` also run it once
    for its output. TVM's RPC errors become a :class:`RemoteError` naming the engine."""
    try:
        with RemoteModel(compiled, TrackerAddress.parse(tracker), key, threads=threads) as rm:
            out = rm(x) if output else None
            t = rm.time(x, number=1, repeat=repeat)
            used = rm.threads
    except RemoteError:
        raise
    except Exception as exc:  # TVM's RPC errors: name the engine and where to look
        raise RemoteError(
            f"running {name} on {key!r} via {tracker} failed "
            f"({type(exc).__name__}: {exc}); check the device's RPC server log "
            "('patsparse devices up' prints where an emulated device logs)"
        ) from exc
    return DeviceRuns([r * 1e3 for r in t.runs], out, used)
