"""Small helpers the rewriting passes share to read Relax expressions: operator tests,
static shapes and dtypes, identity lookups, a conv's constant bias."""

from __future__ import annotations

from typing import Any

import numpy as np

from tvm_ext._compat import IRConstant, relax, tirx, tvm


def is_op(expr: Any, name: str) -> bool:
    """``expr`` is a call of the Relax operator ``name`` (e.g. ``"relax.nn.conv2d"``)."""
    return isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name == name


def static_shape(expr: relax.Expr) -> tuple[int, ...] | None:
    """The shape of ``expr`` when every dimension is a constant, else None."""
    sinfo = expr.ty if hasattr(expr, "ty") else expr.struct_info
    shape = getattr(sinfo, "shape", None)
    if shape is None or not hasattr(shape, "values"):
        return None
    dims = []
    for v in shape.values:
        if not isinstance(v, tirx.IntImm):
            return None
        dims.append(int(v))
    return tuple(dims)


def dtype_of(expr: relax.Expr) -> str:
    """The element type of a tensor expression (``""`` if it has none)."""
    sinfo = expr.ty if hasattr(expr, "ty") else expr.struct_info
    return str(getattr(sinfo, "dtype", ""))


def used_vars(expr: relax.Expr) -> list[Any]:
    """The variables ``expr`` reads."""
    return list(relax.analysis.free_vars(expr)) if not isinstance(expr, relax.Var) else [expr]


def lookup(table: dict[Any, Any], node: Any) -> Any:
    """``table[node]`` by object identity (``same_as``), None if absent."""
    for key, value in table.items():
        if key.same_as(node):
            return value
    return None


def lookup_set(table: set[Any], node: Any) -> bool:
    """``node in table`` by object identity (``same_as``)."""
    return any(key.same_as(node) for key in table)


def bias_of(add: relax.Call, conv_var: Any, out_shape: tuple[int, ...] | None) -> np.ndarray | None:
    """The per-output-channel bias of ``conv_var + const``, or None if it is not one."""
    a, b = add.args
    other = b if a.same_as(conv_var) else a if b.same_as(conv_var) else None
    if not isinstance(other, IRConstant) or out_shape is None:
        return None
    arr = other.value.numpy()
    k = out_shape[1]
    if arr.size == k and arr.shape in ((k,), (1, k, 1, 1), (k, 1, 1)):
        return arr.reshape(k).astype(np.float32)
    return None
