"""TE compute of a pattern-sparse 3x3 convolution with a fused epilogue.

Stages (block names are stable; schedules and tuning rules find them by name):

- ``ps_pad``: zero padding of the input (any, also asymmetric, padding).
- ``ps_conv_<p>``: one reduction per pattern ``p`` of the layer. Its taps are Python
  constants, so every tap is a fixed offset in the generated code and nothing branches on
  the weight structure: ``Y_p[n, row, oh, ow, lane] = sum_{j, t} V_p[row, j, t, lane] *
  Xpad[n, I_p[row, j], oh*sh + dy_t, ow*sw + dx_t]``.
- ``ps_epilogue``: sums the pattern stages, undoes the filter reorder (reads the row/lane
  of each output channel from ``inverse``), adds bias and residual and applies ReLU, all in
  the one pass that writes the output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tvm_ext._compat import te, tirx
from tvm_ext.layout import SparseConvLayout

CONV_BLOCK_PREFIX = "ps_conv_"
EPILOGUE_BLOCK = "ps_epilogue"
PAD_BLOCK = "ps_pad"
SCHEDULE_RULE = "patsparse.pattern_conv2d"
PAD_RULE = "patsparse.pattern_pad"


@dataclass(frozen=True)
class ConvGeometry:
    """Input shape, stride and padding (top, left, bottom, right) of an NCHW conv."""

    in_shape: tuple[int, int, int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]

    @property
    def out_hw(self) -> tuple[int, int]:
        _, _, h, w = self.in_shape
        pt, pl, pb, pr = self.padding
        sh, sw = self.stride
        return (h + pt + pb - 3) // sh + 1, (w + pl + pr - 3) // sw + 1


@dataclass(frozen=True)
class Epilogue:
    """What the kernel fuses after the convolution."""

    bias: bool = False
    residual: bool = False
    relu: bool = False


def pattern_conv2d_placeholders(
    geometry: ConvGeometry, layout: SparseConvLayout, epilogue: Epilogue, *, dtype: str = "float32"
) -> list[te.Tensor]:
    """Inputs in call order: ``x, V_0, I_0, ..., inverse, (bias), (residual)``."""
    n, c, h, w = geometry.in_shape
    k, g = layout.shape[0], layout.block
    oh, ow = geometry.out_hw
    out = [te.placeholder((n, c, h, w), dtype, name="x")]
    for p, vals in enumerate(layout.values):
        rows, cmax, ntaps, _ = vals.shape
        out.append(te.placeholder((rows, cmax, ntaps, g), dtype, name=f"v{p}"))
        out.append(te.placeholder((rows, cmax), "int32", name=f"i{p}"))
    out.append(te.placeholder((k,), "int32", name="inverse"))
    if epilogue.bias:
        out.append(te.placeholder((k,), dtype, name="bias"))
    if epilogue.residual:
        out.append(te.placeholder((n, k, oh, ow), dtype, name="residual"))
    return out


def pattern_conv2d_compute(
    inputs: Sequence[te.Tensor],
    geometry: ConvGeometry,
    layout: SparseConvLayout,
    epilogue: Epilogue,
) -> te.Tensor:
    """The output tensor, reading ``inputs`` (ordered as :func:`pattern_conv2d_placeholders`)."""
    x = inputs[0]
    dtype = x.dtype
    n, c, h, w = geometry.in_shape
    k, g = layout.shape[0], layout.block
    oh, ow = geometry.out_hw
    pt, pl, pb, pr = geometry.padding
    sh, sw = geometry.stride
    if any(geometry.padding):
        xp = te.compute(
            (n, c, h + pt + pb, w + pl + pr),
            lambda a, b, i, j: te.if_then_else(
                te.all(i >= pt, i < h + pt, j >= pl, j < w + pl),
                x[a, b, i - pt, j - pl],
                tirx.const(0.0, dtype),
            ),
            name=PAD_BLOCK,
            attrs={"schedule_rule": PAD_RULE},
        )
    else:
        xp = x
    stages = []
    for p, vals in enumerate(layout.values):
        rows, cmax, _, _ = vals.shape
        v, idx = inputs[1 + 2 * p], inputs[2 + 2 * p]
        body = _pattern_body(
            v, idx, xp, layout.taps(p), te.reduce_axis((0, cmax), name="j"), sh, sw
        )
        stages.append(
            te.compute(
                (n, rows, oh, ow, g),
                body,
                name=f"{CONV_BLOCK_PREFIX}{p}",
                attrs={"schedule_rule": SCHEDULE_RULE},
            )
        )
    rest = list(inputs[1 + 2 * len(layout.values) :])
    inverse = rest.pop(0)
    bias = rest.pop(0) if epilogue.bias else None
    residual = rest.pop(0) if epilogue.residual else None

    def out_body(a, kk, y, z):  # type: ignore[no-untyped-def]
        pos = inverse[kk]
        row, lane = (pos // g, pos % g) if g > 1 else (pos, 0)
        acc = stages[0][a, row, y, z, lane]
        for s in stages[1:]:
            acc = acc + s[a, row, y, z, lane]
        if bias is not None:
            acc = acc + bias[kk]
        if residual is not None:
            acc = acc + residual[a, kk, y, z]
        if epilogue.relu:
            acc = te.max(acc, tirx.const(0.0, dtype))
        return acc

    return te.compute((n, k, oh, ow), out_body, name=EPILOGUE_BLOCK)


def pattern_conv2d_te(
    geometry: ConvGeometry, layout: SparseConvLayout, epilogue: Epilogue, *, dtype: str = "float32"
) -> list[te.Tensor]:
    """Placeholders and output, for ``te.create_prim_func`` (tests, tuning tasks)."""
    inputs = pattern_conv2d_placeholders(geometry, layout, epilogue, dtype=dtype)
    return [*inputs, pattern_conv2d_compute(inputs, geometry, layout, epilogue)]


def _pattern_body(v, idx, xp, taps, j, sh, sw):  # type: ignore[no-untyped-def]
    """The reduction of one pattern; taps unrolled in Python (constant offsets, no branch)."""

    def body(a, r, y, z, lane):  # type: ignore[no-untyped-def]
        total = None
        for t, (dy, dx) in enumerate(taps):
            term = v[r, j, t, lane] * xp[a, idx[r, j], y * sh + dy, z * sw + dx]
            total = term if total is None else total + term
        return te.sum(total, axis=j)

    return body


def layout_arguments(layout: SparseConvLayout) -> list[np.ndarray]:
    """The constant arrays, in the placeholder order of :func:`pattern_conv2d_te`."""
    consts: list[np.ndarray] = []
    for vals, chans in zip(layout.values, layout.channels, strict=True):
        consts += [vals, chans]
    consts.append(layout.inverse)
    return consts
