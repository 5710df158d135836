"""CPU schedule for reductions over a strided axis: a mean or norm over the channels of NCHW.

A layer norm over the channels of an NCHW map (``x.mean(1, keepdim=True)`` written by hand,
or ``LayerNorm(C)`` between two permutes, which :class:`tvm_ext.passes.ChannelNormNCHW` turns
into a norm over axis 1) reduces over an axis whose elements lie ``H*W`` apart, while the
pixels it keeps are contiguous. Left to the ``parallel`` rule its reduction loop is innermost
and reads one element per cache line. The ``strided_reduce`` rule recognises such a function
structurally, not by name: after inlining its elementwise blocks,

- every block is elementwise (spatial iterators only) or a reduction (spatial iterators,
  then reduction iterators);
- each reduction reads exactly one buffer along its reduction iterators (a conv or a matmul
  reads its weights along them too: not taken), and some buffer with unit stride along its
  innermost *spatial* iterator (which spans at least a vector), with an index that uses
  every spatial iterator longer than 1.

Schedule: each reduction's innermost spatial loop goes inside its reduction loops, in
vectors (the partial results of a vector of pixels accumulate side by side, every load
contiguous); elementwise blocks keep their row innermost, in vectors; each block's outer
loops run in parallel. The arithmetic is the legalised one, unchanged.
"""

from __future__ import annotations

from typing import Any

from tvm_ext._compat import Schedule, undefined_vars
from tvm_ext.schedules.access import accesses, stride_along
from tvm_ext.schedules.common import inline_all, iter_kinds, loop_extent, root_blocks

#: parallel chunks to aim for (more than the cores, so uneven rows still balance)
PARALLEL_CHUNKS = 64


def _vars_of(load: Any) -> list[Any]:
    return [v for index in load.indices for v in undefined_vars(index, [])]


def _buffer(load: Any) -> Any:
    return load.buffer if hasattr(load, "buffer") else load.source


def _has(used: list[Any], var: Any) -> bool:
    return any(u.same_as(var) for u in used)


def _is_strided_reduction(sch: Schedule, block: Any, lanes: int) -> bool:
    """The block reduces over some axis while a buffer it reads runs contiguously along its
    innermost spatial iterator, indexed by every non-trivial spatial iterator."""
    kinds = iter_kinds(sch, block)
    n_s = len(kinds) - len(kinds.lstrip("S"))
    if n_s == 0 or n_s == len(kinds) or kinds[n_s:].strip("R"):
        return False
    stmt = sch.get(block)
    iters = list(stmt.iter_vars)
    inner = iters[n_s - 1]
    if int(inner.dom.extent) < lanes:
        return False
    wide = [iv.var for iv in iters[:n_s] if int(iv.dom.extent) > 1]
    reduced = [iv.var for iv in iters[n_s:]]
    loads = accesses(stmt)[0]
    uses = [_vars_of(load) for load in loads]
    along = [
        _buffer(ld) for ld, u in zip(loads, uses, strict=True) if any(_has(u, r) for r in reduced)
    ]
    if not along or any(not b.same_as(along[0]) for b in along):
        return False  # a conv or a matmul: its weights are read along the reduction too
    for load, used in zip(loads, uses, strict=True):
        if not all(_has(used, v) for v in wide):
            continue
        others = [iv.var for iv in iters if not iv.var.same_as(inner.var)]
        if stride_along(load, inner.var, others) == 1:
            return True
    return False


def _parallel(sch: Schedule, loops: list[Any]) -> None:
    """Fuse the leading ``loops`` until there are enough iterations to share; parallel."""
    chosen, total = [], 1
    for lp in loops:
        chosen.append(lp)
        total *= loop_extent(sch, lp)
        if total >= PARALLEL_CHUNKS:
            break
    if chosen and total > 1:
        sch.parallel(sch.fuse(*chosen) if len(chosen) > 1 else chosen[0])


def _schedule_reduction(sch: Schedule, block: Any, lanes: int) -> None:
    kinds = iter_kinds(sch, block)
    n_s = len(kinds) - len(kinds.lstrip("S"))
    loops = sch.get_loops(block)
    spatial, reduce = loops[:n_s], loops[n_s:]
    inner = spatial[-1]
    if loop_extent(sch, inner) % lanes == 0:
        outer, vec = sch.split(inner, factors=[None, lanes])
        sch.reorder(*spatial[:-1], outer, *reduce, vec)
        sch.vectorize(vec)
        _parallel(sch, [*spatial[:-1], outer])
    else:  # a row that is no whole number of vectors: LLVM's loop vectoriser takes it
        sch.reorder(*spatial[:-1], *reduce, inner)
        _parallel(sch, spatial[:-1])
    sch.decompose_reduction(block, reduce[0])


def _schedule_elementwise(sch: Schedule, block: Any, lanes: int) -> None:
    loops = sch.get_loops(block)
    if len(loops) != len(iter_kinds(sch, block)):
        return
    inner = loops[-1]
    if loop_extent(sch, inner) % lanes == 0:
        _, vec = sch.split(inner, factors=[None, lanes])
        sch.vectorize(vec)
    _parallel(sch, loops[:-1])


def schedule_strided_reduce(sch: Schedule, lanes: int) -> bool:
    """The ``strided_reduce`` rule (module docstring); ``False`` when it does not apply."""
    inline_all(sch)
    blocks = root_blocks(sch)
    reductions = []
    for block in blocks:
        kinds = iter_kinds(sch, block)
        if "O" in kinds or len(sch.get_loops(block)) != len(kinds):
            return False
        if "R" in kinds:
            if not _is_strided_reduction(sch, block, lanes):
                return False
            reductions.append(block)
    if not reductions:
        return False
    for block in blocks:
        if "R" in iter_kinds(sch, block):
            _schedule_reduction(sch, block, lanes)
        else:
            _schedule_elementwise(sch, block, lanes)
    return True
