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

Chained layouts (:class:`BlockedActivation`, used by ``tvm_ext.passes.ChainConvLayouts``):
a block layer can read its input as another block layer wrote it and write its output as the
next one reads it: ``(N, rows, H + 2b, W + 2b, lanes)``, channel-blocked in the *producer's*
filter order (position ``row * lanes + lane``) with a zero border ``b`` that stands in for the
consumer's padding. Then there is no ``ps_pad`` stage (the consumer's channel indices are
positions in that buffer, permuted at compile time) and ``ps_epilogue`` writes the conv's
register rows as they are (plus bias, residual, ReLU, an optional max pool and the border)
instead of gathering them back into NCHW.
"""

from __future__ import annotations

import math
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
class BlockedActivation:
    """A chained activation: ``(N, rows, H + 2 * border, W + 2 * border, lanes)``.

    Channel ``c`` of the logical NCHW tensor lives at position ``p = inverse[c]`` of the layer
    that wrote it, i.e. at ``[:, p // lanes, border + y, border + x, p % lanes]``; positions
    no channel maps to (padding filters) and the border hold zeros.
    """

    rows: int
    lanes: int
    border: int

    def shape(self, n: int, h: int, w: int) -> tuple[int, int, int, int, int]:
        """The buffer shape for a logical ``(n, *, h, w)`` tensor."""
        b = self.border
        return (n, self.rows, h + 2 * b, w + 2 * b, self.lanes)


@dataclass(frozen=True)
class ConvGeometry:
    """Input shape, stride and padding (top, left, bottom, right) of an NCHW conv.

    ``in_shape`` is always the logical NCHW shape; ``in_layout`` says how the input is stored
    (``None``: NCHW, padded by the ``ps_pad`` stage; else a chained buffer whose border covers
    the padding, read in place).
    """

    in_shape: tuple[int, int, int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]
    kernel: tuple[int, int] = (3, 3)
    in_layout: BlockedActivation | None = None

    @property
    def out_hw(self) -> tuple[int, int]:
        _, _, h, w = self.in_shape
        pt, pl, pb, pr = self.padding
        sh, sw = self.stride
        kh, kw = self.kernel
        return (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1


@dataclass(frozen=True)
class Epilogue:
    """What the kernel fuses after the convolution, and how it writes the output.

    ``out_border``: ``None`` writes NCHW (the filter reorder undone); an int writes the
    chained layout with this zero border: rows and lanes of the conv's own layout, or with
    ``planar`` one row per output channel in the original order (lanes 1: NCHW with a border,
    the filter reorder undone).
    ``pool``: a max pool with window = stride = ``pool`` after ReLU (1: none).
    ``residual_layout``: how the residual is stored (``None``: NCHW).
    """

    bias: bool = False
    residual: bool = False
    relu: bool = False
    out_border: int | None = None
    planar: bool = False
    pool: int = 1
    residual_layout: BlockedActivation | None = None

    @property
    def chained(self) -> bool:
        """The output keeps the conv's own rows of lanes (no gather, no ``inverse``)."""
        return self.out_border is not None and not self.planar

    @property
    def residual_index(self) -> bool:
        """The residual is read through an index array (output or residual is chained)."""
        return self.residual and (self.chained or self.residual_layout is not None)

    def out_activation(self, layout: SparseConvLayout) -> BlockedActivation | None:
        """How the output is stored (``None``: NCHW)."""
        if self.out_border is None:
            return None
        if self.planar:
            return BlockedActivation(layout.shape[0], 1, self.out_border)
        return BlockedActivation(layout.rows, layout.block, self.out_border)

    def out_shape(
        self, n: int, k: int, oh: int, ow: int, layout: SparseConvLayout
    ) -> tuple[int, ...]:
        """Shape of the output buffer for a conv with ``(n, k, oh, ow)`` output."""
        ph, pw = (oh - self.pool) // self.pool + 1, (ow - self.pool) // self.pool + 1
        act = self.out_activation(layout)
        return (n, k, ph, pw) if act is None else act.shape(n, ph, pw)


def pattern_conv2d_placeholders(
    geometry: ConvGeometry, layout: SparseConvLayout, epilogue: Epilogue, *, dtype: str = "float32"
) -> list[te.Tensor]:
    """Inputs in call order: ``x, V_0, I_0, ..., (inverse), (bias), (residual),
    (residual index)``.

    NCHW output: ``inverse`` and ``bias`` have one entry per output channel. Chained output:
    no ``inverse``; ``bias`` (and the residual index) have one entry per stored position
    (``rows * lanes``, the permutation applied at compile time)."""
    n, c, h, w = geometry.in_shape
    k, g = layout.shape[0], layout.block
    oh, ow = geometry.out_hw
    x_shape = (n, c, h, w) if geometry.in_layout is None else geometry.in_layout.shape(n, h, w)
    out = [te.placeholder(x_shape, dtype, name="x")]
    if layout.kind == "block":
        vals, chans = merged_block_arrays(layout)
        out.append(te.placeholder(vals.shape, dtype, name="v"))
        out.append(te.placeholder(chans.shape, "int32", name="i"))
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
    x = inputs[0]
    dtype = x.dtype
    n = geometry.in_shape[0]
    k, g = layout.shape[0], layout.block
    oh, ow = geometry.out_hw
    sh, sw = geometry.stride
    xp = _input_reader(x, geometry)
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
    inverse = rest.pop(0) if not epilogue.chained else None
    bias = rest.pop(0) if epilogue.bias else None
    residual = rest.pop(0) if epilogue.residual else None
    res_index = rest.pop(0) if epilogue.residual_index else None
    rl = epilogue.residual_layout
    zero = tirx.const(0.0, dtype)

    def finish(acc, a, out_ch, y, z):  # type: ignore[no-untyped-def]
        """Bias, residual, ReLU of the value of output channel / position ``out_ch``."""
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

    def conv_at(a, row, y, z, lane):  # type: ignore[no-untyped-def]
        acc = stages[0][a, row, y, z, lane]
        for s in stages[1:]:
            acc = acc + s[a, row, y, z, lane]
        return acc

    def pooled(value):  # type: ignore[no-untyped-def]
        """``value(y, z)`` at the conv's output pixel, max-pooled over ``pool`` x ``pool``."""

        def at(py, pz):  # type: ignore[no-untyped-def]
            if epilogue.pool == 1:
                return value(py, pz)
            out = None
            for i in range(epilogue.pool):
                for j in range(epilogue.pool):
                    v = value(py * epilogue.pool + i, pz * epilogue.pool + j)
                    out = v if out is None else te.max(out, v)
            return out

        return at

    ph, pw = (oh - epilogue.pool) // epilogue.pool + 1, (ow - epilogue.pool) // epilogue.pool + 1
    if epilogue.out_border is None:
        assert inverse is not None

        def out_body(a, kk, y, z):  # type: ignore[no-untyped-def]
            pos = inverse[kk]
            row, lane = (pos // g, pos % g) if g > 1 else (pos, 0)
            at = pooled(lambda yy, zz: finish(conv_at(a, row, yy, zz, lane), a, kk, yy, zz))
            return at(y, z)

        return te.compute(
            (n, k, ph, pw), out_body, name=EPILOGUE_BLOCK, attrs=_pool_attrs(epilogue)
        )

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
        at = pooled(lambda yy, zz: finish(conv_at(a, crow, yy, zz, clane), a, out_ch, yy, zz))
        inside = te.all(yb >= b, yb < ph + b, zb >= b, zb < pw + b)
        return te.if_then_else(inside, at(y, z), zero)

    act = epilogue.out_activation(layout)
    assert act is not None
    shape = act.shape(n, ph, pw)
    return te.compute(shape, chained_body, name=EPILOGUE_BLOCK, attrs=_pool_attrs(epilogue))


#: epilogue block annotation: the max-pool window (schedules size the conv rows by it)
POOL_ATTR = "patsparse.pool"


def _pool_attrs(epilogue: Epilogue) -> dict[str, int]:
    return {POOL_ATTR: epilogue.pool} if epilogue.pool > 1 else {}


def _input_reader(x: te.Tensor, geometry: ConvGeometry):  # type: ignore[no-untyped-def]
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
    if any(geometry.padding):
        xp = te.compute(
            (n, c, h + pt + pb, w + pl + pr),
            lambda a, b, i, j: te.if_then_else(
                te.all(i >= pt, i < h + pt, j >= pl, j < w + pl),
                x[a, b, i - pt, j - pl],
                tirx.const(0.0, x.dtype),
            ),
            name=PAD_BLOCK,
            attrs={"schedule_rule": PAD_RULE},
        )
    else:
        xp = x
    return lambda a, ch, i, j: xp[a, ch, i, j]


def pattern_conv2d_te(
    geometry: ConvGeometry, layout: SparseConvLayout, epilogue: Epilogue, *, dtype: str = "float32"
) -> list[te.Tensor]:
    """Placeholders and output, for ``te.create_prim_func`` (tests, tuning tasks)."""
    inputs = pattern_conv2d_placeholders(geometry, layout, epilogue, dtype=dtype)
    return [*inputs, pattern_conv2d_compute(inputs, geometry, layout, epilogue)]


def _block_stage(v, idx, xp, layout, geometry):  # type: ignore[no-untyped-def]
    """All patterns of a block layer accumulate into one register tile.

    Reduction over (kernel slot, column, tap) (:func:`block_columns`: a column is a run of
    one pattern's slots); the tap offset is a select over Python constants indexed by
    (column, tap), which folds to an immediate once the column and tap loops are unrolled
    (the schedules unroll them), so the inner loop has no branch.
    """
    n = geometry.in_shape[0]
    oh, ow = geometry.out_hw
    sh, sw = geometry.stride
    rows, npat, cmax, ntaps, g = (int(d) for d in v.shape)
    taps = column_taps(layout)
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
            v[r, p, k2, t, lane] * xp(a, idx[r, p, k2], y * sh + dy, z * sw + dx),
            axis=[k2, p, t],
        ),
        name=f"{CONV_BLOCK_PREFIX}all",
        attrs={"schedule_rule": SCHEDULE_RULE},
    )


#: most columns :func:`block_columns` splits a block layer's patterns into; the kernel
#: unrolls them (columns x taps x register-tile FMAs per slot), so beyond this every pattern
#: is one column padded to the longest (where kept counts are large the padding is small)
MAX_COLUMNS = 48


def block_columns(layout: SparseConvLayout) -> tuple[tuple[tuple[int, int], ...], int]:
    """How a block layer's slots are laid out for the kernel: ``(columns, slots)``, each
    column ``(pattern, first slot)`` holding ``slots`` slots of that pattern.

    Patterns with unequal slot counts ``c_p`` would each be padded to the longest, wasting
    ``P * max(c_p) / sum(c_p)`` of the work (1.33x for 12 kept channels over 8 patterns,
    e.g. 2+2+2+2+1+1+1+1). Instead each pattern is split into ``c_p / gcd(c)`` columns of
    ``gcd(c)`` slots: every column has the same length and nothing is padded, as long as
    there are at most :data:`MAX_COLUMNS` columns (else one padded column per pattern).
    """
    counts = [int(v.shape[1]) for v in layout.values]
    step = math.gcd(*counts)
    cols = tuple((p, s) for p, c in enumerate(counts) for s in range(0, c, step))
    if len(cols) <= MAX_COLUMNS:
        return cols, step
    return tuple((p, 0) for p in range(len(counts))), max(counts)


def column_taps(layout: SparseConvLayout) -> list[tuple[tuple[int, int], ...]]:
    """The (dy, dx) taps of each column of :func:`block_columns`."""
    cols, _ = block_columns(layout)
    return [layout.taps(p) for p, _ in cols]


def merged_block_arrays(layout: SparseConvLayout) -> tuple[np.ndarray, np.ndarray]:
    """Block layers: every column (:func:`block_columns`) in one ``(rows, columns, slots,
    taps, G)`` weight array and one ``(rows, columns, slots)`` channel array; slots a row
    does not fill hold zero weights (channel 0)."""
    cols, step = block_columns(layout)
    ntaps, g = int(layout.values[0].shape[2]), layout.block
    vals = np.zeros((layout.rows, len(cols), step, ntaps, g), dtype=np.float32)
    chans = np.zeros((layout.rows, len(cols), step), dtype=np.int32)
    for j, (p, first) in enumerate(cols):
        v = layout.values[p][:, first : first + step]
        vals[:, j, : v.shape[1]] = v
        chans[:, j, : v.shape[1]] = layout.channels[p][:, first : first + step]
    return vals, chans


def _pattern_body(v, idx, xp, taps, j, sh, sw):  # type: ignore[no-untyped-def]
    """The reduction of one pattern; taps unrolled in Python (constant offsets, no branch)."""

    def body(a, r, y, z, lane):  # type: ignore[no-untyped-def]
        total = None
        for t, (dy, dx) in enumerate(taps):
            term = v[r, j, t, lane] * xp(a, idx[r, j], y * sh + dy, z * sw + dx)
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
