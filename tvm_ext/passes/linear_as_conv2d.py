"""Relax pass: a linear layer with a constant weight becomes a 1x1 conv the blocked kernel runs.

``from_exported_program`` imports ``nn.Linear`` as ``matmul(x, W^T)`` (+ ``add(bias)``); TVM
lowers it to plain loops unless tuned. Rewritten as ``reshape -> conv2d 1x1 (+ bias) ->
reshape``, :class:`tvm_ext.passes.BlockedConv2D` then runs it on the register-blocked kernel:
dense weights vectorised over output lanes, block-pruned weights (``block`` scheme: blocks of
output features share kept inputs) skipping the pruned inputs. This matters for VGG-16, whose
120M-parameter classifier is memory-bound. Place it right before ``BlockedConv2D``::

    seq = tvm.transform.Sequential([..., LinearAsConv2D(), BlockedConv2D(), ...])

Only ``(N, C) @ (C, K)`` float32 matmuls with a constant weight the blocked kernel accepts are
rewritten (others stay exactly as they were; :attr:`LinearAsConv2D.records` says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tvm_ext._compat import IRConstant, relax, tvm
from tvm_ext.layout import Rejection, analyze_blocked_weight
from tvm_ext.relax_match import (
    bias_of,
    dtype_of,
    is_op,
    lookup,
    lookup_set,
    rewrite_relax_functions,
    static_shape,
    used_vars,
)


@dataclass(frozen=True)
class LinearRecord:
    """What the pass did with one matmul."""

    shape: tuple[int, ...]
    rewritten: bool
    reason: str
    bias: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "shape": list(self.shape)}


def _linear_weight(call: relax.Call) -> tuple[np.ndarray | None, str]:
    """The ``(K, C, 1, 1)`` conv weight of an eligible matmul, or None and the reason."""
    x, w = call.args
    if not isinstance(w, IRConstant):
        return None, "weight is not a constant"
    xs, ws = static_shape(x), static_shape(w)
    if xs is None or ws is None or len(xs) != 2 or len(ws) != 2:
        return None, f"not a static (N, C) @ (C, K) matmul (shapes {xs} @ {ws})"
    if dtype_of(x) != "float32" or dtype_of(w) != "float32":
        return None, "only float32 is handled"
    weight = np.ascontiguousarray(w.value.numpy().T)[:, :, None, None]
    layout = analyze_blocked_weight(weight)
    if isinstance(layout, Rejection):
        return None, f"blocked kernel would not take it: {layout.reason}"
    return weight, "rewritten"


@relax.expr_functor.mutator
class _Rewriter(relax.expr_functor.PyExprMutator):
    def __init__(self, mod: tvm.IRModule) -> None:
        super().__init__(mod)
        self.mod_ = mod
        self.records: list[LinearRecord] = []
        self.absorbed: dict[Any, tuple[relax.Call, np.ndarray]] = {}  # add call -> matmul
        self.absorbed_matmuls: set[Any] = set()

    def _plan(self, func: relax.Function) -> None:
        var2val = relax.analysis.get_var2val(func)
        uses: dict[Any, int] = {}
        for value in var2val.values():
            for v in used_vars(value):
                uses[v] = uses.get(v, 0) + 1
        for value in var2val.values():
            if not is_op(value, "relax.add"):
                continue
            for arg in value.args:
                mm = var2val.get(arg) if isinstance(arg, relax.Var) else None
                if mm is not None and is_op(mm, "relax.matmul") and uses.get(arg, 0) == 1:
                    bias = bias_of(value, arg, (1, int(static_shape(arg)[-1]), 1, 1))  # type: ignore[index]
                    if bias is not None:
                        self.absorbed[value] = (mm, bias)
                        self.absorbed_matmuls.add(mm)

    def _emit(self, mm: relax.Call, bias: np.ndarray | None) -> relax.Expr | None:
        weight, reason = _linear_weight(mm)
        shape = tuple(int(d) for d in (static_shape(mm.args[1]) or ()))
        self.records.append(LinearRecord(shape, weight is not None, reason, bias is not None))
        if weight is None:
            return None
        n, c = static_shape(mm.args[0])  # type: ignore[misc]
        k = int(weight.shape[0])
        x = self.builder_.emit(relax.op.reshape(self.visit_expr(mm.args[0]), (n, c, 1, 1)))
        y = self.builder_.emit(relax.op.nn.conv2d(x, relax.const(weight)))
        if bias is not None:
            y = self.builder_.emit(relax.op.add(y, relax.const(bias.reshape(1, k, 1, 1))))
        return relax.op.reshape(y, (n, k))

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        fused = lookup(self.absorbed, call)
        if fused is not None:
            out = self._emit(*fused)
            return out if out is not None else super().visit_call_(call)
        if is_op(call, "relax.matmul") and not lookup_set(self.absorbed_matmuls, call):
            out = self._emit(call, None)
            if out is not None:
                return out
        return super().visit_call_(call)

    def run(self) -> tvm.IRModule:
        return rewrite_relax_functions(self, before=self._start_function)

    def _start_function(self, func: relax.Function) -> None:
        self.absorbed, self.absorbed_matmuls = {}, set()
        self._plan(func)


@tvm.transform.module_pass(opt_level=0, name="LinearAsConv2D")
class LinearAsConv2D:
    """Rewrite eligible linear layers as 1x1 convs (see the module docstring)."""

    def __init__(self) -> None:
        self.records: list[LinearRecord] = []

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        rewriter = _Rewriter(mod)
        out = rewriter.run()
        self.records = rewriter.records
        return out
