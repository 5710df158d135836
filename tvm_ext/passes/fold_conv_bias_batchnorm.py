"""Relax pass: fold inference BatchNorm into a conv2d that already has a bias.

``relax.transform.FoldBatchnormToConv2D`` folds ``batch_norm(conv2d(x, W))`` but not
``batch_norm(conv2d(x, W) + b)``, the form PyTorch exports for ``Conv2d(bias=True)``
followed by ``BatchNorm2d`` (VGG-style models). This pass rewrites that form into
``conv2d(x, W * s) + ((b - mean) * s + beta)`` with ``s = gamma / sqrt(var + eps)``, all
constants, so the pattern-sparse pass can fuse the bias into its epilogue. Zero weights stay
zero (the scale is per output channel). Place it after a ``FoldConstant`` (the exported bias is a
reshape of a constant until then) and next to ``FoldBatchnormToConv2D``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tvm_ext._compat import IRConstant, relax, tvm
from tvm_ext.relax_match import rewrite_relax_functions


def _op_name(expr: Any) -> str:
    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
        return str(expr.op.name)
    return ""


@relax.expr_functor.mutator
class _Folder(relax.expr_functor.PyExprMutator):
    def __init__(self, mod: tvm.IRModule) -> None:
        super().__init__(mod)
        self.mod_ = mod
        self.folded = 0

    def _value(self, expr: relax.Expr) -> relax.Expr:
        if isinstance(expr, relax.Var):
            bound = self.lookup_binding(expr)
            if bound is not None:
                return bound
        return expr

    def visit_tuple_getitem_(self, op: relax.TupleGetItem) -> relax.Expr:
        new = super().visit_tuple_getitem_(op)
        if not isinstance(new, relax.TupleGetItem) or int(new.index) != 0:
            return new
        bn = self._value(new.tuple_value)
        if _op_name(bn) != "relax.nn.batch_norm" or bool(getattr(bn.attrs, "training", False)):
            return new
        data, gamma, beta, mean, var = bn.args
        if int(bn.attrs.axis) != 1 or not all(
            isinstance(c, IRConstant) for c in (gamma, beta, mean, var)
        ):
            return new
        add = self._value(data)
        if _op_name(add) != "relax.add":
            return new
        conv_var, bias = add.args
        if not isinstance(bias, IRConstant):
            conv_var, bias = bias, conv_var
        conv = self._value(conv_var)
        if _op_name(conv) != "relax.nn.conv2d" or not isinstance(bias, IRConstant):
            return new
        x, weight = conv.args
        if not isinstance(weight, IRConstant) or str(conv.attrs.kernel_layout) != "OIHW":
            return new
        w = weight.value.numpy()
        k = w.shape[0]
        b = bias.value.numpy()
        if b.size != k or str(conv.attrs.data_layout) != "NCHW":
            return new
        eps = float(bn.attrs.epsilon)
        g, be, mu, v = (c.value.numpy().astype(np.float64) for c in (gamma, beta, mean, var))
        scale = g / np.sqrt(v + eps)
        new_w = (w.astype(np.float64) * scale[:, None, None, None]).astype(w.dtype)
        new_b = ((b.reshape(k) - mu) * scale + be).astype(w.dtype).reshape(1, k, 1, 1)
        attrs = conv.attrs
        folded = relax.op.nn.conv2d(
            x,
            relax.const(new_w),
            strides=attrs.strides,
            padding=attrs.padding,
            dilation=attrs.dilation,
            groups=attrs.groups,
            data_layout=attrs.data_layout,
            kernel_layout=attrs.kernel_layout,
            out_layout=attrs.out_layout,
            out_dtype=attrs.out_dtype,
        )
        self.folded += 1
        return relax.op.add(self.builder_.emit(folded), relax.const(new_b))

    def run(self) -> tvm.IRModule:
        return rewrite_relax_functions(self)


@tvm.transform.module_pass(opt_level=0, name="FoldConvBiasBatchNorm")
class FoldConvBiasBatchNorm:
    """Fold ``batch_norm(conv2d(x, W) + b)[0]`` (inference, constants) into conv2d + bias."""

    def __init__(self) -> None:
        self.folded = 0

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        folder = _Folder(mod)
        out = folder.run()
        self.folded = folder.folded
        return out
