"""Per-layer verification of rewritten convs: each kernel run on random input against the
numpy reference conv (:mod:`tvm_ext.reference`), on the host.

The conv-rewriting passes (``PatternSparseConv2D``, ``BlockedConv2D``) call this with
``verify=True`` and leave the layers that fail dense.
"""

from __future__ import annotations

from collections.abc import Mapping
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
