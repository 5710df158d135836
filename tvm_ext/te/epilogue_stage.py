"""The kernel's last stage, ``ps_epilogue``: sums (or picks) the conv stages, undoes the
filter reorder where the output is NCHW or planar, adds bias and residual, applies ReLU and
an optional max pool, and writes the output (NCHW, or a chained layout with a zero border)
in one pass."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tvm_ext._compat import te, tirx
from tvm_ext.layout import SparseConvLayout
from tvm_ext.te.block_names import EPILOGUE_BLOCK, POOL_ATTR
from tvm_ext.te.conv_spec import ConvGeometry, Epilogue
from tvm_ext.te.conv_stages import ConvReader


@dataclass(frozen=True)
class EpilogueOperands:
    """The epilogue's inputs after the conv's arrays (``None``: not an input of this kernel)."""

    inverse: te.Tensor | None
    bias: te.Tensor | None
    residual: te.Tensor | None
    residual_index: te.Tensor | None

    @classmethod
    def take(cls, rest: Sequence[te.Tensor], epilogue: Epilogue) -> EpilogueOperands:
        """Read from ``rest``, in the placeholder order: inverse, bias, residual, its index."""
        items = list(rest)
        inverse = items.pop(0) if not epilogue.chained else None
        bias = items.pop(0) if epilogue.bias else None
        residual = items.pop(0) if epilogue.residual else None
        res_index = items.pop(0) if epilogue.residual_index else None
        return cls(inverse, bias, residual, res_index)


def epilogue_stage(
    conv_at: ConvReader,
    operands: EpilogueOperands,
    geometry: ConvGeometry,
    layout: SparseConvLayout,
    epilogue: Epilogue,
    *,
    dtype: str,
) -> te.Tensor:
    """``ps_epilogue``, reading the conv through ``conv_at``: NCHW output (gathered through
    ``inverse``) or a chained one (:meth:`Epilogue.out_activation`)."""
    zero = tirx.const(0.0, dtype)
    finish = _fused_ops(operands, epilogue, zero)
    if epilogue.out_border is None:
        return _nchw_output(conv_at, finish, operands.inverse, geometry, layout, epilogue)
    return _chained_output(conv_at, finish, operands.inverse, geometry, layout, epilogue, zero)


def _fused_ops(operands: EpilogueOperands, epilogue: Epilogue, zero: Any) -> Callable[..., Any]:
    """``finish(acc, a, out_ch, y, z)``: bias, residual, ReLU of the value of output channel /
    position ``out_ch``."""
    bias, residual, res_index = operands.bias, operands.residual, operands.residual_index
    rl = epilogue.residual_layout

    def finish(acc, a, out_ch, y, z):  # type: ignore[no-untyped-def]
        if bias is not None:
            acc = acc + bias[out_ch]
        if residual is not None:
            if res_index is None:
                acc = acc + residual[a, out_ch, y, z]
            elif rl is None:
                acc = acc + residual[a, res_index[out_ch], y, z]
            else:
                q = res_index[out_ch]
                b = rl.border
                acc = acc + residual[a, q // rl.lanes, y + b, z + b, q % rl.lanes]
        if epilogue.relu:
            acc = te.max(acc, zero)
        return acc

    return finish


def _pooled(value: Callable[..., Any], pool: int) -> Callable[..., Any]:
    """``value(y, z)`` at the conv's output pixel, max-pooled over ``pool`` x ``pool``."""

    def at(py, pz):  # type: ignore[no-untyped-def]
        if pool == 1:
            return value(py, pz)
        out = None
        for i in range(pool):
            for j in range(pool):
                v = value(py * pool + i, pz * pool + j)
                out = v if out is None else te.max(out, v)
        return out

    return at


def _pooled_hw(geometry: ConvGeometry, pool: int) -> tuple[int, int]:
    oh, ow = geometry.out_hw
    return (oh - pool) // pool + 1, (ow - pool) // pool + 1


def _nchw_output(  # type: ignore[no-untyped-def]
    conv_at: ConvReader, finish, inverse, geometry, layout, epilogue: Epilogue
) -> te.Tensor:
    """``(N, K, OH, OW)``: each output channel gathered from its row / lane (``inverse``)."""
    assert inverse is not None
    n, k, g = geometry.in_shape[0], layout.shape[0], layout.block
    ph, pw = _pooled_hw(geometry, epilogue.pool)

    def out_body(a, kk, y, z):  # type: ignore[no-untyped-def]
        pos = inverse[kk]
        row, lane = (pos // g, pos % g) if g > 1 else (pos, 0)
        at = _pooled(
            lambda yy, zz: finish(conv_at(a, row, yy, zz, lane), a, kk, yy, zz), epilogue.pool
        )
        return at(y, z)

    return te.compute((n, k, ph, pw), out_body, name=EPILOGUE_BLOCK, attrs=_pool_attrs(epilogue))


def _chained_output(  # type: ignore[no-untyped-def]
    conv_at: ConvReader, finish, inverse, geometry, layout, epilogue: Epilogue, zero
) -> te.Tensor:
    """A chained output with a zero border: the conv's rows of lanes as they are, or with
    ``planar`` one row per output channel (gathered through ``inverse``)."""
    n, g = geometry.in_shape[0], layout.block
    ph, pw = _pooled_hw(geometry, epilogue.pool)
    b = int(epilogue.out_border or 0)

    def chained_body(a, row, yb, zb, lane):  # type: ignore[no-untyped-def]
        # clamped indices keep the conv region of border pixels inside the conv (what
        # compute_at needs); the border itself is a zero
        y = te.max(te.min(yb - b, ph - 1), 0)
        z = te.max(te.min(zb - b, pw - 1), 0)
        if epilogue.planar:  # row = output channel: gather it from the conv's rows of lanes
            assert inverse is not None
            pos = inverse[row]
            crow, clane, out_ch = (pos // g, pos % g, row) if g > 1 else (pos, 0, row)
        else:
            crow, clane, out_ch = row, lane, row * g + lane
        at = _pooled(
            lambda yy, zz: finish(conv_at(a, crow, yy, zz, clane), a, out_ch, yy, zz),
            epilogue.pool,
        )
        inside = te.all(yb >= b, yb < ph + b, zb >= b, zb < pw + b)
        return te.if_then_else(inside, at(y, z), zero)

    act = epilogue.out_activation(layout)
    assert act is not None
    shape = act.shape(n, ph, pw)
    return te.compute(shape, chained_body, name=EPILOGUE_BLOCK, attrs=_pool_attrs(epilogue))


def _pool_attrs(epilogue: Epilogue) -> dict[str, int]:
    return {POOL_ATTR: epilogue.pool} if epilogue.pool > 1 else {}
