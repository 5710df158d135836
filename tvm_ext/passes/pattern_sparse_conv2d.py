"""Relax pass: rewrite pattern-pruned ``relax.nn.conv2d`` into pattern-specialised TE computes.

Where it belongs in a pipeline: after the model is imported with its weights as constants
and BatchNorm is folded (``FoldBatchnormToConv2D`` then ``FoldConstant``), before the rest
of any Relax pipeline (legalisation, fusion, lowering)::

    seq = tvm.transform.Sequential([
        relax.transform.FoldBatchnormToConv2D(), relax.transform.FoldConstant(),
        PatternSparseConv2D(), relax.get_default_pipeline(target)])

A conv2d is rewritten when it is NCHW/OIHW, 3x3, groups 1, float32 (any stride, padding and
dilation: a tap is its offset times the dilation), has static shapes and a constant weight
whose every kernel is all-zero or exactly one 4-weight pattern.
A following bias add, residual add and ReLU are fused into the kernel's epilogue when the
intermediate values have no other use; a reflection / replication / zero pad and a nearest
upsampling before it are read by the kernel's padding stage (``fuse_input``). Everything
else is left exactly as it was; the reason is recorded in :attr:`PatternSparseConv2D.records`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from patsparse.core.patterns import PatternLibrary
from tvm_ext._compat import tvm
from tvm_ext.conv_rewriter import PATTERN_MODE, LayerRecord, RewriteOptions, rewrite_convs


@tvm.transform.module_pass(opt_level=0, name="PatternSparseConv2D")
class PatternSparseConv2D:
    """Rewrite eligible pattern-pruned conv2d calls (see the module docstring).

    Options (keyword-only): ``library`` (pattern codes or a PatternLibrary; default: the
    patterns each weight uses), ``block`` (lanes of block-shared layers; default: detect
    16, 8 or 4), ``prefer_blocks`` (run block-structured layers as blocks),
    ``per_kernel_cost`` (leave per-kernel layers whose blocked layout is estimated faster to
    :class:`BlockedConv2D`: a number, or ``((max input channels, cost), ...)``; ``None``, the
    default here, rewrites every eligible layer; ``per_kernel_stride_factor`` scales it on
    strided convs),
    ``fuse_epilogue`` (bias/residual/ReLU in the kernel), ``fuse_input`` (a reflection /
    replication / zero pad and a nearest upsampling before the conv read by the kernel's
    ``ps_pad`` stage, not run separately), ``schedule`` (apply the target's
    default schedule, :mod:`tvm_ext.schedules.dispatch`). After the pass runs, ``records``
    lists one :class:`LayerRecord` per conv.
    """

    def __init__(
        self,
        *,
        library: PatternLibrary | Sequence[int] | None = None,
        block: int | None = None,
        prefer_blocks: bool = True,
        fuse_epilogue: bool = True,
        fuse_input: bool = True,
        schedule: bool = True,
        verify: bool = False,
        target: Any = None,
        tolerance: float = 1e-4,
        per_kernel_cost: float | Sequence[tuple[int, float]] | None = None,
        per_kernel_stride_factor: float = 1.0,
    ) -> None:
        costs = _cost_table(per_kernel_cost)
        if not per_kernel_stride_factor > 0:
            raise ValueError(
                f"per_kernel_stride_factor must be > 0, got {per_kernel_stride_factor!r}"
            )
        if library is not None and not isinstance(library, PatternLibrary):
            library = PatternLibrary(tuple(library))
        self.options = RewriteOptions(
            mode=PATTERN_MODE,
            library=library,
            block=block,
            prefer_blocks=prefer_blocks,
            fuse_epilogue=fuse_epilogue,
            fuse_input=fuse_input,
            schedule=schedule,
            target=target,
            verify=verify,
            tolerance=tolerance,
            per_kernel_cost=costs,
            per_kernel_stride_factor=float(per_kernel_stride_factor),
        )
        self.records: list[LayerRecord] = []

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        out, self.records = rewrite_convs(mod, self.options)
        return out


def _cost_table(
    cost: float | Sequence[tuple[int, float]] | None,
) -> tuple[tuple[int, float], ...] | None:
    """Normalise ``per_kernel_cost``: a number applies to every layer."""
    if cost is None:
        return None
    rows = ((0, cost),) if isinstance(cost, int | float) else tuple(cost)
    try:
        table = tuple((int(b), float(c)) for b, c in rows)
    except (TypeError, ValueError):
        table = ()
    if not table or any(b < 0 or not c > 0 for b, c in table):
        raise ValueError(
            "per_kernel_cost must be None, a number > 0, or ((max input channels, cost > 0), "
            f"...) rows; got {cost!r}"
        )
    return table
