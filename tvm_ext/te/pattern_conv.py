"""TE compute of a pattern-sparse 3x3 convolution with a fused epilogue.

Stages (block names are stable; schedules and tuning rules find them by name):

- ``ps_pad``: zero padding of the input (any, also asymmetric, padding).
- ``ps_conv_<p>`` (per-kernel layers reading a chained input): one reduction per pattern
  ``p`` of the layer. Its
  taps are Python constants, so every tap is a fixed offset in the generated code and
  nothing branches on the weight structure: ``Y_p[n, row, oh, ow, lane] = sum_{j, t}
  V_p[row, j, t, lane] * Xpad[n, I_p[row, j], oh*sh + dy_t, ow*sw + dx_t]``.
- ``ps_conv_flat<g>`` (per-kernel layers): every kept kernel of a filter in one reduction
  over (slot, tap), vectorised over a flat run of output pixels. The padded input is stored
  as rows of ``pitch`` values (:class:`FlatInput`; strided convs as one plane per stride
  phase), so tap ``(dy, dx)`` of channel ``c`` is one offset from the output pixel
  ``y * pitch + x`` (stride 1: ``c * rows * pitch + dy * pitch + dx``): an offset array
  replaces the per-pattern code, no pattern is padded and the width needs no vector-sized
  tiles. Filters are sorted by kept kernels and split
  into up to :data:`FLAT_BUCKETS` stages (``g``) so short filters are not padded to the
  longest (:func:`flat_buckets`). Measured 1.9-10x faster than the per-pattern stages
  (BENCHMARKS.md, ``benchmarks/per_kernel.py``).
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

import itertools
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


#: output pixels a flat per-kernel stage computes per filter are a multiple of this (the
#: schedules' register tiles of 1-4 vectors of 16, 8 or 4 lanes divide it)
FLAT_TILE = 64
#: most stages a flat per-kernel layer's filters are split into by kept-kernel count
FLAT_BUCKETS = 4


@dataclass(frozen=True)
class FlatInput:
    """How a flat per-kernel stage (``ps_conv_flat<g>``) stores its padded input.

    Stride ``(sh, sw)`` splits the padded image into ``sh * sw`` phase planes (plane
    ``(py, px)`` holds padded pixels ``(sh * i + py, sw * k + px)``), so a strided conv reads
    every plane at stride 1; stride 1 is one plane, the padded image itself. Every input
    channel is ``phases`` planes of ``rows`` rows of ``pitch`` values (the plane's width),
    zero rows at the end so the last tile of output pixels reads inside its plane. Output
    pixel ``(y, x)`` is computed at flat position ``j = y * pitch + x`` (``length`` positions
    per filter: ``oh * pitch`` rounded up to :data:`FLAT_TILE`; positions with ``x >= ow``
    are computed and never read) and reads tap ``(dy, dx)`` of channel ``c`` at
    ``j + offset(c, dy, dx)``: plane ``(dy % sh, dx % sw)``, ``dy // sh`` rows and
    ``dx // sw`` columns on.
    """

    pitch: int
    rows: int
    length: int
    stride: tuple[int, int] = (1, 1)

    @classmethod
    def of(cls, geometry: ConvGeometry) -> FlatInput:
        _, _, h, w = geometry.in_shape
        pt, pl, pb, pr = geometry.padding
        kh, kw = geometry.kernel
        sh, sw = geometry.stride
        oh, _ = geometry.out_hw
        pitch = -(-(w + pl + pr) // sw)
        length = -(-oh * pitch // FLAT_TILE) * FLAT_TILE
        reach = length + (kh - 1) // sh * pitch + (kw - 1) // sw  # one past the last read
        rows = max(-(-(h + pt + pb) // sh), -(-reach // pitch))
        return cls(pitch, rows, length, (sh, sw))

    @property
    def phases(self) -> int:
        return self.stride[0] * self.stride[1]

    def offset(self, channel: int, dy: int, dx: int) -> int:
        sh, sw = self.stride
        plane = channel * self.phases + (dy % sh) * sw + dx % sw
        return (plane * self.rows + dy // sh) * self.pitch + dx // sw


def uses_flat(layout: SparseConvLayout, geometry: ConvGeometry) -> bool:
    """Per-kernel layers with an NCHW input take the flat stages; a chained input (read in
    place, never flattened) keeps the per-pattern stages."""
    return (
        layout.kind == "kernel" and geometry.in_layout is None and geometry.kernel == layout.kernel
    )


@dataclass(frozen=True)
class FlatBuckets:
    """The arrays of a flat per-kernel layer (:func:`flat_buckets`).

    Filters sorted by kept kernels, longest first; bucket ``g`` holds rows ``starts[g]`` to
    ``starts[g + 1]`` of that order, each with ``slots[g]`` slots (its longest filter's kept
    kernels; shorter filters padded with zero weights at offset 0). ``values[g]`` and
    ``offsets[g]`` are ``(filters, slots, taps)``: the weight of each tap and the flat input
    offset it reads (:meth:`FlatInput.offset`). ``inverse[k]`` is filter ``k``'s position in
    the sorted order.
    """

    starts: tuple[int, ...]
    values: tuple[np.ndarray, ...]
    offsets: tuple[np.ndarray, ...]
    inverse: np.ndarray

    @property
    def slots(self) -> tuple[int, ...]:
        return tuple(int(v.shape[1]) for v in self.values)

    def macs_per_pixel(self) -> int:
        """Multiply-adds per output pixel, padding slots included."""
        return sum(int(np.prod(v.shape)) for v in self.values)


def flat_buckets(
    layout: SparseConvLayout, flat: FlatInput | None = None, *, buckets: int | None = None
) -> FlatBuckets:
    """Split a per-kernel layout's filters into at most ``buckets`` (default
    :data:`FLAT_BUCKETS`) runs of similar kept-kernel counts, padding least.

    ``flat`` (the input geometry) sets the offsets; without it they are left zero (shapes
    and padding only, e.g. to estimate the work).
    """
    if layout.kind != "kernel":
        raise ValueError(f"flat stages are for per-kernel layouts, not {layout.kind!r} ones")
    nb = FLAT_BUCKETS if buckets is None else int(buckets)
    if nb < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets!r}")
    ntaps = int(layout.values[0].shape[2])
    kernels: list[list[tuple[int, int, np.ndarray]]] = [[] for _ in range(layout.rows)]
    for p in range(layout.patterns):
        vals, chans = layout.values[p][..., 0], layout.channels[p]
        for r, j in zip(*np.nonzero(np.any(vals != 0, axis=2)), strict=True):
            kernels[r].append((int(chans[r, j]), p, vals[r, j]))
    counts = np.array([len(k) for k in kernels])
    order = np.argsort(-counts, kind="stable")  # longest first; ties keep the reorder
    starts = _bucket_starts([int(counts[r]) for r in order], nb)
    # offsets are linear in the channel: each pattern's taps at channel 0, plus a stride
    base = [
        np.array([flat.offset(0, dy, dx) for dy, dx in layout.taps(p)], dtype=np.int32)
        if flat is not None
        else np.zeros(ntaps, dtype=np.int32)
        for p in range(layout.patterns)
    ]
    step = flat.offset(1, 0, 0) if flat is not None else 0
    values, offsets = [], []
    for b0, b1 in itertools.pairwise(starts):
        width = max(1, int(counts[order[b0]]))
        vals = np.zeros((b1 - b0, width, ntaps), dtype=np.float32)
        offs = np.zeros((b1 - b0, width, ntaps), dtype=np.int32)
        for i, r in enumerate(order[b0:b1]):
            for s, (ch, p, v) in enumerate(kernels[r]):
                vals[i, s] = v
                offs[i, s] = base[p] + ch * step
        values.append(vals)
        offsets.append(offs)
    position = np.empty(layout.rows, dtype=np.int32)
    position[order] = np.arange(layout.rows, dtype=np.int32)
    inverse = position[layout.inverse].astype(np.int32)
    return FlatBuckets(tuple(starts), tuple(values), tuple(offsets), inverse)


def _bucket_starts(counts: list[int], buckets: int) -> list[int]:
    """Boundaries ``[0, ..., len(counts)]`` of at most ``buckets`` contiguous runs of the
    descending ``counts`` minimising the padded total ``sum(run length * first count)``
    (dynamic programming over the split points)."""
    n = len(counts)
    inf = float("inf")
    # a run starts where the count changes (starting inside a run of equal counts never
    # pads less); best[b][i]: least padded total of counts[:i] in b runs, cut[b][i]: where
    # the last of them starts
    points = [j for j in range(n) if j == 0 or counts[j] != counts[j - 1]]
    ends = [*points[1:], n]
    best = [[inf] * (n + 1) for _ in range(buckets + 1)]
    cut = [[0] * (n + 1) for _ in range(buckets + 1)]
    best[0][0] = 0
    for b in range(1, buckets + 1):
        for i in ends:
            for j in points:
                if j >= i:
                    break
                cost = best[b - 1][j] + (i - j) * counts[j]
                if cost < best[b][i]:
                    best[b][i], cut[b][i] = cost, j
    b = min(range(1, buckets + 1), key=lambda k: (best[k][n], k))
    bounds, i = [n], n
    while b > 0:
        i = cut[b][i]
        bounds.append(i)
        b -= 1
    return bounds[::-1]


def pattern_conv2d_placeholders(
    geometry: ConvGeometry, layout: SparseConvLayout, epilogue: Epilogue, *, dtype: str = "float32"
) -> list[te.Tensor]:
    """Inputs in call order: ``x, V_0, I_0, ..., (inverse), (bias), (residual),
    (residual index)`` (flat per-kernel layers: ``V_g, A_g`` per bucket, :func:`flat_buckets`).

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
    x = inputs[0]
    dtype = x.dtype
    n = geometry.in_shape[0]
    k, g = layout.shape[0], layout.block
    oh, ow = geometry.out_hw
    sh, sw = geometry.stride
    flat = FlatInput.of(geometry) if uses_flat(layout, geometry) else None
    stages = []
    if flat is not None:
        starts = flat_buckets(layout).starts
        n_arrays = len(starts) - 1
        xf = _flat_input(x, geometry, flat)
        stages = [
            _flat_stage(inputs[1 + 2 * b], inputs[2 + 2 * b], xf, flat, b) for b in range(n_arrays)
        ]
    else:
        xp = _input_reader(x, geometry)
        n_arrays = 1 if layout.kind == "block" else len(layout.values)
    if layout.kind == "block":
        stages.append(_block_stage(inputs[1], inputs[2], xp, layout, geometry))
    for p, vals in enumerate(layout.values if layout.kind != "block" and not flat else ()):
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
        if flat is not None:  # the filter's bucket (indices clamped: both sides are read)
            j = y * flat.pitch + z
            acc = None
            for b in reversed(range(n_arrays)):
                last = starts[b + 1] - starts[b] - 1
                here = stages[b][a, te.max(te.min(row - starts[b], last), 0), j]
                acc = here if acc is None else te.if_then_else(row < starts[b + 1], here, acc)
            return acc
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


def _flat_input(x: te.Tensor, geometry: ConvGeometry, flat: FlatInput) -> te.Tensor:
    """``ps_pad`` of a flat per-kernel layer: ``(N, C * phases * rows, pitch)``, every
    channel's padded image as phase planes followed by zero rows (:class:`FlatInput`)."""
    n, c, h, w = geometry.in_shape
    pt, pl, _, _ = geometry.padding
    rows, phases = flat.rows, flat.phases
    sh, sw = flat.stride

    def body(a, row, col):  # type: ignore[no-untyped-def]
        plane, i = row // rows, row % rows
        ch, phase = plane // phases, plane % phases
        yy = i * sh + phase // sw if sh > 1 else i
        xx = col * sw + phase % sw if sw > 1 else col
        inside = te.all(yy >= pt, yy < h + pt, xx >= pl, xx < w + pl)
        return te.if_then_else(inside, x[a, ch, yy - pt, xx - pl], tirx.const(0.0, x.dtype))

    return te.compute(
        (n, c * phases * rows, flat.pitch),
        body,
        name=PAD_BLOCK,
        attrs={"schedule_rule": PAD_RULE},
    )


def _flat_stage(v, offsets, xf, flat: FlatInput, bucket: int):  # type: ignore[no-untyped-def]
    """``Y[n, row, j] = sum_{s, t} V[row, s, t] * Xflat[n, A[row, s, t] + j]`` (the flat
    index split back into the ``(N, C * rows, pitch)`` buffer, which lowering folds)."""
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
    (column, tap) (:func:`_tap_offset`), which folds to an immediate once the column and tap
    loops are unrolled (the schedules unroll them), so the inner loop has no branch.
    """
    n = geometry.in_shape[0]
    oh, ow = geometry.out_hw
    sh, sw = geometry.stride
    rows, npat, cmax, ntaps, g = (int(d) for d in v.shape)
    taps = column_taps(layout)
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
