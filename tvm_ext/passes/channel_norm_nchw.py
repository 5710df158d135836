"""Relax pass: ``permute -> layer_norm(last axis) -> permute back`` becomes a norm over axis 1.

A layer norm over the channels of an NCHW map is written in PyTorch as
``ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)`` (ConvNeXt, many restoration nets). TVM
then copies the map twice (two transposes, each slower than the norm itself) around a
channels-last norm. This pass replaces the three with one ``relax.nn.layer_norm`` over
axis 1 of the NCHW map (same gamma, beta, epsilon: the same arithmetic), which the
``strided_reduce`` rule of :mod:`tvm_ext.schedules.leftovers` schedules with the pixels in
vectors. Where it belongs: before legalisation on CPU targets;
:func:`tvm_ext.pipeline.backend_passes` places it. Anything else is left as it was;
:attr:`ChannelNormNCHW.rewritten` counts the rewrites.
"""

from __future__ import annotations

from typing import Any

from tvm_ext._compat import relax, tvm
from tvm_ext.relax_match import is_op, rewrite_relax_functions, static_shape

TO_NHWC = (0, 2, 3, 1)
TO_NCHW = (0, 3, 1, 2)


def _axes(call: relax.Call) -> tuple[int, ...] | None:
    axes = call.attrs.axes
    return None if axes is None else tuple(int(a) for a in axes)


@relax.expr_functor.mutator
class _Rewriter(relax.expr_functor.PyExprMutator):
    def __init__(self, mod: tvm.IRModule) -> None:
        super().__init__(mod)
        self.mod_ = mod
        self.rewritten = 0

    def _bound(self, expr: Any, op: str) -> relax.Call | None:
        value = self.lookup_binding(expr) if isinstance(expr, relax.Var) else None
        return value if value is not None and is_op(value, op) else None

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if not is_op(call, "relax.permute_dims") or _axes(call) != TO_NCHW:
            return call
        norm = self._bound(call.args[0], "relax.nn.layer_norm")
        if norm is None or _axes(norm) not in ((-1,), (3,)):
            return call
        inner = self._bound(norm.args[0], "relax.permute_dims")
        if inner is None or _axes(inner) != TO_NHWC:
            return call
        shape = static_shape(inner.args[0])
        if shape is None or len(shape) != 4:
            return call
        self.rewritten += 1
        attrs = norm.attrs
        return relax.op.nn.layer_norm(
            inner.args[0],
            norm.args[1],
            norm.args[2],
            axes=[1],
            epsilon=float(attrs.epsilon),
            center=bool(attrs.center),
            scale=bool(attrs.scale),
        )

    def run(self) -> tvm.IRModule:
        return rewrite_relax_functions(self)


@tvm.transform.module_pass(opt_level=0, name="ChannelNormNCHW")
class ChannelNormNCHW:
    """Rewrite permuted channel layer norms as norms over axis 1 (module docstring)."""

    def __init__(self) -> None:
        self.rewritten = 0

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        rewriter = _Rewriter(mod)
        out = rewriter.run()
        self.rewritten = rewriter.rewritten
        return out
