"""TE compute of a pattern-sparse 3x3 convolution with a fused epilogue: the kernel's inputs
in call order (:func:`pattern_conv2d_placeholders`, and the constant arrays that fill them,
:func:`layout_arguments`) and its output (:func:`pattern_conv2d_compute`).

Stages (names in :mod:`~tvm_ext.te.block_names`; builders in :mod:`~tvm_ext.te.conv_stages`
and :mod:`~tvm_ext.te.epilogue_stage`):

- ``ps_pad``: padding of the input (any, also asymmetric, padding): zeros, or the input
  mirrored / replicated (a reflection or replication pad absorbed, index arithmetic), read
  from the low-resolution input when a nearest upsampling before the conv is absorbed
  (:class:`~tvm_ext.te.conv_spec.ConvGeometry` ``pad_mode``, ``upsample``).
- ``ps_conv_<p>`` (per-kernel layers reading a chained input): one reduction per pattern
  ``p`` of the layer. Its taps are Python constants, so every tap is a fixed offset in the
  generated code and nothing branches on the weight structure: ``Y_p[n, row, oh, ow, lane] =
  sum_{j, t} V_p[row, j, t, lane] * Xpad[n, I_p[row, j], oh*sh + dy_t*dh, ow*sw + dx_t*dw]``
  (a tap is its offset times the dilation).
- ``ps_conv_flat<g>`` (per-kernel layers): every kept kernel of a filter in one reduction
  over (slot, tap), vectorised over a flat run of output pixels. The padded input is stored
  as rows of ``pitch`` values (:class:`~tvm_ext.te.flat_plan.FlatInput`; strided convs as one
  plane per stride phase), so tap ``(dy, dx)`` of channel ``c`` is one offset from the output
  pixel ``y * pitch + x`` (stride 1: ``c * rows * pitch + dy * dh * pitch + dx * dw``): an
  offset array replaces the per-pattern code, no pattern is padded and the width needs no
  vector-sized tiles. Filters are sorted by kept kernels and split into up to
  :data:`~tvm_ext.te.flat_plan.FLAT_BUCKETS` stages (``g``) so short filters are not padded to
  the longest (:func:`~tvm_ext.te.flat_plan.flat_buckets`). Measured 1.9-10x faster than the
  per-pattern stages (BENCHMARKS.md, ``benchmarks/per_kernel.py``).
- ``ps_conv_all`` (block layers): one reduction over (slot, pattern, tap) into a single
  register tile vectorised over the block's output channels (columns planned by
  :mod:`~tvm_ext.te.block_plan`); offsets are selects over constants that fold once pattern
  and tap are unrolled. Measured 1.3–1.6x faster than per-pattern stages on block layers
  (BENCHMARKS.md).
- ``ps_epilogue``: sums the pattern stages, undoes the filter reorder (reads the row/lane
  of each output channel from ``inverse``), adds bias and residual and applies ReLU, all in
  the one pass that writes the output.

Chained layouts (:class:`~tvm_ext.te.conv_spec.BlockedActivation`, used by
``tvm_ext.passes.ChainConvLayouts``): a block layer can read its input as another block layer
wrote it and write its output as the next one reads it: ``(N, rows, H + 2b, W + 2b, lanes)``,
channel-blocked in the *producer's* filter order (position ``row * lanes + lane``) with a zero
border ``b`` that stands in for the consumer's padding. Then there is no ``ps_pad`` stage (the
consumer's channel indices are positions in that buffer, permuted at compile time) and
``ps_epilogue`` writes the conv's register rows as they are (plus bias, residual, ReLU, an
optional max pool and the border) instead of gathering them back into NCHW.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tvm_ext._compat import te
from tvm_ext.layout import SparseConvLayout
from tvm_ext.te.block_plan import merged_block_arrays
from tvm_ext.te.conv_spec import ConvGeometry, Epilogue
from tvm_ext.te.conv_stages import (
    ConvReader,
    block_conv_stage,
    flat_conv_stage,
    flat_input,
    flat_reader,
    input_reader,
    pattern_conv_stage,
    stage_sum,
)
from tvm_ext.te.epilogue_stage import EpilogueOperands, epilogue_stage
from tvm_ext.te.flat_plan import FlatInput, flat_buckets, uses_flat


def pattern_conv2d_placeholders(
    geometry: ConvGeometry, layout: SparseConvLayout, epilogue: Epilogue, *, dtype: str = "float32"
) -> list[te.Tensor]:
    """Inputs in call order: ``x, V_0, I_0, ..., (inverse), (bias), (residual),
    (residual index)`` (flat per-kernel layers: ``V_g, A_g`` per bucket, :func:`flat_buckets`).

    NCHW output: ``inverse`` and ``bias`` have one entry per output channel. Chained output:
    no ``inverse``; ``bias`` (and the residual index) have one entry per stored position
    (``rows * lanes``, the permutation applied at compile time)."""
    n, _, h, w = geometry.in_shape
    k, g = layout.shape[0], layout.block
    oh, ow = geometry.out_hw
    x_shape = (
        geometry.source_shape if geometry.in_layout is None else geometry.in_layout.shape(n, h, w)
    )
    out = [te.placeholder(x_shape, dtype, name="x")]
    if layout.kind == "block":
        vals, chans = merged_block_arrays(layout)
        out.append(te.placeholder(vals.shape, dtype, name="v"))
        out.append(te.placeholder(chans.shape, "int32", name="i"))
    elif uses_flat(layout, geometry):
        if epilogue.chained:
            raise ValueError(
                "a flat per-kernel layer writes NCHW (or planar) output, not rows of lanes"
            )
        for g, vals in enumerate(flat_buckets(layout).values):
            out.append(te.placeholder(vals.shape, dtype, name=f"v{g}"))
            out.append(te.placeholder(vals.shape, "int32", name=f"a{g}"))
    else:
        for p, vals in enumerate(layout.values):
            rows, cmax, ntaps, _ = vals.shape
            out.append(te.placeholder((rows, cmax, ntaps, g), dtype, name=f"v{p}"))
            out.append(te.placeholder((rows, cmax), "int32", name=f"i{p}"))
    positions = k if not epilogue.chained else layout.rows * g
    if not epilogue.chained:
        out.append(te.placeholder((k,), "int32", name="inverse"))
    if epilogue.bias:
        out.append(te.placeholder((positions,), dtype, name="bias"))
    if epilogue.residual:
        rl = epilogue.residual_layout
        r_shape = (n, k, oh, ow) if rl is None else rl.shape(n, oh, ow)
        out.append(te.placeholder(r_shape, dtype, name="residual"))
        if epilogue.residual_index:
            out.append(te.placeholder((positions,), "int32", name="residual_index"))
    return out


def pattern_conv2d_compute(
    inputs: Sequence[te.Tensor],
    geometry: ConvGeometry,
    layout: SparseConvLayout,
    epilogue: Epilogue,
) -> te.Tensor:
    """The output tensor, reading ``inputs`` (ordered as :func:`pattern_conv2d_placeholders`)."""
    flat = FlatInput.of(geometry) if uses_flat(layout, geometry) else None
    conv_at, n_arrays = _conv_stages(inputs, geometry, layout, flat)
    operands = EpilogueOperands.take(inputs[1 + 2 * n_arrays :], epilogue)
    return epilogue_stage(conv_at, operands, geometry, layout, epilogue, dtype=inputs[0].dtype)


def _conv_stages(
    inputs: Sequence[te.Tensor],
    geometry: ConvGeometry,
    layout: SparseConvLayout,
    flat: FlatInput | None,
) -> tuple[ConvReader, int]:
    """The ``ps_pad`` and ``ps_conv_*`` stages: how the epilogue reads them, and how many
    (values, indices) array pairs of ``inputs`` they take."""
    x = inputs[0]
    if flat is not None:
        starts = flat_buckets(layout).starts
        xf = flat_input(x, geometry, flat)
        stages = [
            flat_conv_stage(inputs[1 + 2 * b], inputs[2 + 2 * b], xf, flat, b)
            for b in range(len(starts) - 1)
        ]
        return flat_reader(stages, flat, starts), len(stages)
    xp = input_reader(x, geometry)
    if layout.kind == "block":
        stages = [block_conv_stage(inputs[1], inputs[2], xp, layout, geometry)]
    else:
        stages = [
            pattern_conv_stage(inputs[1 + 2 * p], inputs[2 + 2 * p], xp, layout, geometry, p)
            for p in range(len(layout.values))
        ]
    return stage_sum(stages), len(stages)


def pattern_conv2d_te(
    geometry: ConvGeometry, layout: SparseConvLayout, epilogue: Epilogue, *, dtype: str = "float32"
) -> list[te.Tensor]:
    """Placeholders and output, for ``te.create_prim_func`` (tests, tuning tasks)."""
    inputs = pattern_conv2d_placeholders(geometry, layout, epilogue, dtype=dtype)
    return [*inputs, pattern_conv2d_compute(inputs, geometry, layout, epilogue)]


def layout_arguments(layout: SparseConvLayout, geometry: ConvGeometry) -> list[np.ndarray]:
    """The constant arrays, in the placeholder order of :func:`pattern_conv2d_te` (flat
    per-kernel layers read offsets into their input, which depend on ``geometry``)."""
    consts: list[np.ndarray] = []
    if uses_flat(layout, geometry):
        fb = flat_buckets(layout, FlatInput.of(geometry))
        for vals, offs in zip(fb.values, fb.offsets, strict=True):
            consts += [vals, offs]
        consts.append(fb.inverse)
        return consts
    if layout.kind == "block":
        consts += list(merged_block_arrays(layout))
    else:
        for vals, chans in zip(layout.values, layout.channels, strict=True):
            consts += [vals, chans]
    consts.append(layout.inverse)
    return consts
