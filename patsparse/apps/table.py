"""Table 1 of the real-time demo paper on this machine: per app and input size, latency and
frames per second of four engines, measured side by side in one process, taking turns:

- ``pytorch_dense``: the dense model in PyTorch;
- ``tvm_dense``: the dense model compiled by patsparse (every conv on the blocked kernel);
- ``pruned_blocked``: the pruned model compiled without the pattern kernels (its convs on
  the blocked kernel, which skips what block connectivity it finds);
- ``patsparse``: the pruned model with the pattern kernels (the full pipeline).

Speed-ups are against PyTorch dense. Quality (the app's metrics on the held-out photos,
PyTorch) sits next to each: the dense model's for the dense engines, the pruned model's for
the pruned ones, and each engine's largest difference from its PyTorch model on the timed
input says it computes the same function.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import platform
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from patsparse.apps.base import App
from patsparse.apps.photos import PhotoSet
from patsparse.bench.allocator import steady_allocator
from patsparse.bench.core_link import far_apart_line, round_trips
from patsparse.bench.spread import summary_ms
from patsparse.bench.torch_timing import CLOCKS, interleaved
from patsparse.compiler.compile import compile_torch
from patsparse.compiler.engines import bench_target, compile_blocked_only, engine_call

#: ``wall``: elapsed time; ``cpu``: this process's CPU time, which a busy machine does not
#: inflate by descheduling us (meaningful with one thread: with more, spinning threads count)

ENGINES: tuple[str, ...] = ("pytorch_dense", "tvm_dense", "pruned_blocked", "patsparse")
#: the model each engine runs
_MODEL_OF = {
    "pytorch_dense": "dense",
    "tvm_dense": "dense",
    "pruned_blocked": "pruned",
    "patsparse": "pruned",
}


@dataclass(frozen=True)
class TableConfig:
    """What Table 1 measures: input sizes (square), timed runs per engine, threads, which
    of :data:`ENGINES` (PyTorch dense always: the speed-ups are against it), the clock
    (:data:`CLOCKS`)."""

    sizes: tuple[int, ...] = (256, 512)
    runs: int = 15
    threads: int = 2
    engines: tuple[str, ...] = ENGINES
    clock: str = "wall"
    version: int = 1

    def __post_init__(self) -> None:
        if self.clock not in CLOCKS:
            raise ValueError(f"TableConfig.clock must be one of {tuple(CLOCKS)}: {self.clock!r}")
        unknown = set(self.engines) - set(ENGINES)
        if unknown or "pytorch_dense" not in self.engines:
            raise ValueError(
                f"TableConfig.engines must include pytorch_dense and name only {ENGINES}, got "
                f"{self.engines}"
            )
        if not self.sizes or min(self.sizes) < 8:
            raise ValueError(f"TableConfig.sizes must be sizes >= 8, got {self.sizes}")
        if self.runs < 1 or self.threads < 1:
            raise ValueError("TableConfig needs runs >= 1 and threads >= 1")


def timing_input(app: App, size: int) -> torch.Tensor:
    """The input batch of a seeded random ``size x size`` photo (real values, so the error vs
    PyTorch means something; the models' speed does not depend on the values)."""
    photo = np.random.default_rng(0).random((size, size, 3), dtype=np.float32)
    return app.to_input(photo)


def _compile_engine(name: str, model: nn.Module, x: torch.Tensor, target: Any) -> Any:
    if name == "pruned_blocked":
        return compile_blocked_only(model, x, target)
    return compile_torch(model, x, target=target)


def app_rows(
    app: App,
    dense: nn.Module,
    pruned: nn.Module,
    *,
    config: TableConfig,
    quality: dict[str, dict[str, float]],
    log: Callable[[str], None] = lambda _m: None,
) -> list[dict[str, Any]]:
    """One row per input size of ``config``: every engine's latency, fps, speed-up and
    error vs PyTorch, and the quality of the model it runs (``quality[dense|pruned]``)."""
    target = bench_target("host", threads=config.threads, tracker=None, key=None).target
    rows = []
    for size in config.sizes:
        x = timing_input(app, size)
        xn = np.ascontiguousarray(x.numpy())
        models = {"dense": dense.eval(), "pruned": pruned.eval()}
        wanted = [e for e in config.engines if e != "pytorch_dense"]
        log(f"{app.name} {size}²: compiling {', '.join(wanted)}")
        compiled = {e: _compile_engine(e, models[_MODEL_OF[e]], x, target) for e in wanted}
        with torch.no_grad():
            refs = {k: m(x).numpy() for k, m in models.items()}
            calls: dict[str, Callable[[], object]] = {
                "pytorch_dense": functools.partial(models["dense"], x)
            }
            calls.update({k: engine_call(c, xn) for k, c in compiled.items()})
            log(f"{app.name} {size}²: timing {config.runs} runs, engines taking turns")
            times = interleaved(calls, config.runs, clock=config.clock, warmup=1)
        torch_ms = statistics.median(times["pytorch_dense"])
        engines: dict[str, Any] = {}
        for name in config.engines:
            s = summary_ms(times[name])
            model = _MODEL_OF[name]
            err = 0.0 if name == "pytorch_dense" else _max_err(compiled[name](xn), refs[model])
            engines[name] = {
                **s,
                "fps": round(1e3 / s["median"], 1),
                "speedup_vs_pytorch": round(torch_ms / s["median"], 2),
                "model": model,
                "quality": quality.get(model, {}),
                "max_abs_error_vs_pytorch": err,
            }
        rows.append(
            {
                "app": app.name,
                "size": size,
                "input_shape": list(x.shape),
                "engines": engines,
                "compile_seconds": {k: round(c.compile_seconds, 1) for k, c in compiled.items()},
            }
        )
    return rows


def _max_err(out: Any, ref: np.ndarray) -> float:
    return float(np.abs(np.asarray(out) - ref).max())


def app_table(
    app: App,
    dense: nn.Module,
    pruned: nn.Module,
    photos: PhotoSet,
    *,
    config: TableConfig | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Table 1 for one app: quality of the baseline, dense and pruned models on the
    held-out photos, then :func:`app_rows`; a JSON-ready dict."""
    cfg = config or TableConfig()
    n = bench_target("host", threads=cfg.threads, tracker=None, key=None).threads
    torch.set_num_threads(n)
    allocator = steady_allocator()
    log(f"{app.name}: quality on {len(photos.held_out)} held-out photos")
    quality = {
        "baseline": app.baseline(photos.held_out),
        "dense": app.quality(dense, photos.held_out),
        "pruned": app.quality(pruned, photos.held_out),
    }
    with round_trips() as link:  # how far apart the host had put the two CPUs
        rows = app_rows(app, dense, pruned, config=cfg, quality=quality, log=log)
    return {
        "app": app.name,
        "title": app.title,
        "metrics": [dataclasses.asdict(m) for m in app.metrics],
        "quality": quality,
        "rows": rows,
        "core_round_trip_ns": link,
        "threads": n,
        "cpu": platform.processor() or platform.machine(),
        "config": dataclasses.asdict(cfg),
        "allocator": allocator,
        "note": f"engines timed in one process, taking turns; median (min-max) ms, "
        f"{cfg.clock} clock",
    }


def format_table(result: dict[str, Any]) -> str:
    """Table 1 as text: one line per (size, engine)."""
    metrics = [m["key"] for m in result["metrics"]]
    q = result["quality"]
    head = ", ".join(f"{k} {q['baseline'][k]:.4g}" for k in metrics)
    lines = [
        f"{result['title']} ({result['app']}), {result['threads']} threads, "
        f"{result.get('config', {}).get('clock', 'wall')} clock; baseline: {head}",
        f"{'input':>8} {'engine':<15} {'ms (min-max)':>22} {'fps':>7} {'speed-up':>9} "
        + " ".join(f"{k:>8}" for k in metrics)
        + f" {'max err':>9}",
    ]
    for row in result["rows"]:
        for name, e in row["engines"].items():
            ms = f"{e['median']:.1f} ({e['min']:.1f}-{e['max']:.1f})"
            qs = " ".join(f"{e['quality'].get(k, float('nan')):8.4g}" for k in metrics)
            lines.append(
                f"{row['size']:>6}² {name:<15} {ms:>22} {e['fps']:>7} "
                f"{e['speedup_vs_pytorch']:>8}x {qs} {e['max_abs_error_vs_pytorch']:9.1e}"
            )
    far = far_apart_line(result.get("core_round_trip_ns") or [])
    if far:
        lines.append(far)
    return "\n".join(lines)


def to_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, sort_keys=True)
