"""Compile a (pruned) PyTorch module with tvm_ext: torch.export, Relax import, our pipeline."""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from patsparse.compiler.targets import resolve_target
from patsparse.core.errors import PatsparseError, VerificationError
from patsparse.models import default_input_shape
from tvm_ext._compat import Target, from_exported_program, tvm
from tvm_ext.passes import PatternSparseConv2D
from tvm_ext.pipeline import CompiledModel, compile_module
from tvm_ext.rpc.remote import RemoteModel
from tvm_ext.rpc.session import TrackerAddress
from tvm_ext.targets import is_cross, is_gpu
from tvm_ext.verify import ModelCheck, check_outputs

#: ``ExportedProgram.run_decompositions`` deep-copies the module call graph
#: (torch/export/exported_program.py, ``_get_updated_module_call_graph``); copying its pytree
#: leaves re-creates them through the deprecated ``LeafSpec`` constructor (torch 2.13), which
#: warns on every export whatever the caller does.
_LEAFSPEC_DEPRECATION = r"`isinstance\(treespec, LeafSpec\)` is deprecated"


def _decompose(exported: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """Core ATen decompositions, as ``from_exported_program`` runs them, except ``aten.pad``.

    Torch decomposes a reflect/replicate/circular pad into ``arange``/``abs``/``index``, which
    the Relax frontend imports as ``relax.take(mode="fast")`` gathers (TOPI logs a "Fast mode
    segfaults" warning each time one is legalised). Kept whole, the pad imports as
    ``relax.nn.pad`` and lowers with in-bounds index arithmetic (``topi.nn.reflect_pad``).
    """
    table = torch.export.default_decompositions()
    table.pop(torch.ops.aten.pad.default, None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_LEAFSPEC_DEPRECATION, category=FutureWarning)
        return exported.run_decompositions(table)


def import_torch(model: nn.Module, example: np.ndarray | torch.Tensor) -> tvm.IRModule:
    """``torch.export`` + Relax import with the weights as constants."""
    x = example if isinstance(example, torch.Tensor) else torch.from_numpy(np.asarray(example))
    exported = _decompose(torch.export.export(model.eval(), (x,)))
    return from_exported_program(exported, keep_params_as_input=False, run_ep_decomposition=False)


def compile_torch(
    model: nn.Module,
    example: np.ndarray | torch.Tensor,
    *,
    target: Target | None = None,
    sparse: PatternSparseConv2D | None = None,
    verify: bool = True,
    logs: str | Path | None = None,
    blocked: bool = True,
    chain: bool = True,
    depthwise: bool = True,
) -> CompiledModel:
    """Import a (pruned) ``torch.nn.Module``, rewrite its pattern-sparse convs, compile
    (:func:`tvm_ext.pipeline.compile_module`, whose options these are).

    ``verify`` (default): every rewritten layer is checked against the dense conv (a
    mismatching one stays dense; its record says so), then the final compiled module (chained
    layouts, fused epilogues, applied tuning logs) runs on a random input of the example's
    shape against ``model`` (:func:`verify_compiled`; ``compiled.verification``). A mismatch
    raises :class:`~patsparse.core.errors.VerificationError`. Models compiled for another
    device are checked per layer only (on the host). Cost: ResNet-18-cifar (pattern 8x,
    host, 2 cores) compiles in 30 s without and 49 s with, almost all of it the per-layer
    builds; the end-to-end run is one inference. ``verify=False`` skips both.
    """
    options: dict[str, Any] = {
        "target": target,
        "sparse": sparse,
        "logs": logs,
        "blocked": blocked,
        "chain": chain,
        "depthwise": depthwise,
    }
    compiled = compile_module(import_torch(model, example), verify=verify, **options)
    if verify and not is_cross(compiled.target):
        compiled.verification = check = verify_compiled(compiled, model, example)
        if not check.passed:
            raise _mismatch(check, compiled, model, example, options)
    return compiled


def verify_compiled(
    compiled: CompiledModel, model: nn.Module, example: np.ndarray | torch.Tensor, *, seed: int = 0
) -> ModelCheck:
    """``compiled`` against ``model`` on a random normal input shaped like ``example``:
    every output's max abs error within :func:`tvm_ext.verify.output_bound`."""
    start = time.perf_counter()
    shape = tuple(example.shape)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = model.eval()(x)
    refs = [t.numpy() for t in (ref if isinstance(ref, (tuple, list)) else (ref,))]
    outputs = compiled.outputs(x.numpy())
    return check_outputs(outputs, refs, seconds=time.perf_counter() - start)


#: what ``compile_torch`` tries, in order, to name the part of the pipeline that a failed
#: end-to-end check comes from (only then: each is one more compile)
_NARROWING: tuple[tuple[str, dict[str, Any]], ...] = (
    ("without tuning logs (logs=None)", {"logs": None}),
    ("without chained layouts (chain=False)", {"chain": False}),
    (
        "with only the pattern kernels (blocked=False, depthwise=False, chain=False)",
        {"blocked": False, "depthwise": False, "chain": False},
    ),
)


def _mismatch(
    check: ModelCheck,
    compiled: CompiledModel,
    model: nn.Module,
    example: np.ndarray | torch.Tensor,
    options: dict[str, Any],
) -> VerificationError:
    """The error for a failed end-to-end check, with the compile options under which the
    model does match (if one of :data:`_NARROWING` does)."""
    worst = check.worst
    failed_layers = [
        r.index
        for r in [*compiled.records, *compiled.blocked_records]
        if r.reason.startswith("verification failed")
    ]
    works = None
    for label, change in _NARROWING:
        if all(options.get(k) == v for k, v in change.items()):
            continue  # already compiled that way
        try:
            trial = compile_module(
                import_torch(model, example), **{**options, **change, "verify": False}
            )
        except Exception:  # a variant that does not build names nothing
            continue
        if verify_compiled(trial, model, example).passed:
            works = (label, change)
            break
    if works is not None:
        where = f"it matches when compiled {works[0]}"
        fix = (
            f"compile with {', '.join(f'{k}={v}' for k, v in works[1].items())} and report "
            "this model to patsparse, or skip the check with verify=False (--no-verify)"
        )
    else:
        where = "it differs with chained layouts, blocked and depthwise kernels off too"
        fix = "report this model to patsparse; verify=False (--no-verify) skips the check"
    return VerificationError(
        f"the compiled model differs from PyTorch: {worst.describe()} "
        f"({sum(not o.passed for o in check.outputs)} of {len(check.outputs)} outputs over); "
        f"per-layer checks left {len(failed_layers)} conv(s) dense; {where}; {fix}",
        fix=fix,
    )


@dataclass
class CompileResult:
    compiled: CompiledModel
    summary: dict[str, Any]


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
        "unread_filters": [r.to_dict() for r in compiled.drop_records],
        "blocked": [r.to_dict() for r in compiled.blocked_records if r.rewritten],
        "depthwise": [r.to_dict() for r in compiled.depthwise_records],
        "thin": [dataclasses.asdict(r) for r in compiled.thin_records],
        "verification": None if compiled.verification is None else compiled.verification.to_dict(),
        "storage_bytes_rewritten_layers": storage,
        "max_abs_error_vs_pytorch": None if out is None else float(np.abs(out - ref).max()),
        "remote_latency_ms": remote_ms,
        "compile_seconds": round(seconds, 2),
        "logs": str(logs) if logs is not None else None,
        "schedules": {
            str(rule): sum(r.schedule == rule for r in compiled.schedule_records)
            for rule in dict.fromkeys(r.schedule for r in compiled.schedule_records)
        },
        "unscheduled": [r.name for r in compiled.schedule_records if r.schedule is None],
    }
    if export:
        summary["library"] = str(compiled.export_library(export))
    return CompileResult(compiled, summary)


def compiled_accuracy(compiled: CompiledModel, loader: Any) -> float:
    """Top-1 accuracy (%) of a compiled model, one image at a time (batch 1, as compiled)."""
    correct = count = 0
    for x, y in loader:
        for i in range(len(y)):
            logits = compiled(x[i : i + 1].numpy())
            correct += int(int(np.argmax(logits)) == int(y[i]))
            count += 1
    return 100.0 * correct / max(count, 1)
