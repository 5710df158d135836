"""Relax pass: shrink filter-/channel-pruned convolutions into smaller dense convolutions.

For a ``relax.nn.conv2d`` with a constant weight (NCHW/OIHW, groups 1, any kernel size),
whole-zero input channels are dropped by taking only the kept channels of the input, and
whole-zero filters are dropped from the weight; the smaller conv's output is placed back
into the full channel range with one ``take`` over ``[y_small, 0]``. Column-pruned layers
shrink too wherever a whole input channel is zero. Layers without whole-zero
channels or filters are left exactly as they were, with the reason in ``records``.

Where the conv reads a spatial pad (zeros, reflection, replication) or a nearest upsampling
of its input, the channel ``take`` goes under them (``pad(take(x))`` equals
``take(pad(x))``: both act per channel): the gather copies the smaller, unpadded
low-resolution tensor, and the conv still reads the pad and upsampling directly, which
:class:`BlockedConv2D` and :class:`PatternSparseConv2D` then fold into their index
arithmetic instead of running them as separate ops.

Where it belongs: after :class:`PatternSparseConv2D` (which takes the pattern-sparse convs
first), before the default Relax pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tvm_ext._compat import IRConstant, relax, tvm
from tvm_ext.relax_match import nearest_upsample_factor, spatial_pad


@dataclass
class CompactRecord:
    index: int
    rewritten: bool
    reason: str
    weight_shape: tuple[int, ...]
    kept_filters: int = 0
    kept_channels: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["weight_shape"] = list(self.weight_shape)
        return d


@relax.expr_functor.mutator
class _Compactor(relax.expr_functor.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, min_saving: float) -> None:
        super().__init__(mod)
        self.mod_ = mod
        self.min_saving = min_saving
        self.records: list[CompactRecord] = []

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        new = super().visit_call_(call)
        if not (
            isinstance(new, relax.Call)
            and isinstance(new.op, tvm.ir.Op)
            and new.op.name == "relax.nn.conv2d"
        ):
            return new
        x, w = new.args
        a = new.attrs
        index = len(self.records)
        if not isinstance(w, IRConstant):
            self.records.append(CompactRecord(index, False, "weight is not a constant", ()))
            return new
        weight = w.value.numpy()
        shape = tuple(weight.shape)
        if int(a.groups) != 1 or str(a.data_layout) != "NCHW" or str(a.kernel_layout) != "OIHW":
            self.records.append(CompactRecord(index, False, "grouped or non-NCHW conv", shape))
            return new
        nonzero = weight != 0
        filters = np.nonzero(nonzero.reshape(shape[0], -1).any(1))[0]
        channels = np.nonzero(nonzero.transpose(1, 0, 2, 3).reshape(shape[1], -1).any(1))[0]
        kept = len(filters) * len(channels)
        if len(filters) == 0 or kept > (1 - self.min_saving) * shape[0] * shape[1]:
            self.records.append(
                CompactRecord(
                    index,
                    False,
                    "no whole-zero filters or input channels to remove"
                    if len(filters)
                    else "every filter is zero",
                    shape,
                )
            )
            return new
        y = x
        if len(channels) < shape[1]:
            y = self._take_channels(x, channels)
        small_w = weight[filters][:, channels]
        small = relax.op.nn.conv2d(
            y,
            relax.const(np.ascontiguousarray(small_w)),
            strides=a.strides,
            padding=a.padding,
            dilation=a.dilation,
            data_layout="NCHW",
            kernel_layout="OIHW",
            out_dtype=a.out_dtype,
        )
        self.records.append(
            CompactRecord(index, True, "compacted", shape, len(filters), len(channels))
        )
        if len(filters) == shape[0]:
            # bound to the original variable (no alias binding), so the bias add and ReLU
            # after it still follow the conv directly and fuse into its kernel
            return small
        conv = self.builder_.emit(small)
        # Place filter outputs back: channel k reads slot pos[k] of [y_small, zeros].
        sinfo = conv.ty if hasattr(conv, "ty") else conv.struct_info
        n, _, oh, ow = (int(v) for v in sinfo.shape.values)
        zeros = relax.const(np.zeros((n, 1, oh, ow), dtype=str(sinfo.dtype)))
        padded = self.builder_.emit(relax.op.concat([conv, zeros], axis=1))
        pos = np.full(shape[0], len(filters), dtype="int64")
        pos[filters] = np.arange(len(filters))
        return relax.op.take(padded, relax.const(pos), axis=1, mode="clip")

    def _take_channels(self, x: relax.Expr, channels: np.ndarray) -> relax.Expr:
        """``x`` with only ``channels`` (axis 1), the gather moved under the pad and nearest
        upsampling that produce ``x`` (see the module docstring)."""
        per_channel: list[relax.Call] = []  # pad, then upsample: outermost first
        source = x
        for matches in (spatial_pad, nearest_upsample_factor):
            value = self.lookup_binding(source) if isinstance(source, relax.Var) else None
            if isinstance(value, relax.Call) and matches(value) is not None:
                per_channel.append(value)
                source = value.args[0]
        # constant indices in range: "clip" reads the same as "fast", without TOPI's
        # out-of-bounds warning on every legalisation
        y = self.builder_.emit(
            relax.op.take(source, relax.const(channels.astype("int64")), axis=1, mode="clip")
        )
        for value in reversed(per_channel):
            y = self.builder_.emit(
                relax.Call(value.op, [y, *value.args[1:]], value.attrs, value.ty_args)
            )
        return y

    def run(self) -> tvm.IRModule:
        for gv, func in self.mod_.functions_items():
            if isinstance(func, relax.Function):
                # a pad or upsampling the gather moved under may now be unused
                new = relax.analysis.remove_all_unused(self.visit_expr(func))
                self.builder_.update_func(gv, new)
        return self.builder_.get()


@tvm.transform.module_pass(opt_level=0, name="CompactStructuredConv2D")
class CompactStructuredConv2D:
    """Drop whole-zero filters and input channels of constant-weight convs.

    ``min_saving``: rewrite only when at least this fraction of the kernels goes away.
    """

    def __init__(self, *, min_saving: float = 0.1) -> None:
        self.min_saving = min_saving
        self.records: list[CompactRecord] = []

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        compactor = _Compactor(mod, self.min_saving)
        out = compactor.run()
        self.records = compactor.records
        return out
