"""The CPU schedule of the chained norm kernel (:mod:`tvm_ext.te.chained_norm`).

``nm_stats``: (map, row of lanes, chunk of rows) in parallel, the sums kept in a local
vector per chunk (``v`` and ``v * v``, one vector of lanes each) over the chunk's pixels,
read in memory order. The per-position stages are a few hundred scalars; ``nm_value`` (where
there is one) runs in parallel over rows, vectorised over lanes. ``nm_out``: a
chained output in parallel over (map, row of lanes, output row), each pixel one vector of
lanes; an NCHW output in parallel over (map, row), every channel of the row in turn (the input
row stays in L1 while each channel gathers from it), the row in vectors.
:mod:`.dispatch` calls this (:func:`~tvm_ext.schedules.dispatch.schedule_norm_primfunc`).
"""

from __future__ import annotations

from tvm_ext._compat import Schedule
from tvm_ext.schedules.common import largest_divisor, loop_extent, root_blocks
from tvm_ext.te.chained_norm import OUT_BLOCK, STATS_BLOCK, VALUE_BLOCK


def schedule_chained_norm(sch: Schedule, *, lanes: int = 16) -> None:
    """Schedule the chained norm kernel in ``sch`` in place (vectors of ``lanes`` fp32 for
    an NCHW output; a chained one has its own lanes)."""
    stats = sch.get_sblock(STATS_BLOCK)
    n, row, k, j, lane, ry, rx = sch.get_loops(stats)
    sch.reorder(n, row, k, ry, rx, j, lane)
    outer = sch.fuse(n, row, k)
    sch.parallel(outer)
    local = sch.cache_write(stats, 0, "local")
    sch.reverse_compute_at(local, outer)
    init = sch.decompose_reduction(stats, ry)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.vectorize(sch.get_loops(local)[-1])
    # the update is no complete block after the split-off init, which ``vectorize`` refuses:
    # unrolled, LLVM's SLP vectoriser makes each of the two a vector of lanes
    sch.unroll(j)
    sch.unroll(lane)
    if any(sch.get(b).name_hint == VALUE_BLOCK for b in root_blocks(sch)):
        n, row, y, _, lane = sch.get_loops(sch.get_sblock(VALUE_BLOCK))
        sch.parallel(sch.fuse(n, row, y))
        sch.vectorize(lane)
    out = sch.get_sblock(OUT_BLOCK)
    loops = sch.get_loops(out)
    if len(loops) == 5:  # chained: (map, row, y, x, lane)
        n, row, y, _, lane = loops
        sch.parallel(sch.fuse(n, row, y))
        sch.vectorize(lane)
        return
    n, c, y, z = loops
    # one input row (all its lanes, a few KB) stays in L1 while every channel reads it
    sch.reorder(n, y, c, z)
    sch.parallel(sch.fuse(n, y))
    vf = largest_divisor(loop_extent(sch, z), lanes)
    if vf > 1:
        _, zi = sch.split(z, [None, vf])
        sch.vectorize(zi)
