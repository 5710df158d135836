"""Relax pass: run the convs the pattern pass leaves (dense, 1x1, 7x7, block-connectivity
pruned) on the same register-blocked kernel.

TVM's default pipeline lowers a ``relax.nn.conv2d`` it has no tuning record for to plain
loops; in a pattern-sparse model those leftovers (the stem, 1x1 downsample convs, layers a
plan keeps dense) then dominate the run time. This pass gives them the block layout of
:func:`tvm_ext.layout.analyze_blocked_weight`: blocks of output channels vectorised over SIMD
lanes, one "pattern" holding every tap, kept input channels listed per block, so a dense conv
runs at hand-scheduled speed without tuning and a conv whose filter blocks share pruned input
channels (``block`` connectivity) skips them; scattered per-kernel connectivity runs as blocks
of similar filters over the union of their channels (never slower than dense). Run it after
:class:`PatternSparseConv2D`::

    seq = tvm.transform.Sequential([PatternSparseConv2D(), BlockedConv2D(), ...])

Same fusion (bias, residual add, ReLU), records and verification as the pattern pass; a conv
that does not qualify (depthwise, grouped, all-zero, weights as inputs) is left
exactly as it was, with the reason in :attr:`BlockedConv2D.records`. MetaSchedule tunes the
generated functions with the same rule as the pattern-sparse ones.
"""

from __future__ import annotations

from typing import Any

from tvm_ext._compat import tvm
from tvm_ext.conv_rewriter import BLOCKED_MODE, LayerRecord, RewriteOptions, rewrite_convs


@tvm.transform.module_pass(opt_level=0, name="BlockedConv2D")
class BlockedConv2D:
    """Rewrite dense / block-connectivity conv2d calls into the register-blocked kernel.

    Options (keyword-only): ``block`` (output-channel lanes, default 16), ``fuse_epilogue``,
    ``fuse_input`` (a reflection / replication / zero pad and a nearest upsampling before the
    conv read by the kernel, not run separately), ``skip_zero_taps`` (taps zero across a
    block of filters cost nothing, :mod:`tvm_ext.tap_layout`), ``schedule`` (apply the
    default CPU schedule), ``verify`` / ``target`` / ``tolerance`` (check each rewritten layer
    against the dense conv; failures stay dense).
    """

    def __init__(
        self,
        *,
        block: int | None = None,
        fuse_epilogue: bool = True,
        fuse_input: bool = True,
        skip_zero_taps: bool = True,
        schedule: bool = True,
        verify: bool = False,
        target: Any = None,
        tolerance: float = 1e-4,
    ) -> None:
        if block is not None and (not isinstance(block, int) or block < 1):
            raise ValueError(f"block must be a positive int (SIMD lanes), got {block!r}")
        self.options = RewriteOptions(
            mode=BLOCKED_MODE,
            block=block,
            fuse_epilogue=fuse_epilogue,
            fuse_input=fuse_input,
            skip_zero_taps=skip_zero_taps,
            schedule=schedule,
            target=target,
            verify=verify,
            tolerance=tolerance,
        )
        self.records: list[LayerRecord] = []

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        out, self.records = rewrite_convs(mod, self.options)
        return out
