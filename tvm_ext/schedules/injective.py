"""CPU schedule for injective functions: concat, broadcast, pixel shuffle, resize, copies.

What fusion leaves of a concat (``torch.cat``, a global branch broadcast and concatenated),
a pixel shuffle, an upsampling or a transpose, with the elementwise ops fused around it, is
a function of spatial blocks only. The ``injective`` rule inlines every block into its
consumer, so one block writes the output reading the inputs directly (no intermediate
buffers); its outer loops run in parallel; its innermost loop runs in explicit vectors when
every read moves by one element (contiguous) or none (broadcast) along it (short rows, a
28-pixel one, fused with the rows around them where the data runs on), else the row is left
whole for LLVM's loop vectoriser (a resize's ``x // 2`` would become a gather). The
arithmetic is unchanged.
"""

from __future__ import annotations

from typing import Any

from tvm_ext._compat import Schedule
from tvm_ext.schedules.access import accesses, stride_along
from tvm_ext.schedules.common import inline_all, iter_kinds, loop_extent, root_blocks

#: parallel chunks to aim for (more than the cores, so uneven rows still balance)
PARALLEL_CHUNKS = 64
#: steps of the innermost iterator over which a read must move evenly to be vectorised
CHECKED_STEPS = 3


def _strides(sch: Schedule, block: Any, axis: int) -> list[int | None]:
    """Per access (reads, then the write), the stride along iterator ``axis``."""
    stmt = sch.get(block)
    iters = [iv.var for iv in stmt.iter_vars]
    var, others = iters[axis], iters[:axis] + iters[axis + 1 :]
    loads, stores = accesses(stmt)
    return [stride_along(a, var, others, steps=CHECKED_STEPS) for a in [*loads, *stores]]


def _vector_span(sch: Schedule, block: Any, lanes: int) -> int:
    """How many innermost iterators, fused, make a vectorisable loop (0: none). Every read
    must be contiguous or a broadcast along the innermost, the write contiguous; iterators
    further out join while the fused extent is no whole number of vectors and every access
    runs on across them (stride = extent x inner stride: a row continues into the next)."""
    iters = list(sch.get(block).iter_vars)
    inner = _strides(sch, block, -1)
    if any(s not in (0, 1) for s in inner[:-1]) or inner[-1] != 1:
        return 0
    span, extent = 1, int(iters[-1].dom.extent)
    while extent % lanes and span < len(iters):
        outer = _strides(sch, block, len(iters) - 1 - span)
        if any(
            o is None or i is None or o != i * extent for o, i in zip(outer, inner, strict=True)
        ):
            return 0
        extent *= int(iters[-1 - span].dom.extent)
        span += 1
    return span if extent % lanes == 0 else 0


def _schedule_block(sch: Schedule, block: Any, lanes: int) -> None:
    loops = sch.get_loops(block)
    span = _vector_span(sch, block, lanes)
    if span:
        row = sch.fuse(*loops[-span:]) if span > 1 else loops[-1]
        _, vec = sch.split(row, factors=[None, lanes])
        sch.vectorize(vec)
        loops = [*loops[:-span], row]
    outer, total = [], 1
    for lp in loops[:-1]:
        outer.append(lp)
        total *= loop_extent(sch, lp)
        if total >= PARALLEL_CHUNKS:
            break
    if outer and total > 1:
        sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])


def schedule_injective(sch: Schedule, lanes: int) -> bool:
    """The ``injective`` rule (module docstring); ``False`` unless every block is spatial
    with its loops bound one to one to its iterators."""
    inline_all(sch)
    blocks = root_blocks(sch)
    if not blocks:
        return False
    for block in blocks:
        kinds = iter_kinds(sch, block)
        if kinds.strip("S") or len(sch.get_loops(block)) != len(kinds) or len(kinds) < 2:
            return False
        if len(accesses(sch.get(block))[1]) != 1:
            return False
    for block in blocks:
        _schedule_block(sch, block, lanes)
    return True
