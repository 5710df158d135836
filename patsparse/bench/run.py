"""One ``patsparse bench`` run (:func:`run_bench`), step by step: prepare the models, tune and
find the logs, compile the engines, time them end to end (here or on a device), the
per-layer table, peak memory.

The TVM side of each step is :mod:`patsparse.compiler.engines`, imported inside the steps:
TVM loads when a benchmark runs, not when the CLI builds its parser.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from patsparse.bench.allocator import steady_allocator
from patsparse.bench.config import BenchConfig
from patsparse.bench.core_link import round_trips
from patsparse.bench.layers import layer_table
from patsparse.bench.memory import engines_peak_memory
from patsparse.bench.pruning import prune_for_bench
from patsparse.bench.spread import flag_end_to_end, summary_ms
from patsparse.bench.torch_timing import interleaved, macs
from patsparse.models import build_model, default_input_shape

if TYPE_CHECKING:
    from patsparse.compiler.engines import BenchTarget


def _progress(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class BenchModels:
    """The dense model, its pruned copy and the batch-1 input (as a tensor and an array)."""

    dense: nn.Module
    pruned: nn.Module
    x: torch.Tensor

    @property
    def xn(self) -> np.ndarray:
        return self.x.numpy()


def run_bench(cfg: BenchConfig, *, log: Callable[[str], None] = _progress) -> dict[str, Any]:
    """Measure one model (see :mod:`patsparse.bench`); returns a JSON-ready dict."""
    where = _open_target(cfg)
    allocator = steady_allocator()
    models = prepare_models(cfg)
    result = _summary(cfg, where, models) | {"allocator": allocator}
    logs = _tune_and_find_logs(cfg, where, models, result, log)
    engines = _compile_engines(cfg, where, models, logs, result, log)
    if cfg.remote:
        log(f"end to end on {cfg.key!r} via {cfg.tracker}, {cfg.repeat} runs per engine")
        result.update(_device_end_to_end(cfg, engines, models, result["flop_reduction"]))
        _flag_spread(cfg, result)
        # per-layer kernel times and peak memory are read off this machine's process
        result["host_only_skipped"] = ["per-layer table", "peak memory"]
        return result
    log(f"end to end, {cfg.repeat} interleaved rounds of every engine")
    with round_trips() as link:  # how far apart the host had put the two CPUs
        result["end_to_end_ms"] = _end_to_end(cfg, engines, models, result["flop_reduction"])
    result["core_round_trip_ns"] = link
    _flag_spread(cfg, result)
    if cfg.layers:
        log("per-layer kernel times")
        result["layers"] = layer_table(cfg, models.dense, models.pruned, models.x, engines)
    if cfg.memory:
        log("peak memory, each engine in a fresh process")
        result["peak_memory_mb"] = engines_peak_memory(
            models.dense, engines, tuple(models.x.shape), where.threads
        )
    result["max_rss_mb_this_process"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    return result


def _flag_spread(cfg: BenchConfig, result: dict[str, Any]) -> None:
    """The bound, and the end-to-end measurements whose max/min exceeds it (their ratios
    are not figures to report: a slow stretch hit some of their runs)."""
    result["max_spread"] = cfg.max_spread
    result["unsteady"] = flag_end_to_end(result["end_to_end_ms"], cfg.max_spread)


def _open_target(cfg: BenchConfig) -> BenchTarget:
    """This machine with the benchmark's threads (PyTorch's too), or the device (checked to
    serve its key now: a clear error before any compiling)."""
    from patsparse.compiler.engines import bench_target

    where = bench_target(cfg.target, threads=cfg.threads, tracker=cfg.tracker, key=cfg.key)
    if not cfg.remote:
        torch.set_num_threads(where.threads)
    return where


def prepare_models(cfg: BenchConfig) -> BenchModels:
    """The zoo model (seeded random weights), pruned as the benchmark prunes, and its input."""
    torch.manual_seed(cfg.seed)
    dense = build_model(cfg.model).eval()
    pruned = prune_for_bench(dense, cfg)
    x = torch.randn(default_input_shape(cfg.model), generator=torch.Generator().manual_seed(0))
    return BenchModels(dense, pruned, x)


def _summary(cfg: BenchConfig, where: BenchTarget, models: BenchModels) -> dict[str, Any]:
    """The result's header: the configuration, where it runs and the FLOP reduction."""
    dense_macs, kept_macs = macs(models.pruned, models.x)
    return {
        "model": cfg.model,
        "config": asdict(cfg) | {"compression": cfg.rate},
        "threads": where.threads or cfg.threads,
        # the CPU model (host: e.g. znver4), else the triple (arm64: aarch64-linux-gnu)
        "target": where.name,
        "input_shape": list(models.x.shape),
        "flop_reduction": round(dense_macs / max(kept_macs, 1), 3),
        "gflops_dense": round(2 * dense_macs / 1e9, 3),
    }


def _tune_and_find_logs(
    cfg: BenchConfig,
    where: BenchTarget,
    models: BenchModels,
    result: dict[str, Any],
    log: Callable[[str], None],
) -> Path | None:
    """Tune (``trials``) and prune (``prune_logs``) the logs under ``logs_root``; the logs to
    compile with, None when this target has none (``result`` says which targets have)."""
    from patsparse.compiler import engines as tvm_side

    logs = tvm_side.bench_logs(cfg.model, where.target, cfg.logs_root)
    tuning: dict[str, Any] = {}
    if cfg.trials and logs is not None:
        engines_to_tune: list[tuple[str, nn.Module, Literal[False] | None]] = [
            ("patsparse", models.pruned, None)
        ]
        if cfg.tvm_dense:
            engines_to_tune.append(("tvm_dense_stock", models.dense, False))  # TVM's lowering
        for name, model, blocked in engines_to_tune:
            log(f"tuning {name} tasks ({cfg.trials} trials per task) into {logs}")
            tuning[name] = tvm_side.tune_engine(
                model, models.x, where, logs, trials=cfg.trials, blocked=blocked
            )
    have_logs = tvm_side.has_records(logs)
    if cfg.prune_logs and logs is not None and have_logs:
        log(f"pruning {logs} to this benchmark's tasks")
        tuning["pruned"] = tvm_side.prune_bench_logs(
            logs, models.pruned, models.dense, models.x, where.target
        )
    result["tuning"] = tuning
    result["logs"] = str(logs) if have_logs else None
    if logs is not None and not have_logs:
        others = tvm_side.other_target_logs(logs)
        result["logs_for_other_targets"] = others
        if others:
            log(
                f"no tuning logs for this target in {logs}; {cfg.model} has logs for "
                f"{', '.join(others)} only (logs never cross targets): default schedules. "
                "Tune for this one with --trials N"
            )
    return logs if have_logs else None


def _compile_engines(
    cfg: BenchConfig,
    where: BenchTarget,
    models: BenchModels,
    logs: Path | None,
    result: dict[str, Any],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Compile every engine; ``result`` gets compile times, weight storage and (here) the
    pruned engine's error against PyTorch."""
    from patsparse.compiler import engines as tvm_side

    engines = tvm_side.compile_engines(
        models.pruned,
        models.dense,
        models.x,
        where.target,
        logs,
        tvm_dense=cfg.tvm_dense,
        verify=cfg.verify,
        log=log,
    )
    if not cfg.remote:
        with torch.no_grad():
            ref = models.pruned(models.x).numpy()
        result["max_abs_error_vs_pytorch"] = float(
            np.abs(engines["patsparse"](models.xn) - ref).max()
        )
    result["compile_seconds"] = {
        name: round(comp.compile_seconds, 1) for name, comp in engines.items()
    }
    result["storage_bytes"] = tvm_side.weight_storage(models.dense, engines["patsparse"])
    return engines


def _end_to_end(
    cfg: BenchConfig, engines: dict[str, Any], models: BenchModels, flop_reduction: float
) -> dict[str, Any]:
    """Every engine and PyTorch dense timed whole here, in interleaved rounds (a slow stretch
    of the machine hits all of them alike); speed-ups against PyTorch; each engine marked
    ``steady`` or not (max/min within ``cfg.max_spread``)."""
    from patsparse.compiler.engines import engine_call

    calls: dict[str, Callable[[], object]] = {"pytorch_dense": lambda: models.dense(models.x)}
    calls.update({name: engine_call(comp, models.xn) for name, comp in engines.items()})
    with torch.no_grad():
        times = interleaved(calls, cfg.repeat, cfg.clock)
    e2e: dict[str, Any] = {name: summary_ms(t) for name, t in times.items()}
    torch_ms = e2e["pytorch_dense"]["median"]
    for name in list(e2e):
        e2e[name]["speedup_vs_pytorch"] = round(torch_ms / e2e[name]["median"], 3)
    e2e["patsparse"]["efficiency"] = round(
        e2e["patsparse"]["speedup_vs_pytorch"] / flop_reduction, 3
    )
    return e2e


def _device_end_to_end(
    cfg: BenchConfig, engines: dict[str, Any], models: BenchModels, flop_reduction: float
) -> dict[str, Any]:
    """Each engine uploaded to the device and timed there by its runtime; speed-ups are
    against TVM dense on the blocked kernel (PyTorch does not run on the device)."""
    from patsparse.compiler.engines import time_on_device

    if cfg.tracker is None or cfg.key is None:  # BenchConfig checks both or neither
        raise ValueError("a device benchmark needs a tracker and a key")
    with torch.no_grad():
        ref = models.pruned(models.x).numpy()
    e2e: dict[str, Any] = {}
    out: dict[str, Any] = {}
    for name, comp in engines.items():
        runs = time_on_device(
            comp,
            models.xn,
            name=name,
            tracker=cfg.tracker,
            key=cfg.key,
            repeat=cfg.repeat,
            threads=cfg.threads,
            output=name == "patsparse",
        )
        if runs.output is not None:
            out["max_abs_error_vs_pytorch"] = float(np.abs(runs.output - ref).max())
            out["threads"] = runs.threads
        e2e[name] = summary_ms(runs.times_ms)
    if "tvm_dense_blocked" in e2e:
        base = e2e["tvm_dense_blocked"]["median"]
        for d in e2e.values():
            d["speedup_vs_tvm_dense_blocked"] = round(base / d["median"], 3)
        e2e["patsparse"]["efficiency"] = round(
            e2e["patsparse"]["speedup_vs_tvm_dense_blocked"] / flop_reduction, 3
        )
    out["end_to_end_ms"] = e2e
    out["baseline"] = "tvm_dense_blocked"
    out["device"] = {"target": cfg.target, "tracker": cfg.tracker, "key": cfg.key}
    return out
