"""Small helpers the rewriting passes share to read Relax expressions: operator tests,
static shapes and dtypes, identity lookups, a conv's constant bias."""

from __future__ import annotations

from collections.abc import Callable
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


#: ``relax.nn.pad`` modes a conv's ``ps_pad`` stage can absorb -> ConvGeometry.pad_mode (as
#: TVM's legalisation reads them: ``reflect`` and ``replicate`` by name, other names but
#: ``circular`` fill ``pad_value``, so only ``constant`` is taken for that)
_PAD_MODES = {"constant": "zeros", "reflect": "reflect", "replicate": "replicate"}


def spatial_pad(call: relax.Call) -> tuple[str, tuple[int, int, int, int]] | None:
    """``(mode, (top, left, bottom, right))`` of a ``relax.nn.pad`` that pads only the two
    spatial axes of an NCHW tensor with zeros, its reflection or its edge (mode as
    :attr:`~tvm_ext.te.conv_spec.ConvGeometry.pad_mode`); None for any other call."""
    if not is_op(call, "relax.nn.pad") or static_shape(call.args[0]) is None:
        return None
    attrs = call.attrs
    widths = [int(v) for v in attrs.pad_width]
    mode = _PAD_MODES.get(str(attrs.pad_mode))
    if len(widths) != 8 or any(widths[:4]) or min(widths) < 0 or mode is None:
        return None
    if mode == "zeros" and float(attrs.pad_value) != 0.0:
        return None
    top, bottom, left, right = widths[4:]
    return mode, (top, left, bottom, right)


#: resize2d coordinate modes under which a nearest upsampling by an integer factor ``s``
#: reads input pixel ``out // s``: half-pixel centres ``(out + 0.5) / s - 0.5`` lie within
#: 0.5 of ``out // s`` and round to it (never a tie), asymmetric ones floor ``out / s``
_NEAREST_FLOOR = {
    ("half_pixel", "round"),
    ("half_pixel", "round_prefer_floor"),
    ("half_pixel", "round_prefer_ceil"),
    ("half_pixel", ""),
    ("asymmetric", "floor"),
}


def nearest_upsample_factor(call: relax.Call) -> int | None:
    """The integer factor ``s`` of a ``relax.image.resize2d`` that is a nearest NCHW
    upsampling by ``s`` on both axes (output pixel ``(y, x)`` = input ``(y // s, x // s)``);
    None for any other call."""
    if not is_op(call, "relax.image.resize2d"):
        return None
    attrs = call.attrs
    modes = (str(attrs.coordinate_transformation_mode), str(attrs.rounding_method))
    if str(attrs.method) != "nearest_neighbor" or str(attrs.layout) != "NCHW":
        return None
    if modes not in _NEAREST_FLOOR:
        return None
    src, out = static_shape(call.args[0]), static_shape(call)
    if src is None or out is None or len(src) != 4 or src[:2] != out[:2]:
        return None
    if out[2] % src[2] or out[3] % src[3] or out[2] // src[2] != out[3] // src[3]:
        return None
    s = out[2] // src[2]
    return s if s > 1 else None


def rewrite_relax_functions(
    mutator: relax.PyExprMutator, *, before: Callable[[relax.Function], None] | None = None
) -> tvm.IRModule:
    """Every Relax function of ``mutator``'s module visited by it (``before`` runs first on
    each: a pass's per-function planning), unused bindings removed; the new module."""
    for gv, func in mutator.mod_.functions_items():
        if isinstance(func, relax.Function):
            if before is not None:
                before(func)
            new = relax.analysis.remove_all_unused(mutator.visit_expr(func))
            mutator.builder_.update_func(gv, new)
    return mutator.builder_.get()
