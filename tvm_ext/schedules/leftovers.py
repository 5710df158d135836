"""CPU schedules for every PrimFunc our kernels do not cover, so nothing runs as plain loops.

TVM 0.27 has no default CPU schedule for most legalised operators: a PrimFunc nobody
schedules compiles to serial scalar loops (a dilated conv measured 100x slower than PyTorch
that way). After fusion, :func:`schedule_leftover` gives each such function the first rule
that applies:

0. ``norm``: instance, group and layer norm with what follows them fused in (affine,
   activation, residual add), recognised by their shape (reductions over each group's
   contiguous elements, then an elementwise output that re-reads the input): vectorised
   partial sums, per-group statistics computed inside the group's parallel output loop
   (:mod:`tvm_ext.schedules.norm`);
1. ``contiguous_reduce``: one reduction over a contiguous run of its input per output (a
   global pool, a mean over the last axes): vectors of partial sums per output, outputs in
   parallel (:mod:`tvm_ext.schedules.contiguous_reduce`);
2. ``strided_reduce``: reductions over an axis whose elements are far apart while the kept
   pixels are contiguous (a mean or layer norm over NCHW's channels): the reduction loop
   outside a vector of pixels, elementwise blocks in vectors, outer loops in parallel
   (:mod:`tvm_ext.schedules.strided_reduce`);
3. ``conv``: one reduction block with its spatial loops outside the reduction loops (convs of
   any kernel size, dilation and groups, pools, the phase convs of a transposed conv):
   consumers (bias, activation) inlined into one epilogue, producers (padding) kept as stages
   of their own (inlined, every load of the inner loop would carry a bounds test), the
   spatial loops tiled (a register tile of up to ``CONV_TILE`` output channels x a vector of
   output columns), reductions inside the tile, a per-tile accumulator, outer tiles in
   parallel;
4. ``injective``: spatial blocks only (concat, broadcast, pixel shuffle, resize, transpose,
   elementwise): producers inlined into one block, outer loops in parallel, the row in
   explicit vectors where every access is contiguous or a broadcast
   (:mod:`tvm_ext.schedules.injective`);
5. ``parallel``: any other function: each block's leading spatial loops in parallel, inner
   rows left to LLVM's loop vectoriser.

Functions already scheduled (ours, marked by :mod:`tvm_ext.schedules.dispatch`; tuned ones;
``tirx.is_scheduled``) are left alone. Every function this module schedules is marked
``tirx.is_scheduled``; a function no rule takes stays as it is and is reported by the pass
(:class:`tvm_ext.passes.ScheduleLeftovers`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tvm_ext._compat import Schedule, Target, tirx
from tvm_ext.schedules.common import (
    inline_all,
    iter_kinds,
    largest_divisor,
    loop_extent,
    root_blocks,
)
from tvm_ext.schedules.contiguous_reduce import schedule_contiguous_reduce
from tvm_ext.schedules.injective import schedule_injective
from tvm_ext.schedules.norm import schedule_norm
from tvm_ext.schedules.strided_reduce import schedule_strided_reduce
from tvm_ext.targets import host_of, vector_lanes

#: TVM's own marker of a scheduled PrimFunc (DLight and MetaSchedule set it)
IS_SCHEDULED = "tirx.is_scheduled"
#: parallel chunks to aim for (more than the cores, so uneven rows still balance)
PARALLEL_CHUNKS = 64
#: output channels per register tile of the ``conv`` rule (times one vector of columns)
CONV_TILE = 8


def is_scheduled(func: tirx.PrimFunc) -> bool:
    """``func`` carries a schedule (TVM's marker or ours)."""
    from tvm_ext.schedules.dispatch import SCHEDULED_ATTR

    attrs = func.attrs or {}
    return bool(int(attrs.get(IS_SCHEDULED, 0)) or int(attrs.get(SCHEDULED_ATTR, 0)))


def _is_reduction(sch: Schedule, block: Any) -> bool:
    return "R" in iter_kinds(sch, block)


def _parallel_split(sch: Schedule, loops: list[Any]) -> Any:
    """Fuse ``loops`` and mark them parallel (the fused loop)."""
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    sch.parallel(fused)
    return fused


def _schedule_conv(sch: Schedule, lanes: int) -> bool:
    """One reduction block, spatial loops first: register-tiled, vectorised output columns,
    the epilogue (or a copy-out of a local accumulator) computed per tile; producers (padding)
    stay stages of their own."""
    inline_all(sch, producers=False)
    blocks = root_blocks(sch)
    reductions = [b for b in blocks if _is_reduction(sch, b)]
    if len(reductions) != 1:
        return False
    block = reductions[0]
    position = [sch.get(b).same_as(sch.get(block)) for b in blocks].index(True)
    producers, blocks = blocks[:position], blocks[position:]
    kinds = iter_kinds(sch, block)
    n_s = len(kinds) - len(kinds.lstrip("S"))
    loops = sch.get_loops(block)
    if n_s < 2 or "S" in kinds[n_s:] or "O" in kinds or len(loops) != len(kinds):
        return False
    consumers = [b for b in blocks if not sch.get(b).same_as(sch.get(block))]
    for consumer in consumers[:-1]:  # a bias add read twice (a hard-swish x * clip(x + 3))
        sch.compute_inline(consumer)
    consumers = consumers[-1:]
    if consumers:  # the epilogue reads the accumulator, which becomes a per-tile buffer
        epilogue = consumers[0]
        sch.set_scope(block, 0, "local")
    else:
        epilogue = sch.cache_write(block, 0, "local")
    spatial, reduce = loops[:n_s], loops[n_s:]
    inner = loop_extent(sch, spatial[-1])
    # a whole number of vectors where the row allows it; otherwise the row (or a divisor of
    # it up to 4 vectors) for LLVM's loop vectoriser, which handles the tail
    explicit = inner % lanes == 0
    vec = lanes if explicit else largest_divisor(inner, 4 * lanes)
    col_o, col_i = sch.split(spatial[-1], factors=[None, vec])
    # a register tile over the output channels of an NCHW conv (axis 1 of 4), or the
    # second-last axis: each loaded input vector serves several accumulators
    tile_axis = spatial[1] if n_s == 4 else spatial[-2]
    tile = largest_divisor(loop_extent(sch, tile_axis), CONV_TILE)
    t_o, t_i = sch.split(tile_axis, factors=[None, tile])
    outer = [t_o if lp.same_as(tile_axis) else lp for lp in spatial[:-1]]
    sch.reorder(*outer, col_o, *reduce, t_i, col_i)
    sch.reverse_compute_at(epilogue, col_o, preserve_unit_loops=True)
    if explicit:
        sch.vectorize(col_i)
    sch.unroll(t_i)
    epi_loops = sch.get_loops(epilogue)
    if len(epi_loops) > len(outer) + 1 and loop_extent(sch, epi_loops[-1]) > 1:
        sch.vectorize(epi_loops[-1])
    # parallel and vectorised loops first: TVM checks them on the undecomposed reduction
    _parallel_split(sch, _parallel_prefix(sch, outer))
    sch.decompose_reduction(block, reduce[0])
    for producer in producers:
        _schedule_injective_block(sch, producer, lanes)
    return True


def _parallel_prefix(sch: Schedule, loops: list[Any]) -> list[Any]:
    """The outer loops worth fusing into one parallel loop (enough iterations to share)."""
    out, total = [], 1
    for lp in loops:
        out.append(lp)
        total *= loop_extent(sch, lp)
        if total >= PARALLEL_CHUNKS:
            break
    return out


def _schedule_injective_block(sch: Schedule, block: Any, lanes: int) -> None:
    """Outer loops in parallel, the innermost row left whole for LLVM's loop vectoriser
    (which vectorises contiguous rows and leaves gathers such as a resize's scalar; an
    explicit vector loop would turn those into slow gathers)."""
    loops = sch.get_loops(block)
    if len(loops) > 1:
        _parallel_split(sch, _parallel_prefix(sch, loops[:-1]))
    elif loops and loop_extent(sch, loops[0]) >= PARALLEL_CHUNKS * lanes:
        outer, _ = sch.split(loops[0], factors=[PARALLEL_CHUNKS, None])
        sch.parallel(outer)


def _schedule_parallel(sch: Schedule, lanes: int) -> bool:
    """Any function: each root block's leading spatial loops in parallel, the rest as it is
    (LLVM vectorises contiguous inner rows). Always valid: reductions stay inside their
    block's own loops."""
    blocks = root_blocks(sch)
    if not blocks:
        return False
    for block in blocks:
        kinds = iter_kinds(sch, block)
        loops = sch.get_loops(block)
        lead = len(kinds) - len(kinds.lstrip("S"))
        if len(loops) != len(kinds):
            continue  # loops not bound one to one to the block's iterators: leave it serial
        if lead == len(loops) and lead > 1:
            lead -= 1  # keep an injective block's row whole for the vectoriser
        if lead:
            _parallel_split(sch, _parallel_prefix(sch, loops[:lead]))
    return True


def _try(func: tirx.PrimFunc, rule: Callable[[Schedule, int], bool], lanes: int) -> Any:
    sch = Schedule(func)
    try:
        return sch if rule(sch, lanes) else None
    except Exception:
        return None


def target_cores(target: Target) -> int:
    """The target's ``num-cores`` (1 when it does not say)."""
    return int(dict(host_of(target).export()).get("num-cores") or 1)


def schedule_leftover(func: tirx.PrimFunc, target: Target) -> tuple[tirx.PrimFunc, str | None]:
    """``func`` with the first CPU rule that applies (see the module docstring) and the rule's
    name; ``(func, None)`` when none does or it is scheduled already."""
    if is_scheduled(func) or not isinstance(func, tirx.PrimFunc):
        return func, None
    lanes = vector_lanes(target)
    cores = target_cores(target)
    main = func.with_attr("global_symbol", "main")
    candidates: list[tuple[str, Callable[[], Any]]] = [
        ("norm", lambda: _try(main, lambda sch, n: schedule_norm(sch, n, cores), lanes)),
        (
            "contiguous_reduce",
            lambda: _try(main, lambda sch, n: schedule_contiguous_reduce(sch, n, cores), lanes),
        ),
        ("strided_reduce", lambda: _try(main, schedule_strided_reduce, lanes)),
        ("conv", lambda: _try(main, _schedule_conv, lanes)),
        ("injective", lambda: _try(main, schedule_injective, lanes)),
        ("parallel", lambda: _try(main, _schedule_parallel, lanes)),
    ]
    for name, make in candidates:
        sch = make()
        if sch is None:
            continue
        out = sch.mod["main"].with_attr(IS_SCHEDULED, 1)
        symbol = (func.attrs or {}).get("global_symbol")
        out = (
            out.with_attr("global_symbol", symbol)
            if symbol is not None
            else out.without_attr("global_symbol")
        )
        return out, name
    return func, None
