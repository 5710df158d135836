"""The CPU schedule of the depthwise 3x3 kernel (:mod:`tvm_ext.te.depthwise_conv`).

``rows`` kernels: channels in parallel, each channel's padded plane built just before its
rows are computed (in cache), the output width vectorised, taps unrolled. ``channels``
kernels: (channel block x band of output rows) in parallel, the band's input transposed to
the block's lanes just before it is used, every tap one vector of the block's channels,
output rows written back to NCHW vectorised over the width; chained (the output in the
block's lanes with a zero border) the output band is written as it is computed, vectorised
over the lanes. :mod:`.dispatch` calls this
(:func:`~tvm_ext.schedules.dispatch.schedule_depthwise_primfunc`).
"""

from __future__ import annotations

from typing import Any

from tvm_ext._compat import Schedule
from tvm_ext.schedules.common import largest_divisor, loop_extent
from tvm_ext.te.depthwise_conv import (
    CONV_BLOCK,
    EPILOGUE_BLOCK,
    PACK_BLOCK,
    PAD_BLOCK,
    STRIDE_ATTR,
    TABLE_ATTR,
)

#: most bytes of transposed input one ``channels`` task builds (its band of input rows x
#: the padded width x the block's lanes): stays in L2 next to the output band
PACK_BYTES = 128 * 1024


def schedule_depthwise(sch: Schedule, *, lanes: int = 16) -> None:
    """Schedule the depthwise kernel in ``sch`` in place (vectors of ``lanes`` fp32)."""
    names = {sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))}
    if PACK_BLOCK in names:
        _schedule_channels(sch)
    else:
        _schedule_rows(sch, lanes)


def _schedule_rows(sch: Schedule, lanes: int) -> None:
    conv = sch.get_sblock(CONV_BLOCK)
    table = bool(int(sch.get(conv).annotations.get(TABLE_ATTR, 0)))
    if table:
        reads = [str(r.source.name) for r in sch.get(conv).reads]
        # tap offsets read from tables: the region read is the 3x3 window (the default
        # analysis would bound it by the table values, and compute_at would build the padded
        # plane in loops of data-dependent extent)
        sh, sw = _stride(sch, conv)
        sch.annotate_buffer_access(
            conv,
            reads.index(PAD_BLOCK),
            "read",
            lambda n, c, y, z: (n, c, (y * sh, y * sh + 3), (z * sw, z * sw + 3)),
        )
    n, c, y, z = sch.get_loops(conv)
    outer = sch.fuse(n, c)
    sch.parallel(outer)
    # the padded plane is left to LLVM's vectoriser: measured 1.5-2x faster at 56x56 and
    # 112x112 than a vectorised zero fill + copy (decompose_padding), the same below
    sch.compute_at(sch.get_sblock(PAD_BLOCK), outer)
    if table and loop_extent(sch, y) % 2 == 0:
        # two output rows per step: the table's offsets are loaded once for both
        _, yi = sch.split(y, [None, 2])
        sch.unroll(yi)
    _vectorize_width(sch, z, lanes)


def width_pieces(width: int, lanes: int) -> list[int]:
    """The output width as whole vectors of ``lanes`` then power-of-two pieces (56 = 48 + 8,
    14 = 8 + 4 + 2 at 16 lanes): a 14-lane vector is assembled from 3 loads and 2 inserts,
    pieces load and store as they are."""
    pieces = [width - width % lanes] if width >= lanes else []
    rest = width % lanes
    size = lanes // 2
    while rest:
        if rest >= size:
            pieces.append(size)
            rest -= size
        size //= 2
    return [p for p in pieces if p]


def _vectorize_width(sch: Schedule, z: Any, lanes: int) -> None:
    """Vectorise the output width by :func:`width_pieces`."""
    pieces = width_pieces(loop_extent(sch, z), lanes)
    loops = sch.loop_partition(z, [*pieces[:-1], None]) if len(pieces) > 1 else [z]
    for loop, piece in zip(loops, pieces, strict=True):
        if piece > lanes:
            _, loop = sch.split(loop, [None, lanes])
        if piece > 1:
            sch.vectorize(loop)


def _stride(sch: Schedule, conv: Any) -> tuple[int, int]:
    """The conv's strides (the conv block's :data:`STRIDE_ATTR` annotation)."""
    sh, sw = sch.get(conv).annotations[STRIDE_ATTR]
    return int(sh), int(sw)


def _rows_per_task(out_rows: int, stride: int, width: int, lanes: int) -> int:
    """Output rows of one ``channels`` task: the most (a divisor of the output height) whose
    transposed input band fits :data:`PACK_BYTES`."""
    fits = [
        r
        for r in range(1, out_rows + 1)
        if out_rows % r == 0 and ((r - 1) * stride + 3) * width * lanes * 4 <= PACK_BYTES
    ]
    return max(fits, default=1)


def _schedule_channels(sch: Schedule) -> None:
    conv = sch.get_sblock(CONV_BLOCK)
    pack = sch.get_sblock(PACK_BLOCK)
    ep = sch.get_sblock(EPILOGUE_BLOCK)
    lanes = loop_extent(sch, sch.get_loops(conv)[-1])
    width = loop_extent(sch, sch.get_loops(pack)[3])
    stride, _ = _stride(sch, conv)
    if len(sch.get_loops(ep)) == 5:  # chained: (n, block, row, col, lane) with a border
        n, cb, y, z, lane = sch.get_loops(ep)
        rows = _rows_per_task(loop_extent(sch, y), stride, width, lanes)
        yo, yi = sch.split(y, [None, rows])
        outer = sch.fuse(n, cb, yo)
        sch.parallel(outer)
        sch.compute_at(conv, yi)
        sch.compute_at(pack, outer)
        sch.vectorize(sch.get_loops(conv)[-1])
        sch.vectorize(sch.get_loops(pack)[-1])
        sch.vectorize(lane)
        return
    n, c, y, z = sch.get_loops(ep)
    rows = _rows_per_task(loop_extent(sch, y), stride, width, lanes)
    cb, lane = sch.split(c, [None, lanes])
    yo, yi = sch.split(y, [None, rows])
    sch.reorder(n, cb, yo, yi, lane, z)
    outer = sch.fuse(n, cb, yo)
    sch.parallel(outer)
    sch.compute_at(conv, yi)
    sch.compute_at(pack, outer)
    sch.vectorize(sch.get_loops(conv)[-1])
    sch.vectorize(sch.get_loops(pack)[-1])
    vf = largest_divisor(loop_extent(sch, z), 16)
    if vf > 1:
        _, zi = sch.split(z, [None, vf])
        sch.vectorize(zi)
