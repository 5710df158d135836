"""Verification of what patsparse compiles.

- Per layer: each rewritten conv's kernel run on random input against the numpy reference
  conv (:mod:`tvm_ext.reference`), on the host (:func:`verify_layer`). The conv-rewriting
  passes (``PatternSparseConv2D``, ``BlockedConv2D``) call it with ``verify=True`` and leave
  the layers that fail dense.
- End to end: the final compiled module's outputs (chained layouts, fused epilogues, tuned
  schedules: what runs) against a reference model's (:func:`check_outputs`; PyTorch's in
  ``patsparse.compiler.compile_torch``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np

from tvm_ext._compat import host_target, te, tensor, tvm
from tvm_ext.layout import SparseConvLayout
from tvm_ext.reference import conv2d_nchw
from tvm_ext.schedules.dispatch import schedule_pattern_primfunc
from tvm_ext.targets import is_cross
from tvm_ext.te.conv_spec import ConvGeometry, Epilogue
from tvm_ext.te.pattern_conv import layout_arguments, pattern_conv2d_te


class BuiltLayer(NamedTuple):
    """What verification needs of one rewritten conv (in :func:`verify_layer`'s order)."""

    gv: tvm.ir.GlobalVar
    weight: np.ndarray
    geometry: ConvGeometry
    layout: SparseConvLayout
    epilogue: Epilogue
    bias: np.ndarray | None


def tolerance_scale(weight: np.ndarray) -> float:
    """Error tolerance scale: grows with the reduction length and weight magnitude."""
    return max(1.0, float(np.abs(weight).sum(axis=(1, 2, 3)).max()))


def failed_layers(
    errors: Mapping[int, float], built: Mapping[int, BuiltLayer], tolerance: float
) -> dict[int, str]:
    """Conv index -> reason, for the layers whose error exceeds ``tolerance`` (scaled by
    :func:`tolerance_scale` of the layer's weight)."""
    return {
        i: f"verification failed: max abs error {e:.3g} vs the dense conv"
        for i, e in errors.items()
        if not e <= tolerance * tolerance_scale(built[i].weight)
    }


def verify_layer(
    mod: tvm.IRModule,
    gv: tvm.ir.GlobalVar,
    weight: np.ndarray,
    geometry: ConvGeometry,
    layout: SparseConvLayout,
    epilogue: Epilogue,
    bias: np.ndarray | None,
    *,
    target: Any = None,
    seed: int = 0,
) -> float:
    """Max abs error of the rewritten PrimFunc against a dense conv on random input."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(geometry.source_shape).astype(np.float32)
    n, k = geometry.in_shape[0], layout.shape[0]
    oh, ow = geometry.out_hw
    residual = rng.standard_normal((n, k, oh, ow)).astype(np.float32)
    ref = conv2d_nchw(
        x,
        weight,
        bias if epilogue.bias and bias is not None else None,
        stride=geometry.stride,
        padding=geometry.padding,
        dilation=geometry.dilation,
        pad_mode=geometry.pad_mode,
        upsample=geometry.upsample,
    )
    if epilogue.residual:
        ref = ref + residual
    if epilogue.relu:
        ref = np.maximum(ref, 0)

    # The numbers are checked here, on the host: a kernel built for another device (arm64,
    # OpenCL) cannot run on this machine, so those layers verify with the host's schedule.
    func = mod[gv]
    if target is not None and is_cross(target):
        target = None
        func = te.create_prim_func(pattern_conv2d_te(geometry, layout, epilogue))
    # unscheduled in tuning mode: the default schedule keeps the check fast
    func = schedule_pattern_primfunc(func, target=target or host_target()) or func
    func = func.with_attr("global_symbol", "main")
    ex = tvm.compile(tvm.IRModule({"main": func}), target=target or host_target())
    dev = tvm.cpu()
    args = [x, *layout_arguments(layout, geometry)]
    if epilogue.bias:
        args.append(bias if bias is not None else np.zeros(k, np.float32))
    if epilogue.residual:
        args.append(residual)
    out = tensor(np.zeros(ref.shape, np.float32), dev)
    ex.mod["main"](*[tensor(np.ascontiguousarray(a), dev) for a in args], out)
    return float(np.abs(out.numpy() - ref).max())


#: End to end, each output's max abs error may be this times the output's largest magnitude
#: (at least 1): float32 rounding grows with the values, and whole models on random input
#: differ from PyTorch by 1e-8 to 1e-5 (ResNet-18-cifar 4e-8 at outputs of 0.08; the random
#: models of the property test at most ~1e-6), so a real bug stands out by orders.
MODEL_TOLERANCE = 1e-4


@dataclass(frozen=True)
class OutputCheck:
    """One output of a whole model against its reference."""

    index: int
    shape: tuple[int, ...]
    max_abs_error: float
    #: the largest error allowed (:func:`output_bound`)
    bound: float
    #: where the largest error is (an index into the output)
    worst_at: tuple[int, ...]

    @property
    def passed(self) -> bool:
        return self.max_abs_error <= self.bound  # NaN fails

    def describe(self) -> str:
        shape = "x".join(map(str, self.shape))
        return (
            f"output {self.index} ({shape}): max abs error {self.max_abs_error:.3g} at "
            f"{list(self.worst_at)}, allowed {self.bound:.3g}"
        )


@dataclass(frozen=True)
class ModelCheck:
    """A compiled model's outputs against the reference's on one random input."""

    outputs: tuple[OutputCheck, ...]
    seconds: float

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    @property
    def worst(self) -> OutputCheck:
        """The output furthest over (or least under) its bound."""
        return max(
            self.outputs,
            key=lambda o: np.inf if np.isnan(o.max_abs_error) else o.max_abs_error / o.bound,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "seconds": round(self.seconds, 3),
            "outputs": [
                {**asdict(o), "shape": list(o.shape), "worst_at": list(o.worst_at)}
                for o in self.outputs
            ],
        }


def output_bound(reference: np.ndarray, tolerance: float = MODEL_TOLERANCE) -> float:
    """The largest error allowed on an output: ``tolerance`` times its largest magnitude
    (at least 1)."""
    peak = float(np.abs(reference).max()) if reference.size else 0.0
    return tolerance * max(1.0, peak)


def check_outputs(
    outputs: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    *,
    tolerance: float = MODEL_TOLERANCE,
    seconds: float = 0.0,
) -> ModelCheck:
    """Every output against its reference (:func:`output_bound`); a missing output or a
    shape mismatch is an infinite error."""
    checks = []
    for i, ref in enumerate(references):
        ref = np.asarray(ref, dtype=np.float32)
        bound = output_bound(ref, tolerance)
        out = np.asarray(outputs[i], dtype=np.float32) if i < len(outputs) else None
        if out is None or out.shape != ref.shape:
            checks.append(OutputCheck(i, tuple(ref.shape), float("inf"), bound, ()))
            continue
        diff = np.abs(out - ref)
        if diff.size == 0:
            checks.append(OutputCheck(i, tuple(ref.shape), 0.0, bound, ()))
            continue
        # NaN anywhere is the worst error there is
        at = int(np.argmax(np.where(np.isnan(diff), np.inf, diff)))
        worst = tuple(int(a) for a in np.unravel_index(at, diff.shape))
        checks.append(OutputCheck(i, tuple(ref.shape), float(diff[worst]), bound, worst))
    return ModelCheck(tuple(checks), seconds)
