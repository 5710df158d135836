"""TE compute of a pattern-sparse 3x3 convolution with a fused epilogue.

Stages (block names are stable; schedules and tuning rules find them by name):

- ``ps_pad``: zero padding of the input (any, also asymmetric, padding).
- ``ps_conv_<p>`` (per-kernel layers): one reduction per pattern ``p`` of the layer. Its
  taps are Python constants, so every tap is a fixed offset in the generated code and
  nothing branches on the weight structure: ``Y_p[n, row, oh, ow, lane] = sum_{j, t}
  V_p[row, j, t, lane] * Xpad[n, I_p[row, j], oh*sh + dy_t, ow*sw + dx_t]``.
- ``ps_conv_all`` (block layers): one reduction over (slot, pattern, tap) into a single
  register tile vectorised over the block's output channels; offsets are selects over
  constants that fold once pattern and tap are unrolled. Measured 1.3–1.6x faster than
  per-pattern stages on block layers (BENCHMARKS.md).
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
    kernel: tuple[int, int] = (3, 3)

    @property
    def out_hw(self) -> tuple[int, int]:
        _, _, h, w = self.in_shape
        pt, pl, pb, pr = self.padding
        sh, sw = self.stride
        kh, kw = self.kernel
        return (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1


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
    if layout.kind == "block":
        vals, chans = merged_block_arrays(layout)
        out.append(te.placeholder(vals.shape, dtype, name="v"))
        out.append(te.placeholder(chans.shape, "int32", name="i"))
    else:
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
    n_arrays = 1 if layout.kind == "block" else len(layout.values)
    if layout.kind == "block":
        stages.append(_block_stage(inputs[1], inputs[2], xp, layout, geometry))
    for p, vals in enumerate(layout.values if layout.kind != "block" else ()):
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
    rest = list(inputs[1 + 2 * n_arrays :])
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


def _block_stage(v, idx, xp, layout, geometry):  # type: ignore[no-untyped-def]
    """All patterns of a block layer accumulate into one register tile.

    Reduction over (kernel slot, pattern, tap); the tap offset is a select over Python
    constants indexed by (pattern, tap), which folds to an immediate once the pattern and tap
    loops are unrolled (the schedules unroll them), so the inner loop has no branch.
    """
    n = geometry.in_shape[0]
    oh, ow = geometry.out_hw
    sh, sw = geometry.stride
    rows, npat, cmax, ntaps, g = (int(d) for d in v.shape)
    taps = [layout.taps(p) for p in range(npat)]
    k2 = te.reduce_axis((0, cmax), name="k2")
    p = te.reduce_axis((0, npat), name="p")
    t = te.reduce_axis((0, ntaps), name="t")

    def offset(which: int):  # type: ignore[no-untyped-def]
        expr = tirx.const(int(taps[0][0][which]), "int32")
        for pp in range(npat):
            for tt in range(ntaps):
                if pp or tt:
                    expr = te.if_then_else(te.all(p == pp, t == tt), int(taps[pp][tt][which]), expr)
        return expr

    dy, dx = offset(0), offset(1)
    return te.compute(
        (n, rows, oh, ow, g),
        lambda a, r, y, z, lane: te.sum(
            v[r, p, k2, t, lane] * xp[a, idx[r, p, k2], y * sh + dy, z * sw + dx],
            axis=[k2, p, t],
        ),
        name=f"{CONV_BLOCK_PREFIX}all",
        attrs={"schedule_rule": SCHEDULE_RULE},
    )


def merged_block_arrays(layout: SparseConvLayout) -> tuple[np.ndarray, np.ndarray]:
    """Block layers: all patterns in one ``(rows, P, cmax, taps, G)`` weight array and one
    ``(rows, P, cmax)`` channel array, zero-padded to the longest pattern list."""
    npat = layout.patterns
    cmax = max(int(v.shape[1]) for v in layout.values)
    ntaps, g = int(layout.values[0].shape[2]), layout.block
    vals = np.zeros((layout.rows, npat, cmax, ntaps, g), dtype=np.float32)
    chans = np.zeros((layout.rows, npat, cmax), dtype=np.int32)
    for p, (v, ch) in enumerate(zip(layout.values, layout.channels, strict=True)):
        vals[:, p, : v.shape[1]] = v
        chans[:, p, : ch.shape[1]] = ch
    return vals, chans


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
    if layout.kind == "block":
        consts += list(merged_block_arrays(layout))
    else:
        for vals, chans in zip(layout.values, layout.channels, strict=True):
            consts += [vals, chans]
    consts.append(layout.inverse)
    return consts
