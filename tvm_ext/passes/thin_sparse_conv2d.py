"""Relax pass: a pruned thin conv computes its kept weight columns only.

:class:`BlockedConv2D` leaves a conv with fewer output channels than half a vector (the 32→3
9x9 tail of a style-transfer net) to the ``conv`` leftover rule, vectorised over output
pixels. That rule multiplies every weight, zeros included: a tail block-pruned 8x still costs
all of its multiply-adds. This pass rewrites such a conv, when at most
:data:`~tvm_ext.tap_layout.TAP_SKIP_RATIO` of its (input channel, tap) columns hold a
non-zero weight, into the kept-column conv of :mod:`tvm_ext.te.thin_conv` (a reflection /
replication / zero pad or a nearest upsampling before it read in place). It stays an
ordinary function: TVM fuses the bias and activation after it, and the ``conv`` leftover rule
schedules it (:class:`ScheduleLeftovers`). Where it belongs: before legalisation on CPU
targets; :func:`tvm_ext.pipeline.backend_passes` places it. :attr:`ThinSparseConv2D.records`
says what happened to every thin conv and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tvm_ext._compat import Target, relax, tvm
from tvm_ext.conv_rewriter import (
    BLOCKED_MODE,
    InputSource,
    absorb_input,
    conv_eligibility,
    conv_geometry,
    is_thin_conv,
)
from tvm_ext.relax_match import is_op, rewrite_relax_functions, static_shape
from tvm_ext.tap_layout import TAP_SKIP_RATIO
from tvm_ext.targets import vector_lanes
from tvm_ext.te.thin_conv import kept_columns, thin_conv

FUNC_NAME = "thin_sparse_conv2d"


@dataclass(frozen=True)
class ThinConvRecord:
    """What the pass did with one thin conv: its weight shape, the columns it keeps of all
    (input channels x taps), and why it was (not) rewritten."""

    weight_shape: tuple[int, ...]
    kept_columns: int
    columns: int
    rewritten: bool
    reason: str
    fused: tuple[str, ...] = ()


def _thin(call: relax.Call, lanes: int) -> str | None:
    """None if ``call`` is a thin conv this pass can take, else why not (``""``: not a thin
    conv at all, nothing to record)."""
    if not is_op(call, "relax.nn.conv2d"):
        return ""
    ws, out = static_shape(call.args[1]), static_shape(call)
    if ws is None or out is None or not is_thin_conv(ws[0], out[2] * out[3], lanes):
        return ""  # not thin, or a small map (stays on the blocked kernel)
    return conv_eligibility(call, BLOCKED_MODE)


@relax.expr_functor.mutator
class _Rewriter(relax.expr_functor.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, lanes: int) -> None:
        super().__init__(mod)
        self.mod_ = mod
        self.lanes = lanes
        self.var2val: Mapping[Any, Any] = {}
        self.records: list[ThinConvRecord] = []

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        reason = _thin(call, self.lanes)
        if reason == "":
            return super().visit_call_(call)
        shape = tuple(static_shape(call.args[1]) or ())
        if reason is not None:
            self.records.append(ThinConvRecord(shape, 0, 0, False, reason))
            return super().visit_call_(call)
        weight = call.args[1].value.numpy()
        plain = InputSource(call.args[0], conv_geometry(call, weight))
        try:
            source = absorb_input(plain.expr, plain.geometry, self.var2val) or plain
        except ValueError:  # e.g. a reflection wider than the input: leave it outside
            source = plain
        x, geometry, ops = source.expr, source.geometry, source.ops
        kept = kept_columns(weight, geometry)
        columns = int(weight.shape[1] * weight.shape[2] * weight.shape[3])
        if kept.count > TAP_SKIP_RATIO * columns:
            self.records.append(
                ThinConvRecord(
                    shape,
                    kept.count,
                    columns,
                    False,
                    f"{kept.count} of {columns} weight columns kept (more than "
                    f"{TAP_SKIP_RATIO:g}): left to the dense leftover conv schedule",
                )
            )
            return super().visit_call_(call)
        self.records.append(
            ThinConvRecord(shape, kept.count, columns, True, "rewritten", (*ops, "conv2d"))
        )
        return self.builder_.call_te(
            lambda a, w, ch, dy, dx: thin_conv(a, w, ch, dy, dx, geometry),
            self.visit_expr(x),
            *(relax.const(arr) for arr in kept.arrays()),
            primfunc_name_hint=FUNC_NAME,
        )

    def before(self, func: relax.Function) -> None:
        self.var2val = relax.analysis.get_var2val(func)


@tvm.transform.module_pass(opt_level=0, name="ThinSparseConv2D")
class ThinSparseConv2D:
    """Rewrite pruned thin convs into kept-column convs (see the module docstring).

    ``target``: whose vector width decides what is thin (default: the current target).
    """

    def __init__(self, *, target: Target | None = None) -> None:
        self.target = target
        self.records: list[ThinConvRecord] = []

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        target = self.target or Target.current()
        rewriter = _Rewriter(mod, vector_lanes(target))
        out = rewrite_relax_functions(rewriter, before=rewriter.before)
        self.records = rewriter.records
        return out
