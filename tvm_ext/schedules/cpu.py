"""A reasonable default CPU schedule for the pattern-sparse conv PrimFunc.

Block layers vectorise over the block's output-channel lanes (the layout the sparse kernel
probe found to run at dense speed); per-kernel layers vectorise over the output width.
Rows (filters or blocks) run in parallel. Tuned schedules replace this one (issue 4).
The vector widths follow the target (``lanes``: 16 AVX-512, 8 AVX2, 4 NEON);
:mod:`tvm_ext.schedules.dispatch` picks this schedule or the GPU one for a target.
"""

from __future__ import annotations

from typing import Any

from tvm_ext._compat import Schedule
from tvm_ext.schedules.common import largest_divisor, loop_extent, pattern_blocks
from tvm_ext.te.block_names import CONV_BLOCK_PREFIX, EPILOGUE_BLOCK, PAD_BLOCK, POOL_ATTR


def vector_widths(lanes: int = 16) -> tuple[int, ...]:
    """Vector factors to try, widest first, for registers of ``lanes`` fp32 values."""
    return tuple(w for w in (16, 8, 4) if w <= max(lanes, 4))


def _vector_factor(extent: int, widths: tuple[int, ...] = (16, 8, 4)) -> int | None:
    return next((v for v in widths if extent % v == 0), None)


#: output pixels from which a block layer computes one output row of every block at a time
#: inside the epilogue (the row stays in cache instead of a full-size intermediate going
#: through memory). Measured inside whole models (chained layouts, BENCHMARKS.md): 16-35 %
#: faster at 56x56 and above; at 28x28 and 14x14 3-30 % faster per layer (whole ResNet-18
#: 7 %, ResNet-50 9 % faster than with 56x56 as the bound); at 7x7 a wash (the two border
#: rows of a chained output recompute a conv row each, 2/7 more work), so not below 14x14
FUSE_ROWS_FROM_PIXELS = 14 * 14


def schedule_pattern_conv(sch: Schedule, *, lanes: int = 16, fuse_rows: bool = True) -> None:
    """Schedule every ``ps_*`` block of the function in ``sch`` in place (CPU, vectors of
    ``lanes`` fp32 values). ``fuse_rows=False`` keeps every stage at the root (the fallback
    if the fused loop nest cannot be built)."""
    widths = vector_widths(lanes)
    names = pattern_blocks(sch)
    if fuse_rows and f"{CONV_BLOCK_PREFIX}all" in names and EPILOGUE_BLOCK in names:
        conv_loops = sch.get_loops(sch.get_sblock(f"{CONV_BLOCK_PREFIX}all"))
        oh, ow = loop_extent(sch, conv_loops[2]), loop_extent(sch, conv_loops[3])
        if oh * ow >= FUSE_ROWS_FROM_PIXELS:
            _schedule_block_rows_in_epilogue(sch, widths)
            names = [n for n in names if n == PAD_BLOCK]
    for name in names:
        if name == PAD_BLOCK:  # (n, c, h, w), or (n, c * rows, pitch) for flat stages
            blk = sch.get_sblock(name)
            n, c = sch.get_loops(blk)[:2]
            sch.parallel(sch.fuse(n, c))
        elif name.startswith(CONV_BLOCK_PREFIX):
            _schedule_conv_stage(sch, name, widths)
        elif name == EPILOGUE_BLOCK:
            blk = sch.get_sblock(name)
            loops = sch.get_loops(blk)
            if len(loops) == 5:  # chained output: rows of lanes, written as they are
                n, r, _, w, lane = loops
                sch.parallel(sch.fuse(n, r))
                _vectorize_lanes_or_width(sch, w, lane, widths)
                continue
            n, k, _, w = loops
            sch.parallel(sch.fuse(n, k))
            _vectorize_width(sch, w, widths)


#: vector accumulators a block layer's register tile holds (of 32 AVX-512 registers: the
#: rest hold weight vectors and broadcasts; more spilled broadcasts to the stack)
BLOCK_ACCUMULATORS = 12

#: fewest output columns a register tile of several weight vectors may have: below this a
#: block wider than one vector is split into one-vector tiles (the input broadcasts are then
#: read once per vector, as in blocks of one vector)
MIN_SHARED_COLUMNS = 3


def _accumulate_in_registers(
    sch: Schedule,
    blk: Any,
    outer: list[Any],
    z: Any,
    lane: Any,
    k2: Any,
    p: Any,
    t: Any,
    *,
    vector: int = 16,
) -> Any:
    """The register tile of ``ps_conv_all``: a tile of output columns x the block's lanes
    accumulated in a local buffer, pattern and tap loops unrolled, lanes vectorised.

    A block of several vectors (``lanes`` > ``vector``: 32 filters on AVX-512) shares each
    input broadcast between its weight vectors (one broadcast feeds 2 FMAs instead of 1:
    the load ports, not the FMA units, bound a one-vector tile); its tile has
    :data:`BLOCK_ACCUMULATORS` / vectors columns, or where the width has no such divisor
    the vectors are tiled one at a time. Loops may be ``None`` (elided by ``compute_at``).
    Returns the outermost reduction loop left (for ``decompose_reduction``, which callers
    apply last), or ``None``.
    """
    lanes = loop_extent(sch, lane)
    vectors = lanes // vector if lanes % vector == 0 else 1
    width = loop_extent(sch, z)
    cols = largest_divisor(width, BLOCK_ACCUMULATORS // vectors)
    lane_outer = None
    if vectors > 1 and cols < min(MIN_SHARED_COLUMNS, width):
        lane_outer, lane = sch.split(lane, [None, vector])
        cols = largest_divisor(width, BLOCK_ACCUMULATORS)
    zo, zi = sch.split(z, [None, cols])
    sch.reorder(*[lp for lp in (*outer, zo, lane_outer, k2, p, t, zi, lane) if lp is not None])
    acc = sch.cache_write(blk, 0, "local")
    sch.reverse_compute_at(acc, lane_outer if lane_outer is not None else zo)
    for lp in (p, t, zi):
        if lp is not None:
            sch.unroll(lp)
    sch.vectorize(lane)
    return next((lp for lp in (k2, p, t) if lp is not None), None)


def _schedule_block_stage(sch: Schedule, blk: Any, vector: int) -> None:
    """``ps_conv_all`` at the root: the register tile, rows and output rows in parallel."""
    n, r, y, z, lane, k2, p, t = sch.get_loops(blk)
    first = _accumulate_in_registers(sch, blk, [n, r, y], z, lane, k2, p, t, vector=vector)
    sch.parallel(sch.fuse(n, r, y))
    sch.decompose_reduction(blk, first)


def _schedule_block_rows_in_epilogue(sch: Schedule, widths: tuple[int, ...]) -> None:
    """Block layers with large outputs: the epilogue runs over (image, output row) in
    parallel and computes that row of every block (``ps_conv_all``; ``pool`` rows under a
    fused max pool) just before it reads it, so the conv result stays in cache; the conv
    keeps its register tile. A chained epilogue (5 loops) writes the rows of lanes as they
    are, vectorised over the lanes."""
    ep = sch.get_sblock(EPILOGUE_BLOCK)
    pool = int(sch.get(ep).annotations.get(POOL_ATTR, 1))
    loops = sch.get_loops(ep)
    if len(loops) == 5:
        n, k, y, z, lane = loops
        sch.reorder(n, y, k, z, lane)
        rows = sch.fuse(n, y)
        sch.parallel(rows)
        _vectorize_lanes_or_width(sch, z, lane, widths)
    else:
        n, k, y, z = loops
        sch.reorder(n, y, k, z)
        rows = sch.fuse(n, y)
        sch.parallel(rows)
        _vectorize_width(sch, z, widths)
    conv = sch.get_sblock(f"{CONV_BLOCK_PREFIX}all")
    # before compute_at: (rows, output rows per epilogue row, width, lanes, slots, patterns, taps)
    dims = _conv_dims(sch, conv)
    dims.insert(1, pool)
    sch.compute_at(conv, rows)
    r, yy, zz, lane, k2, p, t = _match_loops(sch, sch.get_loops(conv)[1:], dims)
    assert zz is not None and lane is not None, "width and lanes are never elided here"
    outer = [lp for lp in (r, yy) if lp is not None]
    first = _accumulate_in_registers(sch, conv, outer, zz, lane, k2, p, t, vector=widths[0])
    if first is not None:
        sch.decompose_reduction(conv, first)


def _vectorize_lanes_or_width(sch: Schedule, w: Any, lane: Any, widths: tuple[int, ...]) -> None:
    """A chained epilogue: vectorise its lanes, or its width if it has one lane (planar)."""
    if loop_extent(sch, lane) > 1:
        sch.vectorize(lane)
        return
    _vectorize_width(sch, w, widths)


def _vectorize_width(sch: Schedule, w: Any, widths: tuple[int, ...]) -> None:
    """Split the innermost width loop by the widest vector that divides it; vectorise it."""
    vf = _vector_factor(loop_extent(sch, w), widths)
    if vf:
        _, wi = sch.split(w, [None, vf])
        sch.vectorize(wi)


def _conv_dims(sch: Schedule, blk: Any) -> list[int]:
    """Extents of ``ps_conv_all``'s (row, width, lane, slot, pattern, tap) loops."""
    _, r, _, z, lane, k2, p, t = sch.get_loops(blk)
    return [loop_extent(sch, lp) for lp in (r, z, lane, k2, p, t)]


def _match_loops(sch: Schedule, loops: list[Any], dims: list[int]) -> list[Any]:
    """``loops`` (what compute_at left, extent-1 loops elided) matched to ``dims`` in order;
    ``None`` for an elided loop."""
    out: list[Any] = []
    it = iter(loops)
    nxt = next(it, None)
    for extent in dims:
        if nxt is not None and loop_extent(sch, nxt) == extent:
            out.append(nxt)
            nxt = next(it, None)
        elif extent == 1:
            out.append(None)
        else:
            raise ValueError(f"unexpected loop nest after compute_at: {dims}")
    return out


#: most vectors of output pixels a flat per-kernel stage accumulates in registers (8 measured
#: 0-8 % faster than 4, 2 15-30 % slower: every multiply-add loads its own input vector)
FLAT_VECTORS = 8


def flat_register_tile(sch: Schedule, blk: Any, lanes: int, tile: Any) -> tuple[Any, Any, Any]:
    """The loop nest of a ``ps_conv_flat<g>`` stage, shared by the default schedule and the
    tuning rule: the flat pixels split into ``lanes`` (vectorised) x a register tile of
    vectors (unrolled; ``tile(sch, loop)`` gives its factor: a number, or a sampled one),
    accumulated in a local buffer, slots looped, taps unrolled. Returns the (image, filter)
    loops and the slot loop (for ``parallel`` / ``decompose_reduction``)."""
    n, r, j, s, t = sch.get_loops(blk)
    jr, lane = sch.split(j, [None, lanes])
    jo, jv = sch.split(jr, [None, tile(sch, jr)])
    sch.reorder(n, r, jo, s, t, jv, lane)
    acc = sch.cache_write(blk, 0, "local")
    sch.reverse_compute_at(acc, jo)
    sch.unroll(t)
    sch.unroll(jv)
    sch.vectorize(lane)
    return n, r, s


def _schedule_flat_stage(sch: Schedule, blk: Any, widths: tuple[int, ...]) -> None:
    """``ps_conv_flat<g>``: per filter, a register tile of up to :data:`FLAT_VECTORS` vectors
    of output pixels; filters in parallel."""
    extent = loop_extent(sch, sch.get_loops(blk)[2])
    vf = _vector_factor(extent, widths) or 1
    n, r, s = flat_register_tile(
        sch, blk, vf, lambda sch, loop: largest_divisor(loop_extent(sch, loop), FLAT_VECTORS)
    )
    sch.parallel(sch.fuse(n, r))
    sch.decompose_reduction(blk, s)


def _schedule_conv_stage(sch: Schedule, name: str, widths: tuple[int, ...]) -> None:
    blk = sch.get_sblock(name)
    if len(sch.get_loops(blk)) == 8:
        _schedule_block_stage(sch, blk, widths[0])
        return
    if len(sch.get_loops(blk)) == 5:
        _schedule_flat_stage(sch, blk, widths)
        return
    n, r, y, z, lane, j = sch.get_loops(blk)
    lanes = loop_extent(sch, lane)
    if lanes > 1:
        sch.reorder(n, r, y, z, j, lane)
        sch.vectorize(lane)
        sch.parallel(sch.fuse(n, r))
        sch.decompose_reduction(blk, j)
        return
    vf = _vector_factor(loop_extent(sch, z), widths)
    if vf:
        zo, zi = sch.split(z, [None, vf])
        sch.reorder(n, r, y, zo, lane, j, zi)
        sch.vectorize(zi)
        sch.parallel(sch.fuse(n, r))
        sch.decompose_reduction(blk, j)  # last: later primitives need the reduction block
    else:
        sch.parallel(sch.fuse(n, r))
        sch.decompose_reduction(blk, j)
