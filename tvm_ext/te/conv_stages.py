"""The kernel's input and conv stages (``ps_pad``, ``ps_conv_*``) and how the epilogue reads
them.

Each builder returns a ``te.compute`` (or, for an input read in place, an index function);
:mod:`tvm_ext.te.pattern_conv` puts them together. Block names and ``schedule_rule``
annotations come from :mod:`tvm_ext.te.block_names`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tvm_ext._compat import te, tirx
from tvm_ext.layout import SparseConvLayout
from tvm_ext.te.block_names import CONV_BLOCK_PREFIX, PAD_BLOCK, PAD_RULE, SCHEDULE_RULE
from tvm_ext.te.block_plan import column_taps
from tvm_ext.te.conv_spec import ConvGeometry
from tvm_ext.te.flat_plan import FlatInput

#: ``read(a, c, i, j)``: input channel ``c`` at row ``i``, column ``j`` of the padded input
InputReader = Callable[..., Any]
#: ``conv_at(a, row, y, z, lane)``: the conv's value at a register row / output pixel / lane
ConvReader = Callable[..., Any]


def flat_input(x: te.Tensor, geometry: ConvGeometry, flat: FlatInput) -> te.Tensor:
    """``ps_pad`` of a flat per-kernel layer: ``(N, C * phases * rows, pitch)``, every
    channel's padded image as phase planes followed by zero rows (:class:`FlatInput`)."""
    n, c, _, _ = geometry.in_shape
    rows, phases = flat.rows, flat.phases
    sh, sw = flat.stride

    read = padded_read(x, geometry)

    def body(a, row, col):  # type: ignore[no-untyped-def]
        plane, i = row // rows, row % rows
        ch, phase = plane // phases, plane % phases
        yy = i * sh + phase // sw if sh > 1 else i
        xx = col * sw + phase % sw if sw > 1 else col
        return read(a, ch, yy, xx)

    return te.compute(
        (n, c * phases * rows, flat.pitch),
        body,
        name=PAD_BLOCK,
        attrs={"schedule_rule": PAD_RULE},
    )


def flat_conv_stage(v, offsets, xf, flat: FlatInput, bucket: int):  # type: ignore[no-untyped-def]
    """``ps_conv_flat<bucket>``: ``Y[n, row, j] = sum_{s, t} V[row, s, t] * Xflat[n, A[row, s,
    t] + j]`` (the flat index split back into the ``(N, C * rows, pitch)`` buffer, which
    lowering folds)."""
    rows, slots, ntaps = (int(d) for d in v.shape)
    s = te.reduce_axis((0, slots), name="s")
    t = te.reduce_axis((0, ntaps), name="t")
    pitch = flat.pitch

    def body(a, r, j):  # type: ignore[no-untyped-def]
        at = offsets[r, s, t] + j
        return te.sum(v[r, s, t] * xf[a, at // pitch, at % pitch], axis=[s, t])

    return te.compute(
        (int(xf.shape[0]), rows, flat.length),
        body,
        name=f"{CONV_BLOCK_PREFIX}flat{bucket}",
        attrs={"schedule_rule": SCHEDULE_RULE},
    )


def input_reader(x: te.Tensor, geometry: ConvGeometry) -> InputReader:
    """``read(a, c, i, j)``: input channel ``c`` at row ``i``, column ``j`` of the *padded*
    input. NCHW input: a ``ps_pad`` stage (if there is padding); a chained input is read in
    place, ``c`` being a position in it and its border standing in for the padding."""
    n, c, h, w = geometry.in_shape
    pt, pl, pb, pr = geometry.padding
    lay = geometry.in_layout
    if lay is not None:
        if max(geometry.padding) > lay.border:
            raise ValueError(
                f"padding {geometry.padding} needs a border >= {max(geometry.padding)}, "
                f"the chained input has {lay.border}"
            )
        oy, ox = lay.border - pt, lay.border - pl
        if lay.lanes == 1:
            return lambda a, ch, i, j: x[a, ch, i + oy, j + ox, 0]
        return lambda a, ch, i, j: x[a, ch // lay.lanes, i + oy, j + ox, ch % lay.lanes]
    if any(geometry.padding) or geometry.absorbs:
        xp = te.compute(
            (n, c, h + pt + pb, w + pl + pr),
            padded_read(x, geometry),
            name=PAD_BLOCK,
            attrs={"schedule_rule": PAD_RULE},
        )
    else:
        xp = x
    return lambda a, ch, i, j: xp[a, ch, i, j]


def padded_read(x: te.Tensor, geometry: ConvGeometry) -> InputReader:
    """``read(a, c, i, j)``: the padded logical input at row ``i``, column ``j``, from the
    stored NCHW ``x``: zeros outside (``pad_mode`` zeros), or the index mirrored
    (``reflect``: ``-1`` reads ``1``) or clamped (``replicate``) into the input, then divided
    by the nearest upsampling factor (the stored input is the low-resolution one). Index
    arithmetic only: no branch on the reflected / replicated path."""
    _, _, h, w = geometry.in_shape
    pt, pl, _, _ = geometry.padding
    s = geometry.upsample
    zero = tirx.const(0.0, x.dtype)

    def down(v):  # type: ignore[no-untyped-def]
        return v if s == 1 else tirx.floordiv(v, s)

    if geometry.pad_mode == "zeros":

        def read(a, b, i, j):  # type: ignore[no-untyped-def]
            inside = te.all(i >= pt, i < h + pt, j >= pl, j < w + pl)
            return te.if_then_else(inside, x[a, b, down(i - pt), down(j - pl)], zero)

        return read

    def fold(v, size: int):  # type: ignore[no-untyped-def]
        if geometry.pad_mode == "reflect":  # valid for padding < size (checked)
            return (size - 1) - te.abs((size - 1) - te.abs(v))
        return te.max(te.min(v, size - 1), 0)

    return lambda a, b, i, j: x[a, b, down(fold(i - pt, h)), down(fold(j - pl, w))]


def pattern_conv_stage(  # type: ignore[no-untyped-def]
    v, idx, xp: InputReader, layout: SparseConvLayout, geometry: ConvGeometry, p: int
):
    """``ps_conv_<p>``: the reduction of pattern ``p`` of a per-kernel layer, its taps unrolled
    in Python (constant offsets, dilated, no branch)."""
    n = geometry.in_shape[0]
    oh, ow = geometry.out_hw
    sh, sw = geometry.stride
    rows, cmax, _, _ = layout.values[p].shape
    taps = [geometry.dilate(tap) for tap in layout.taps(p)]
    j = te.reduce_axis((0, cmax), name="j")

    def body(a, r, y, z, lane):  # type: ignore[no-untyped-def]
        total = None
        for t, (dy, dx) in enumerate(taps):
            term = v[r, j, t, lane] * xp(a, idx[r, j], y * sh + dy, z * sw + dx)
            total = term if total is None else total + term
        return te.sum(total, axis=j)

    return te.compute(
        (n, rows, oh, ow, layout.block),
        body,
        name=f"{CONV_BLOCK_PREFIX}{p}",
        attrs={"schedule_rule": SCHEDULE_RULE},
    )


def block_conv_stage(v, idx, xp, layout, geometry):  # type: ignore[no-untyped-def]
    """``ps_conv_all``: all patterns of a block layer accumulate into one register tile.

    Reduction over (kernel slot, column, tap) (:func:`~tvm_ext.te.block_plan.block_columns`:
    a column is a run of one pattern's slots); the tap offset (dilated) is a select over Python
    constants indexed by (column, tap) (:func:`_tap_offset`), which folds to an immediate once
    the column and tap loops are unrolled (the schedules unroll them), so the inner loop has
    no branch.
    """
    n = geometry.in_shape[0]
    oh, ow = geometry.out_hw
    sh, sw = geometry.stride
    rows, npat, cmax, ntaps, g = (int(d) for d in v.shape)
    taps = [[geometry.dilate(tap) for tap in col] for col in column_taps(layout)]
    k2 = te.reduce_axis((0, cmax), name="k2")
    p = te.reduce_axis((0, npat), name="p")
    t = te.reduce_axis((0, ntaps), name="t")

    dy, dx = (_tap_offset(taps, p, t, which) for which in (0, 1))
    return te.compute(
        (n, rows, oh, ow, g),
        lambda a, r, y, z, lane: te.sum(
            v[r, p, k2, t, lane] * xp(a, idx[r, p, k2], y * sh + dy, z * sw + dx),
            axis=[k2, p, t],
        ),
        name=f"{CONV_BLOCK_PREFIX}all",
        attrs={"schedule_rule": SCHEDULE_RULE},
    )


#: bits of one tap's row / column offset in :func:`_tap_offset`'s packed constants
TAP_BITS = 4


def _tap_offset(taps, p, t, which: int):  # type: ignore[no-untyped-def]
    """Row (``which`` 0) or column (1) offset of tap ``t`` of column ``p``, as an expression
    of the two loop variables over Python constants.

    Each column's offsets are packed into one constant, :data:`TAP_BITS` bits a tap, picked
    by a select over the columns and shifted by the tap: ``P`` selects instead of ``P x T``
    (the expression is part of every tuning task's IRModule, so of the logs' size). With the
    loop variables fixed, TIR's simplifier folds the select and the shift; the mask of two
    constants left is folded by LLVM (same machine code and speed as the per-(column, tap)
    selects, BENCHMARKS.md). Offsets that do not pack into 31 bits take a select per
    (column, tap).
    """
    values = [[int(tap[which]) for tap in col] for col in taps]
    ntaps = max(len(col) for col in values)
    if max(map(max, values)) < 1 << TAP_BITS and ntaps * TAP_BITS <= 31:
        codes = [sum(v << (TAP_BITS * i) for i, v in enumerate(col)) for col in values]
        code = tirx.const(codes[0], "int32")
        for pp in range(1, len(codes)):
            code = te.if_then_else(p == pp, codes[pp], code)
        return tirx.bitwise_and(
            tirx.shift_right(code, t * TAP_BITS), tirx.const((1 << TAP_BITS) - 1, "int32")
        )
    expr = tirx.const(values[0][0], "int32")
    for pp, col in enumerate(values):
        for tt, v in enumerate(col):
            if pp or tt:
                expr = te.if_then_else(te.all(p == pp, t == tt), v, expr)
    return expr


def flat_reader(stages: Sequence[te.Tensor], flat: FlatInput, starts: Sequence[int]) -> ConvReader:
    """How the epilogue reads flat stages: the filter's bucket picked by its sorted position
    ``row`` (indices clamped: both sides of each select are read); ``lane`` is unused."""

    def conv_at(a, row, y, z, lane):  # type: ignore[no-untyped-def]
        j = y * flat.pitch + z
        acc = None
        for b in reversed(range(len(stages))):
            last = starts[b + 1] - starts[b] - 1
            here = stages[b][a, te.max(te.min(row - starts[b], last), 0), j]
            acc = here if acc is None else te.if_then_else(row < starts[b + 1], here, acc)
        return acc

    return conv_at


def stage_sum(stages: Sequence[te.Tensor]) -> ConvReader:
    """How the epilogue reads per-pattern stages (or the one block stage): their sum."""

    def conv_at(a, row, y, z, lane):  # type: ignore[no-untyped-def]
        acc = stages[0][a, row, y, z, lane]
        for s in stages[1:]:
            acc = acc + s[a, row, y, z, lane]
        return acc

    return conv_at
