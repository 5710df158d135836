"""``patsparse bench``: a pruned model through patsparse vs the dense alternatives, side by side.

One run measures, on the same machine, thread count and input (batch 1, fp32):

- **PyTorch dense** (oneDNN), the unpruned model;
- **patsparse**: the pruned model (3x3 convs with a pattern scheme at the model's rate, 1x1
  convs and linear layers block-pruned at the same rate unless ``others="dense"``) compiled
  by :func:`tvm_ext.pipeline.compile_torch` with the tuning logs found (or made, with
  ``trials``) under ``tuning_logs/<model>/<target key>``;
- **TVM dense, blocked kernel**: the unpruned model through the same pipeline (every conv on
  the register-blocked kernel; hand schedule, or tuned records when present);
- **TVM dense, stock**: the unpruned model through TVM's own lowering, tuned with the same
  trial budget (measured only when tuning records exist or ``trials > 0``: untuned it runs
  naive loops).

End to end it reports the median (min, max) of ``repeat`` runs per engine; per 3x3 layer the
patsparse kernel time (the compiled model's own kernel), the blocked dense kernel time and
the PyTorch conv time, each timed inside its engine's whole-model runs (the engines take
turns, one run each), the FLOP reduction and efficiency = speed-up / FLOP reduction. The
PyTorch conv is also timed alone, called again and again on its input (warm caches:
``efficiency_vs_alone``). Also compile and tuning time, weight storage and peak memory (each
engine in a fresh process). See BENCHMARKS.md for the figures.

With ``tracker``/``key`` (and ``target="arm64"``) the engines run on a device behind a TVM
RPC tracker: each is uploaded and timed by the device's runtime (``threads`` sets its pool),
its output checked against PyTorch, and the speed-ups are against TVM dense on the blocked
kernel, since PyTorch does not run there. Tuning (``trials``) measures on the device too. The
per-layer table and peak memory are host measurements and are skipped.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from patsparse.core.errors import PatsparseError, RemoteError
from patsparse.models import MODEL_NAMES, build_model, default_input_shape

#: the papers' compression rates per model family (3x3 layers)
PAPER_RATES = {"vgg16": 12.0, "resnet18": 8.0, "resnet50": 5.8}


def paper_rate(model: str) -> float:
    family = model.split("-")[0]
    return PAPER_RATES.get(family, 8.0)


@dataclass(frozen=True)
class BenchConfig:
    """What to measure. ``compression`` defaults to the papers' rate for the model."""

    model: str
    scheme: str = "block-pattern"
    compression: float | None = None
    block_size: int | None = None
    #: how 1x1 convs and linear layers are pruned: "block" (at the same rate) or "dense"
    others: str = "block"
    trials: int = 0
    logs_root: str | None = "tuning_logs"
    repeat: int = 15
    threads: int | None = None
    layers: bool = True
    tvm_dense: bool = True
    memory: bool = True
    seed: int = 0
    #: "wall" (default) or "cpu" (process CPU time; for a busy machine, with threads=1)
    clock: str = "wall"
    #: after tuning, drop the logs' workloads that are no task of this benchmark any more
    prune_logs: bool = False
    #: where the compiled engines run: "host", or "arm64" on a device behind an RPC tracker
    target: str = "host"
    #: ``HOST:PORT`` of the RPC tracker and the device's key (both, or neither)
    tracker: str | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if self.model not in MODEL_NAMES:
            raise PatsparseError(
                f"unknown model {self.model!r}; bench models: {', '.join(MODEL_NAMES)}"
            )
        if self.others not in ("block", "dense"):
            raise PatsparseError(f"others must be 'block' or 'dense', got {self.others!r}")
        if self.compression is not None and self.compression < 1:
            raise PatsparseError(f"compression must be >= 1 (e.g. 8), got {self.compression}")
        if self.repeat < 3:
            raise PatsparseError(
                f"repeat must be >= 3 for a median and a spread, got {self.repeat}"
            )
        if self.clock not in CLOCKS:
            raise PatsparseError(f"clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")
        if self.trials < 0:
            raise PatsparseError(f"trials must be >= 0, got {self.trials}")
        if self.prune_logs and self.logs_root is None:
            raise PatsparseError("prune_logs needs tuning logs: give logs_root (not --no-logs)")
        self._check_device()

    def _check_device(self) -> None:
        from tvm_ext.targets import PRESET_NAMES as TARGETS

        if self.target not in TARGETS:
            raise PatsparseError(f"unknown target {self.target!r}; use one of {', '.join(TARGETS)}")
        if self.target == "adreno":
            raise PatsparseError(
                "bench runs whole models, and whole GPU models need TVM's OpenCL runtime on "
                "the device (a phone's RPC app), which remote benchmarking does not drive yet: "
                "bench on --target arm64 or host; tune adreno kernels with 'patsparse tune'"
            )
        if (self.tracker is None) != (self.key is None):
            raise PatsparseError(
                "a remote benchmark needs both --tracker HOST:PORT and --key KEY (list the "
                "keys with 'patsparse rpc query --tracker HOST:PORT')"
            )
        if self.target != "host" and self.tracker is None:
            raise PatsparseError(
                f"{self.target} code cannot run on this machine: pass --tracker HOST:PORT and "
                f"--key KEY of a device ('patsparse devices up {self.target}' starts an "
                "emulated one)"
            )
        if self.remote and self.clock != "wall":
            raise PatsparseError(
                "--clock cpu times this machine's process: a remote device is timed by its "
                "own runtime (wall clock); leave --clock out"
            )

    @property
    def remote(self) -> bool:
        """The engines run on a device behind an RPC tracker (PyTorch is not run there)."""
        return self.tracker is not None

    @property
    def block(self) -> int:
        """Filters per block: ``block_size``, or the target's fp32 vector width."""
        from patsparse.schemes.hardware import default_block_size

        return self.block_size or default_block_size(self.target)

    @property
    def rate(self) -> float:
        return self.compression if self.compression is not None else paper_rate(self.model)


# -- pruning ---------------------------------------------------------------------------------


def prune_for_bench(model: nn.Module, cfg: BenchConfig) -> nn.Module:
    """A pruned copy: 3x3 convs with ``cfg.scheme``, other convs / linear layers block-pruned
    (or dense). The first conv (the stem) stays dense, as in the papers."""
    from patsparse.cli import _scheme_from_args
    from patsparse.pruning.pruners import MagnitudePruner
    from patsparse.schemes import BlockScheme, PruningPlan

    scheme = _scheme_from_args(cfg.scheme, cfg.rate, "designed-8", cfg.block)
    fallback = (
        BlockScheme(density=1.0 / cfg.rate, block_rows=cfg.block) if cfg.others == "block" else None
    )
    plan = PruningPlan(default=scheme, fallback=fallback, skip_last_linear=False)
    pruned = copy.deepcopy(model)
    pruner = MagnitudePruner(plan)
    pruner.prepare(pruned)
    pruner.step()
    pruner.squash_mask()
    return pruned.eval()


def _weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]


@contextlib.contextmanager
def _layer_hooks(
    model: nn.Module,
    post: Callable[[str, nn.Module, tuple[torch.Tensor, ...], Any], None],
    pre: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """For the duration (gradients off): ``pre(name)`` before and ``post(name, module,
    inputs, output)`` after every conv and linear layer's forward."""
    hooks = []
    for name, mod in _weight_layers(model):
        if pre is not None:
            hooks.append(mod.register_forward_pre_hook(lambda _m, _i, _n=name: pre(_n)))
        hooks.append(mod.register_forward_hook(lambda m, i, o, _n=name: post(_n, m, i, o)))
    try:
        with torch.no_grad():
            yield
    finally:
        for h in hooks:
            h.remove()


def layer_calls(
    model: nn.Module, x: torch.Tensor
) -> list[tuple[str, nn.Module, torch.Tensor, tuple[int, ...]]]:
    """Convs and linear layers in execution order with the input each one saw and its output
    shape (the order the compiled model calls their kernels in)."""
    seen: list[tuple[str, nn.Module, torch.Tensor, tuple[int, ...]]] = []

    def post(name: str, m: nn.Module, inp: tuple[torch.Tensor, ...], out: Any) -> None:
        seen.append((name, m, inp[0].detach().clone(), tuple(out.shape)))

    with _layer_hooks(model, post):
        model(x)
    return seen


def macs(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(dense, kept) multiply-adds of the weight layers (kept: non-zero weights only)."""
    dense = kept = 0
    out_pixels: dict[nn.Module, int] = {}

    def post(_n: str, m: nn.Module, _i: Any, out: torch.Tensor) -> None:
        out_pixels[m] = int(out.shape[-1] * out.shape[-2]) if out.dim() == 4 else 1

    with _layer_hooks(model, post):
        model(x)
    for _, mod in _weight_layers(model):
        w: torch.Tensor = mod.weight  # type: ignore[assignment]
        dense += int(w.numel()) * out_pixels.get(mod, 0)
        kept += int(torch.count_nonzero(w)) * out_pixels.get(mod, 0)
    return dense, kept


# -- timing ----------------------------------------------------------------------------------


#: ``wall``: elapsed time; ``cpu``: this process's CPU time, which a busy shared machine does
#: not inflate by descheduling us (use it with one thread: with more, threads that spin while
#: waiting count too)
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def timed(fn: Callable[[], object], repeat: int, clock: str = "wall") -> list[float]:
    """Milliseconds of ``repeat`` calls after two warm-up calls."""
    now = CLOCKS[clock]
    fn()
    fn()
    times = []
    for _ in range(repeat):
        start = now()
        fn()
        times.append((now() - start) * 1e3)
    return times


def summary_ms(times: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(times), 4),
        "min": round(min(times), 4),
        "max": round(max(times), 4),
    }


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
    if symbol.startswith("pattern_sparse_conv2d"):
        return 9
    if len(shapes) > 1 and len(shapes[1]) == 5:
        return shapes[1][3]
    if len(shapes) > 1 and len(shapes[1]) == 4:
        return shapes[1][2] * shapes[1][3]
    return 0


def conv_kernel_times(
    compiled: Any, x: np.ndarray, repeat: int, clock: str = "wall"
) -> list[KernelCall]:
    """Every conv kernel call of a compiled model, in call order, timed inside the model run
    (a VM instrument notes the time before and after every call). Conv kernels are the
    functions whose name has "conv2d"."""
    from tvm_ext._compat import relax, tensor

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
        now = CLOCKS[clock]()
        if "conv2d" not in symbol:
            return 0
        if before:
            shapes = [tuple(int(d) for d in a.shape) for a in args if hasattr(a, "shape")]
            ins, outs = logical.get(
                symbol, (shapes[0] if shapes else (), shapes[-1] if shapes else ())
            )
            started[symbol] = (CLOCKS[clock](), ins, outs, _kernel_taps(symbol, shapes))
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


def torch_layer_times(
    model: nn.Module, x: torch.Tensor, repeat: int, clock: str = "wall"
) -> dict[str, list[float]]:
    """ms of every conv and linear layer of ``model`` in each of ``repeat`` whole-model runs
    (after one warm-up run), by module name: timed inside the model run, as
    :func:`conv_kernel_times` times the compiled kernels, so each layer meets the caches the
    layers before it left (weights that no longer fit in cache are read from memory)."""
    now = CLOCKS[clock]
    times: dict[str, list[float]] = {}
    started: dict[str, float] = {}

    def pre(name: str) -> None:
        started[name] = now()

    def post(name: str, _m: nn.Module, _i: Any, _o: Any) -> None:
        end = now()
        times.setdefault(name, []).append((end - started.pop(name)) * 1e3)

    with _layer_hooks(model, post, pre):
        model(x)  # warm-up
        times.clear()
        for _ in range(repeat):
            model(x)
    return times


def _more_runs(kernels: list[KernelCall] | None, more: list[KernelCall]) -> list[KernelCall]:
    """``kernels`` with the times of ``more`` (the same calls, timed again) appended."""
    if kernels is None:
        return more
    if [k.function for k in kernels] != [k.function for k in more]:
        raise PatsparseError("conv kernel calls differ between runs; cannot time per layer")
    return [replace(k, times=k.times + m.times) for k, m in zip(kernels, more, strict=True)]


# -- peak memory -----------------------------------------------------------------------------

_MEMORY_SCRIPT = r"""
import json, resource, sys, numpy as np


def peak_mb():
    # VmHWM is this process's own peak (ru_maxrss survives execve: it starts at the parent's)
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


kind, path, shape, threads = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
x = np.random.default_rng(0).standard_normal(shape).astype("float32")
if kind == "torch":
    import torch
    torch.set_num_threads(threads)
    base = peak_mb()
    model = torch.load(path, weights_only=False).eval()
    with torch.no_grad():
        model(torch.from_numpy(x))
else:
    import tvm
    from tvm import relax
    base = peak_mb()
    vm = relax.VirtualMachine(tvm.runtime.load_module(path), tvm.cpu())
    vm["main"](tvm.runtime.tensor(x, tvm.cpu()))
print(json.dumps({"peak_mb": peak_mb(), "model_mb": peak_mb() - base}))
"""


def peak_memory(kind: str, path: Path, shape: tuple[int, ...], threads: int) -> dict[str, float]:
    """Peak RSS of a fresh process that loads and runs the model once (``model_mb``: above
    the process after its imports)."""
    env = dict(os.environ, TVM_NUM_THREADS=str(threads))
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _MEMORY_SCRIPT,
            kind,
            str(path),
            json.dumps(list(shape)),
            str(threads),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    if out.returncode != 0:
        raise PatsparseError(f"memory probe ({kind}) failed: {out.stderr.strip()[-400:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return {k: round(float(v), 1) for k, v in data.items()}


# -- the benchmark ---------------------------------------------------------------------------


def _progress(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def run_bench(cfg: BenchConfig, *, log: Callable[[str], None] = _progress) -> dict[str, Any]:
    """Measure one model (see the module docstring); returns a JSON-ready dict."""
    from patsparse.compiler.compile import compile_torch, import_torch
    from tvm_ext._compat import host_target, set_threads, tensor, tvm
    from tvm_ext.pipeline import lower_for_tuning
    from tvm_ext.tuning.logs import RECORD_FILE, log_dir, other_target_logs, prune_logs
    from tvm_ext.tuning.tune import tune_module

    builder = runner = None
    if cfg.remote:
        from patsparse.compiler.remote import remote_measure
        from patsparse.compiler.targets import resolve_target

        target = resolve_target(cfg.target)
        # the device must serve the key now (a clear error before any compiling)
        builder, runner = remote_measure(target, cfg.tracker, cfg.key)
        threads = 0  # the device's (remote engines report what its runtime uses)
    else:
        threads = set_threads(cfg.threads)
        torch.set_num_threads(threads)
        target = host_target(num_cores=threads)
    torch.manual_seed(cfg.seed)
    dense = build_model(cfg.model).eval()
    pruned = prune_for_bench(dense, cfg)
    x = torch.randn(default_input_shape(cfg.model), generator=torch.Generator().manual_seed(0))
    xn = x.numpy()
    dense_macs, kept_macs = macs(pruned, x)
    result: dict[str, Any] = {
        "model": cfg.model,
        "config": asdict(cfg) | {"compression": cfg.rate},
        "threads": threads or cfg.threads,
        # the CPU model (host: e.g. znver4), else the triple (arm64: aarch64-linux-gnu)
        "target": str(target.export().get("mcpu") or target.export().get("mtriple", "")),
        "input_shape": list(x.shape),
        "flop_reduction": round(dense_macs / max(kept_macs, 1), 3),
        "gflops_dense": round(2 * dense_macs / 1e9, 3),
    }
    logs = log_dir(cfg.model, target, cfg.logs_root) if cfg.logs_root else None
    tuning: dict[str, Any] = {}
    if cfg.trials and logs is not None:
        engines_to_tune: list[tuple[str, nn.Module, Any]] = [("patsparse", pruned, None)]
        if cfg.tvm_dense:
            engines_to_tune.append(("tvm_dense_stock", dense, False))  # TVM's own lowering
        for name, model, blocked in engines_to_tune:
            log(f"tuning {name} tasks ({cfg.trials} trials per task) into {logs}")
            rep = tune_module(
                lower_for_tuning(import_torch(model, x), target, blocked=blocked),
                target,
                logs,
                trials_per_task=cfg.trials,
                builder=builder,
                runner=runner,
            )
            tuning[name] = {
                "seconds": round(rep.seconds, 1),
                "tasks": rep.tasks,
                "tuned": len(rep.tuned),
                "trials": rep.trials,
                # hand schedules measured as candidates (new tasks, or the hand schedule changed)
                "hand_schedules": rep.defaults,
            }
    have_logs = logs is not None and (logs / RECORD_FILE).is_file()
    if cfg.prune_logs and logs is not None and have_logs:
        log(f"pruning {logs} to this benchmark's tasks")
        # both engines' tasks (the stock dense ones too, timed or not): the logs serve both
        tasks = [
            lower_for_tuning(import_torch(pruned, x), target),
            lower_for_tuning(import_torch(dense, x), target, blocked=False),
        ]
        tuning["pruned"] = asdict(prune_logs(logs, tasks, target))
    result["tuning"] = tuning
    result["logs"] = str(logs) if have_logs else None
    if logs is not None and not have_logs:
        others = other_target_logs(logs)
        result["logs_for_other_targets"] = others
        if others:
            log(
                f"no tuning logs for this target in {logs}; {cfg.model} has logs for "
                f"{', '.join(others)} only (logs never cross targets): default schedules. "
                "Tune for this one with --trials N"
            )
    use = logs if have_logs else None

    log("compiling patsparse (pruned model)")
    sparse = compile_torch(pruned, x, target=target, logs=use)
    with torch.no_grad():
        ref = pruned(x).numpy()
    if not cfg.remote:
        result["max_abs_error_vs_pytorch"] = float(np.abs(sparse(xn) - ref).max())
    engines: dict[str, Any] = {"patsparse": sparse}
    compile_s = {"patsparse": round(sparse.compile_seconds, 1)}
    if cfg.tvm_dense:
        log("compiling TVM dense, blocked kernel")
        engines["tvm_dense_blocked"] = compile_torch(dense, x, target=target, logs=use)
        compile_s["tvm_dense_blocked"] = round(engines["tvm_dense_blocked"].compile_seconds, 1)
        if have_logs and _stock_is_tuned(dense, x, target, logs):
            log("compiling TVM dense, stock lowering with tuning records")
            stock = compile_torch(dense, x, target=target, logs=use, blocked=False)
            engines["tvm_dense_stock_tuned"] = stock
            compile_s["tvm_dense_stock_tuned"] = round(stock.compile_seconds, 1)
    result["compile_seconds"] = compile_s
    result["storage_bytes"] = _storage(dense, sparse)

    if cfg.remote:
        log(f"end to end on {cfg.key!r} via {cfg.tracker}, {cfg.repeat} runs per engine")
        result.update(_remote_end_to_end(cfg, engines, xn, ref, result["flop_reduction"]))
        # per-layer kernel times and peak memory are read off this machine's process
        result["host_only_skipped"] = ["per-layer table", "peak memory"]
        return result

    log(f"end to end, {cfg.repeat} runs per engine")
    e2e: dict[str, Any] = {}
    with torch.no_grad():
        e2e["pytorch_dense"] = summary_ms(timed(lambda: dense(x), cfg.repeat, cfg.clock))
    dev = tvm.cpu()
    xt = tensor(xn, dev)
    for name, comp in engines.items():
        e2e[name] = summary_ms(timed(_runner(comp.vm["main"], xt), cfg.repeat, cfg.clock))
    torch_ms = e2e["pytorch_dense"]["median"]
    for name in list(e2e):
        e2e[name]["speedup_vs_pytorch"] = round(torch_ms / e2e[name]["median"], 3)
    e2e["patsparse"]["efficiency"] = round(
        e2e["patsparse"]["speedup_vs_pytorch"] / result["flop_reduction"], 3
    )
    result["end_to_end_ms"] = e2e

    if cfg.layers:
        log("per-layer kernel times")
        result["layers"] = _layer_table(cfg, dense, pruned, x, engines)
    if cfg.memory:
        log("peak memory, each engine in a fresh process")
        result["peak_memory_mb"] = _memory(dense, engines, tuple(x.shape), threads)
    result["max_rss_mb_this_process"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    return result


def _remote_end_to_end(
    cfg: BenchConfig,
    engines: dict[str, Any],
    xn: np.ndarray,
    ref: np.ndarray,
    flop_reduction: float,
) -> dict[str, Any]:
    """Each engine uploaded to the device and timed there by its runtime; speed-ups are
    against TVM dense on the blocked kernel (PyTorch does not run on the device)."""
    from tvm_ext.rpc.remote import RemoteModel
    from tvm_ext.rpc.session import TrackerAddress

    assert cfg.tracker is not None and cfg.key is not None
    address = TrackerAddress.parse(cfg.tracker)
    e2e: dict[str, Any] = {}
    out: dict[str, Any] = {}
    for name, comp in engines.items():
        try:
            with RemoteModel(comp, address, cfg.key, threads=cfg.threads) as rm:
                if name == "patsparse":
                    out["max_abs_error_vs_pytorch"] = float(np.abs(rm(xn) - ref).max())
                    out["threads"] = rm.threads
                t = rm.time(xn, number=1, repeat=cfg.repeat)
        except RemoteError:
            raise
        except Exception as exc:  # TVM's RPC errors: name the engine and where to look
            raise RemoteError(
                f"running {name} on {cfg.key!r} via {cfg.tracker} failed "
                f"({type(exc).__name__}: {exc}); check the device's RPC server log "
                "('patsparse devices up' prints where an emulated device logs)"
            ) from exc
        e2e[name] = summary_ms([r * 1e3 for r in t.runs])
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


def _stock_is_tuned(dense: nn.Module, x: torch.Tensor, target: Any, logs: Any) -> bool:
    """True if the tuning logs hold a record for every conv / matmul task of TVM's stock
    lowering of the dense model (untuned, those run as plain loops: not worth timing)."""
    from patsparse.compiler.compile import import_torch
    from tvm_ext._compat import meta_schedule as ms
    from tvm_ext.pipeline import lower_for_tuning

    mod = lower_for_tuning(import_torch(dense, x), target, blocked=False)
    db = ms.database.JSONDatabase(work_dir=str(logs))
    tasks = ms.relax_integration.extract_tasks(mod, target)
    heavy = [t for t in tasks if "conv2d" in t.task_name or "matmul" in t.task_name]
    return bool(heavy) and all(db.has_workload(t.dispatched[0]) for t in heavy)


def _runner(fn: Callable[..., object], *args: Any) -> Callable[[], object]:
    return lambda: fn(*args)


def _storage(dense: nn.Module, sparse: Any) -> dict[str, int]:
    weights = 0
    for _, m in _weight_layers(dense):
        weights += int(m.weight.numel()) * 4  # type: ignore[operator]
    ours = 0
    taken = 0
    for rec in [*sparse.records, *sparse.blocked_records]:
        if rec.rewritten:
            ours += int(rec.storage_bytes.get("ours", 0))
            taken += int(rec.storage_bytes.get("dense", 0))
    return {"dense_weights": weights, "patsparse_weights": weights - taken + ours}


def _layer_table(
    cfg: BenchConfig, dense: nn.Module, pruned: nn.Module, x: torch.Tensor, engines: dict[str, Any]
) -> list[dict[str, Any]]:
    calls = layer_calls(dense, x)
    pruned_mods = dict(pruned.named_modules())
    # Every layer is timed inside whole-model runs, PyTorch's as the compiled kernels, one
    # run of each engine in turn (a slow spell of the host hits all of them alike). Each
    # timed run follows an untimed run of its own engine, as in steady inference, not the
    # other engines' runs: the warm-up per round is deliberate.
    torch_in_model: dict[str, list[float]] = {}
    timed_kernels: dict[str, list[KernelCall] | None] = dict.fromkeys(engines)
    for _ in range(cfg.repeat):
        for layer, ms in torch_layer_times(dense, x, 1, cfg.clock).items():
            torch_in_model.setdefault(layer, []).extend(ms)
        for engine, comp in engines.items():
            timed_kernels[engine] = _more_runs(
                timed_kernels[engine], conv_kernel_times(comp, x.numpy(), 1, cfg.clock)
            )
    # Each conv's kernel call is found by its input and output shapes, identical layers in
    # call order (the VM may order independent calls differently from PyTorch).
    per_engine = {name: list(kernels or []) for name, kernels in timed_kernels.items()}
    rows = []
    conv_index = -1
    for name, conv, inp, out_shape in calls:
        if not isinstance(conv, nn.Conv2d):
            continue
        conv_index += 1
        key = (tuple(inp.shape), out_shape, int(conv.kernel_size[0]) * int(conv.kernel_size[1]))
        found = {}
        for engine, kernels in per_engine.items():
            for k, call in enumerate(kernels):
                if (call.in_shape, call.out_shape, call.taps) == key:
                    found[engine] = kernels.pop(k)
                    break
        if tuple(conv.kernel_size) != (3, 3):
            continue
        weight: torch.Tensor = pruned_mods[name].weight
        oh, ow = out_shape[2:]
        reduction = float(conv.weight.numel()) / max(int(torch.count_nonzero(weight)), 1)
        torch_ms = summary_ms(torch_in_model[name])
        with torch.no_grad():
            # the conv alone, called again and again on its input: warm caches
            alone_ms = summary_ms(timed(_runner(conv, inp), cfg.repeat, cfg.clock))
        row: dict[str, Any] = {
            "index": conv_index,
            "layer": name,
            "shape": f"{conv.in_channels}->{conv.out_channels} @ {inp.shape[2]}x{inp.shape[3]}"
            + (f" /{conv.stride[0]}" if conv.stride[0] > 1 else ""),
            "flop_reduction": round(reduction, 3),
            "pytorch_dense_ms": torch_ms,
            "pytorch_dense_alone_ms": alone_ms,
            "pytorch_gflops": round(
                2 * conv.weight.numel() * oh * ow / torch_ms["median"] / 1e6, 1
            ),
        }
        for engine, call in found.items():
            row[f"{engine}_ms"] = summary_ms(call.times)
            row[f"{engine}_kernel"] = call.function
        if "patsparse_ms" in row:
            sparse_ms = row["patsparse_ms"]["median"]
            speed = torch_ms["median"] / sparse_ms
            row["speedup_vs_pytorch"] = round(speed, 3)
            row["efficiency"] = round(speed / reduction, 3)
            row["efficiency_vs_alone"] = round(alone_ms["median"] / sparse_ms / reduction, 3)
            for other in ("tvm_dense_blocked", "tvm_dense_stock_tuned"):
                if f"{other}_ms" in row:
                    row[f"speedup_vs_{other}"] = round(row[f"{other}_ms"]["median"] / sparse_ms, 3)
        rows.append(row)
    return rows


def _memory(
    dense: nn.Module, engines: dict[str, Any], shape: tuple[int, ...], threads: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="patsparse-bench-") as tmp:
        path = Path(tmp) / "dense.pt"
        torch.save(dense, path)
        out["pytorch_dense"] = peak_memory("torch", path, shape, threads)
        for name, comp in engines.items():
            lib = comp.export_library(Path(tmp) / f"{name}.so")
            out[name] = peak_memory("tvm", lib, shape, threads)
    return out


# -- text output -----------------------------------------------------------------------------


def _ms(d: dict[str, float] | None) -> str:
    if not d:
        return "-"
    return f"{d['median']:.3f} ({d['min']:.3f}-{d['max']:.3f})"


def format_bench(res: dict[str, Any]) -> str:
    cfg = res["config"]
    baseline = res.get("baseline", "pytorch_dense")
    where = ""
    if res.get("device"):
        dev = res["device"]
        where = f" on {dev['target']} device {dev['key']!r} via {dev['tracker']},"
    threads = res["threads"] if res["threads"] is not None else "the device's default"
    lines = [
        f"{res['model']}  {cfg['scheme']} {cfg['compression']}x (1x1/linear: {cfg['others']}),"
        f" FLOP reduction {res['flop_reduction']}x,{where} {threads} threads, batch 1 fp32,"
        f" {cfg['clock']} clock,"
        f" logs: {res['logs'] or 'none (default schedules)'}"
        + (
            f" (logs exist for {', '.join(res['logs_for_other_targets'])})"
            if res.get("logs_for_other_targets")
            else ""
        ),
        f"{'engine':<24}{'ms median (min-max)':<30}{'vs ' + baseline:>24}",
    ]
    for name, d in res["end_to_end_ms"].items():
        speed = d.get(f"speedup_vs_{baseline}")
        lines.append(f"{name:<24}{_ms(d):<30}" + (f"{speed:>23.2f}x" if speed else f"{'-':>24}"))
    lines.append(
        "efficiency (speed-up / FLOP reduction): "
        f"{res['end_to_end_ms']['patsparse'].get('efficiency', '-')}"
        f"; max abs error vs PyTorch (pruned) {res['max_abs_error_vs_pytorch']:.1e}"
    )
    if res.get("host_only_skipped"):
        lines.append(f"not measured on a device (host only): {', '.join(res['host_only_skipped'])}")
    if res.get("layers"):
        lines.append(
            f"{'3x3 layer':<22}{'FLOPx':>6} {'PyTorch dense':<26}{'patsparse':<26}"
            f"{'TVM dense blocked':<26}{'speed-up':>9}{'eff':>6}{'eff vs PyTorch alone':>22}"
        )
        for r in res["layers"]:
            lines.append(
                f"{r['shape']:<22}{r['flop_reduction']:>6.2f} {_ms(r['pytorch_dense_ms']):<26}"
                f"{_ms(r.get('patsparse_ms')):<26}{_ms(r.get('tvm_dense_blocked_ms')):<26}"
                f"{r.get('speedup_vs_pytorch', 0):>8.2f}x{r.get('efficiency', 0):>6.2f}"
                f"{r.get('efficiency_vs_alone', 0):>22.2f}"
            )
        lines.append(
            "per layer: every engine timed inside its whole-model runs; 'eff vs PyTorch alone':"
            " against the PyTorch conv called on its own (warm caches)"
        )
    st = res["storage_bytes"]
    lines.append(
        f"weights: dense {st['dense_weights'] / 1e6:.2f} MB, patsparse "
        f"{st['patsparse_weights'] / 1e6:.2f} MB; compile s {res['compile_seconds']}; "
        f"tuning {res['tuning'] or 'none'}"
    )
    if res.get("peak_memory_mb"):
        mem = ", ".join(f"{k} {v['model_mb']:.0f} MB" for k, v in res["peak_memory_mb"].items())
        lines.append(f"peak memory above imports: {mem}")
    return "\n".join(lines)
