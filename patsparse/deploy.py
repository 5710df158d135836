"""Bridge to the TVM side: compile a pruned model with tvm_ext and report per layer.

Used by ``patsparse compile`` and ``patsparse demo``. tvm_ext is imported lazily so the
PyTorch half of patsparse works without loading TVM.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from patsparse.core.errors import PatsparseError
from patsparse.models import MODEL_NAMES, build_model, default_input_shape
from patsparse.pruning.pruners import MagnitudePruner
from patsparse.schemes.base import Scheme
from patsparse.schemes.plan import PruningPlan

TARGETS = ("host", "arm64", "adreno")


@dataclass
class CompileResult:
    compiled: Any  # tvm_ext.pipeline.CompiledModel
    summary: dict[str, Any]


def load_model_spec(
    spec: str, *, scheme: Scheme | None = None, seed: int = 0
) -> tuple[nn.Module, str, str]:
    """A checkpoint path, or a zoo name pruned one-shot with ``scheme`` (random weights).

    Returns (model, architecture name, where it came from).
    """
    path = Path(spec)
    if path.suffix in (".pt", ".pth") or path.exists():
        from patsparse.export import load_pruned

        loaded = load_pruned(path)
        if loaded.arch is None:
            raise PatsparseError(f"{spec}: checkpoint of a model outside the zoo")
        return loaded.model, loaded.arch, f"checkpoint {spec}"
    if spec not in MODEL_NAMES:
        raise PatsparseError(
            f"{spec!r} is neither a checkpoint file nor a zoo model; zoo models: "
            f"{', '.join(MODEL_NAMES)}"
        )
    torch.manual_seed(seed)
    model = build_model(spec).eval()
    if scheme is not None:
        pruner = MagnitudePruner(PruningPlan(default=scheme))
        pruner.prepare(model)
        pruner.step()
        pruner.squash_mask()
    return (
        model.eval(),
        spec,
        f"zoo {spec} with random weights, {scheme.describe() if scheme else 'dense'}",
    )


def resolve_target(target: str, **overrides: Any) -> Any:
    """A TVM target for a preset name (``host``, ``arm64``, ``adreno``; see
    :mod:`tvm_ext.targets`), with overrides such as ``mcpu``, ``mtriple``, ``cc``."""
    if target not in TARGETS:
        raise PatsparseError(
            f"target {target!r} is not supported yet; use one of {', '.join(TARGETS)}"
        )
    from tvm_ext.targets import make_target

    return make_target(target, **{k: v for k, v in overrides.items() if v is not None})


def logs_for(arch: str, target: str, root: str | Path = "tuning_logs") -> Path:
    """``tuning_logs/<model family>/<target key>``: where ``tune`` writes and ``compile`` reads."""
    from tvm_ext.tuning.tune import log_dir

    return log_dir(arch, resolve_target(target), root)


def tune_model(
    model: nn.Module,
    arch: str,
    *,
    target: str = "host",
    trials_per_task: int,
    logs_root: str | Path = "tuning_logs",
    tracker: str | None = None,
    key: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Tune every task of the (pruned) model into ``tuning_logs/<arch>/<target key>``.

    ``tracker`` (``HOST:PORT``) and ``key``: measure on that device over RPC (required for
    ``arm64`` / ``adreno``: their code cannot run here)."""
    from tvm_ext.pipeline import import_torch
    from tvm_ext.tuning.tune import lower_for_tuning, tune_module

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


def remote_measure(target: Any, tracker: str | None, key: str | None) -> tuple[Any, Any]:
    """(builder, runner) measuring on the device ``key`` at ``tracker``; (None, None) for
    this machine. Remote targets without a tracker are an error naming the fix."""
    from tvm_ext.targets import is_cross

    if not tracker:
        if is_cross(target):
            raise PatsparseError(
                f"{target.kind.name} code cannot run on this machine: pass --tracker HOST:PORT "
                "and --key KEY of a phone or an emulated device ('patsparse devices up arm64 "
                "--tracker HOST:PORT'; list keys with 'patsparse rpc query')"
            )
        return None, None
    if not key:
        raise PatsparseError("--tracker needs --key (list keys with 'patsparse rpc query')")
    from tvm_ext.rpc.runner import measure_on_device
    from tvm_ext.rpc.session import TrackerAddress, wait_for_key

    address = TrackerAddress.parse(tracker)
    wait_for_key(address, key, timeout=10.0)  # clear error now rather than failed trials
    return measure_on_device(target, address, key)


def compile_model(
    model: nn.Module,
    arch: str,
    *,
    target: str = "host",
    verify: bool = True,
    export: str | None = None,
    logs: str | Path | None = None,
    tracker: str | None = None,
    key: str | None = None,
) -> CompileResult:
    """Compile with the pattern-sparse pipeline; report rewrites, storage and errors.

    Models for another device (``arm64``) run there when ``tracker``/``key`` name one (the
    error vs PyTorch and the latency are then measured remotely); otherwise they are only
    compiled (and exported)."""
    tgt = resolve_target(target)
    from tvm_ext.pipeline import compile_torch
    from tvm_ext.targets import is_cross, is_gpu

    if tracker and is_gpu(tgt):
        raise PatsparseError(
            "whole GPU models run through TVM's OpenCL runtime (a phone's RPC app), which the "
            "emulated Adreno device does not have: export with --out and run it on the phone; "
            "the emulated device runs single kernels (tvm_ext.rpc.opencl) and tuning"
        )

    x = torch.randn(default_input_shape(arch), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    start = time.perf_counter()
    if logs is not None and not Path(logs).is_dir():
        raise PatsparseError(
            f"tuning logs {str(logs)!r} do not exist; run 'patsparse tune {arch} --target "
            f"{target}' first, or leave --logs out"
        )
    compiled = compile_torch(model, x, verify=verify, target=tgt, logs=logs)
    seconds = time.perf_counter() - start
    remote_ms = None
    if not is_cross(tgt):
        out = compiled(x.numpy())
    elif tracker and key:
        from tvm_ext.rpc.remote import RemoteModel
        from tvm_ext.rpc.session import TrackerAddress

        with RemoteModel(compiled, TrackerAddress.parse(tracker), key) as remote:
            out = remote(x.numpy())
            remote_ms = remote.time(x.numpy()).median * 1e3
    else:
        out = None
    layers = [r.to_dict() for r in compiled.records]
    storage = {"dense": 0, "csr": 0, "ours": 0}
    for r in compiled.records:
        for key in storage:
            storage[key] += int(r.storage_bytes.get(key, 0))
    summary: dict[str, Any] = {
        "model": arch,
        "target": target,
        "layers": layers,
        "rewritten": sum(r.rewritten for r in compiled.records),
        "convs": len(compiled.records),
        "compacted": [r.to_dict() for r in compiled.compact_records if r.rewritten],
        "blocked": [r.to_dict() for r in compiled.blocked_records if r.rewritten],
        "storage_bytes_rewritten_layers": storage,
        "max_abs_error_vs_pytorch": None if out is None else float(np.abs(out - ref).max()),
        "remote_latency_ms": remote_ms,
        "compile_seconds": round(seconds, 2),
        "logs": str(logs) if logs is not None else None,
    }
    if export:
        summary["library"] = str(compiled.export_library(export))
    return CompileResult(compiled, summary)


def format_compile(summary: dict[str, Any]) -> str:
    lines = [
        f"{'conv':<5}{'weight':<20}{'result':<10}{'kind':<8}{'fused':<34}"
        f"{'dense/CSR/ours bytes':>26}{'max err':>10}  reason"
    ]
    for r in summary["layers"]:
        sb = r["storage_bytes"]
        store = f"{sb['dense']}/{sb['csr']}/{sb['ours']}" if sb else "-"
        err = f"{r['max_abs_error']:.1e}" if r["max_abs_error"] is not None else "-"
        lines.append(
            f"{r['index']:<5}{'x'.join(map(str, r['weight_shape'])):<20}"
            f"{'rewritten' if r['rewritten'] else 'kept':<10}{r['kind'] or '-':<8}"
            f"{'+'.join(r['fused']) or '-':<34}{store:>26}{err:>10}  "
            f"{'' if r['rewritten'] else r['reason']}"
        )
    st = summary["storage_bytes_rewritten_layers"]
    lines.append(
        f"{summary['rewritten']}/{summary['convs']} convs rewritten, "
        f"{len(summary['compacted'])} structured convs compacted, {len(summary['blocked'])} "
        f"other convs on the blocked kernel; rewritten weights: dense "
        f"{st['dense']} B, CSR {st['csr']} B, ours {st['ours']} B; max abs error vs PyTorch "
        + (
            f"{summary['max_abs_error_vs_pytorch']:.2e}"
            if summary["max_abs_error_vs_pytorch"] is not None
            else "- (compiled for another device; --tracker/--key run arm64 models there)"
        )
        + f"; compile {summary['compile_seconds']} s"
    )
    if summary.get("remote_latency_ms") is not None:
        lines.append(f"remote latency (median): {summary['remote_latency_ms']:.3f} ms")
    return "\n".join(lines)


def compiled_accuracy(compiled: Any, loader: Any) -> float:
    """Top-1 accuracy (%) of a compiled model, one image at a time (batch 1, as compiled)."""
    correct = count = 0
    for x, y in loader:
        for i in range(len(y)):
            logits = compiled(x[i : i + 1].numpy())
            correct += int(int(np.argmax(logits)) == int(y[i]))
            count += 1
    return 100.0 * correct / max(count, 1)
