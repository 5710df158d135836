"""The ``contiguous_reduce`` leftover rule: a reduction over contiguous elements per output
(a global average / max pool, a mean over the last axes), not a norm.

The ``conv`` rule would run it as one scalar sum per output (a float sum is not reassociated,
so LLVM keeps it serial): a global average pool of 128 channels at 56x56 took 0.13 ms against
PyTorch's 0.11. Here each output's elements are summed in a few vectors of partial sums
(``rfactor``, as the ``norm`` rule does: :func:`tvm_ext.schedules.norm.partial_sums`), the
outputs in parallel, what follows the reduction (the division of a mean) computed per output.

Taken when: one reduction block reading one function parameter (a pool or a mean, not a conv
with its weight), whose reduction iterators together walk a contiguous run of that
parameter, a whole number of vectors long, with at least two outputs per core. Anything else
is left to the next rule.
"""

from __future__ import annotations

from typing import Any

from tvm_ext._compat import Schedule
from tvm_ext.schedules.common import inline_all, iter_kinds, root_blocks
from tvm_ext.schedules.norm import flat_offset, partial_sums, vectorise_partial_sums


def _walks_contiguously(sch: Schedule, block: Any, internal: list[Any]) -> bool:
    """``block`` reads exactly one parameter, and its reduction iterators (innermost
    fastest) step through consecutive elements of it."""
    stmt = sch.get(block)
    params = [r for r in stmt.reads if not any(r.source.same_as(b) for b in internal)]
    if len(params) != 1:
        return False
    (region,) = params
    iters = list(stmt.iter_vars)
    kinds = iter_kinds(sch, block)
    origin = {iv.var: 0 for iv in iters}
    base = flat_offset(region, origin)
    stride = 1
    for kind, iv in reversed(list(zip(kinds, iters, strict=True))):
        if kind != "R":
            continue
        step = flat_offset(region, {**origin, iv.var: 1})
        if base is None or step is None or step - base != stride:
            return False
        stride *= int(iv.dom.extent)
    return True


def schedule_contiguous_reduce(sch: Schedule, lanes: int, cores: int) -> bool:
    """The rule (module docstring); ``False`` when the function is not such a reduction."""
    inline_all(sch, producers=False)
    blocks = root_blocks(sch)
    reductions = [b for b in blocks if "R" in iter_kinds(sch, b)]
    if len(reductions) != 1 or not sch.get(blocks[0]).same_as(sch.get(reductions[0])):
        return False  # one reduction, nothing computed before it
    (block,) = reductions
    kinds = iter_kinds(sch, block)
    n_s = len(kinds) - len(kinds.lstrip("S"))
    if "S" in kinds[n_s:] or len(sch.get_loops(block)) != len(kinds):
        return False
    internal = list(sch.get(sch.get_sblock("root")).alloc_buffers)
    if not _walks_contiguously(sch, block, internal):
        return False
    outputs = 1
    for iv in list(sch.get(block).iter_vars)[:n_s]:
        outputs *= int(iv.dom.extent)
    consumers = blocks[1:]
    if outputs < 2 * cores or len(consumers) > 1:
        return False
    rf = partial_sums(sch, block, lanes)
    if rf is None:
        return False  # not whole vectors: the conv rule's scalar sum
    if consumers:
        loops = sch.get_loops(consumers[0])
        group = sch.fuse(*loops) if len(loops) > 1 else loops[0]
        sch.compute_at(block, group, preserve_unit_loops=True)
    else:
        loops = sch.get_loops(block)[:n_s]
        group = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    sch.compute_at(rf, group, preserve_unit_loops=True)
    init, _ = vectorise_partial_sums(sch, rf, lanes)
    sch.parallel(group)
    sch.decompose_reduction(rf, init)
    return True
