"""Relax pass: ``topk`` with ``k=1`` becomes a max (min) reduction and an argmax (argmin).

``torch.max(x, dim)`` (the channel max of CBAM-style spatial attention, a max over the last
axis) imports as ``relax.topk(x, k=1, ret_type="both")``, which TVM 0.27 lowers to a sort
that no CPU schedule takes (it runs as plain loops). With ``k=1`` the values are a ``max``
over the axis (kept as a size-1 axis) and the indices an ``argmax``: plain reductions the
leftover rules schedule (``strided_reduce`` over channels, ``contiguous_reduce`` over the
last axis). Indices nobody reads are not computed. Ties give the first index, as PyTorch
does. Where it belongs: before legalisation on CPU targets
(:func:`tvm_ext.pipeline.backend_passes` places it); :attr:`TopOneAsReduce.rewritten`
counts the rewrites.
"""

from __future__ import annotations

from typing import Any

from tvm_ext._compat import relax, tvm
from tvm_ext.relax_match import is_op, rewrite_relax_functions


@relax.expr_functor.mutator
class _Rewriter(relax.expr_functor.PyExprMutator):
    def __init__(self, mod: tvm.IRModule) -> None:
        super().__init__(mod)
        self.mod_ = mod
        self.rewritten = 0

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        if not is_op(call, "relax.topk") or int(call.attrs.k) != 1:
            return super().visit_call_(call)
        attrs = call.attrs
        x = self.visit_expr(call.args[0])
        axis = int(attrs.axis)
        largest = bool(attrs.largest)
        ret = str(attrs.ret_type)
        self.rewritten += 1
        reduce = relax.op.max if largest else relax.op.min
        pick = relax.op.argmax if largest else relax.op.argmin
        values = reduce(x, axis=[axis], keepdims=True)
        indices = relax.op.astype(pick(x, axis=axis, keepdims=True), str(attrs.dtype))
        if ret == "values":  # only what the call returns is built
            return values
        if ret == "indices":
            return indices
        return relax.Tuple([self.builder_.emit(values), self.builder_.emit(indices)])


@tvm.transform.module_pass(opt_level=0, name="TopOneAsReduce")
class TopOneAsReduce:
    """Rewrite ``topk(k=1)`` into reductions (see the module docstring)."""

    def __init__(self) -> None:
        self.rewritten = 0

    def transform_module(self, mod: tvm.IRModule, ctx: Any) -> tvm.IRModule:
        rewriter = _Rewriter(mod)
        out = rewrite_relax_functions(rewriter)
        self.rewritten = rewriter.rewritten
        if self.rewritten:  # ``t[0]`` of the new tuple read directly, unread indices dropped
            out = relax.transform.CanonicalizeBindings()(out)
            out = relax.transform.DeadCodeElimination()(out)
        return out
