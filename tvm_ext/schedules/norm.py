"""CPU schedule for normalisation functions: instance, group and layer norm after fusion.

What ``torch.export`` → Relax → ``LegalizeOps`` → ``FuseOps``/``FuseTIR`` make of a norm and
what follows it (affine, ReLU, a residual add) is one PrimFunc: reshape stages, one or two
reduction blocks (sum and sum of squares in one tuple reduction for instance/group norm; sum,
then the sum of squared deviations, for layer norm), then elementwise blocks (normalise,
affine, activation, add). The ``norm`` rule recognises that shape structurally, not by name:

- after every elementwise block is inlined, the function is reduction blocks (leading
  spatial iterators, then reduction iterators, the innermost reading memory contiguously)
  followed by one elementwise output block that re-reads their input (normalises it);
- the output block's elements split evenly into the reductions' groups (a group = one
  channel of an instance norm, ``C/G`` channels of a group norm, one pixel's channels of a
  channels-last layer norm), each group contiguous in the output.

The schedule: the reductions are vectorised by ``rfactor`` (a few vectors of partial sums
per group, summed at the end); the output's loops are split per group (one loop split where
a group boundary falls inside it), the innermost in vectors, the groups in parallel. With
enough groups (``groups >= 2 * cores``) each group's statistics are computed inside the
group's output loop (the group's data is read twice while it sits in cache); with fewer (a
group norm with one or few groups), the reductions run in parallel chunks first, then the
output in parallel rows. A reduction that is no whole number of vectors (a 7x9 map) stays a
scalar sum. Schedule primitives keep the arithmetic as legalised (TVM's one-pass ``E[x^2] -
E[x]^2`` variance for instance/group norm).
"""

from __future__ import annotations

from typing import Any

from tvm_ext._compat import Analyzer, SBlockRealize, Schedule, tirx, undefined_vars
from tvm_ext.schedules.common import (
    inline_all,
    iter_kinds,
    largest_divisor,
    loop_extent,
    root_blocks,
)

#: vectors of partial sums per group (independent add chains hide the add latency)
ACCUMULATORS = 4
#: parallel chunks to aim for when the groups are too few to share out
PARALLEL_CHUNKS = 64


def flat_offset(region: Any, values: dict[Any, int]) -> int | None:
    """Row-major element offset of ``region``'s first element with the iterators at
    ``values``; ``None`` when it is not a constant."""
    analyzer = Analyzer()
    for var, value in values.items():
        analyzer.bind(var, value)
    offset = 0
    for dim, rng in zip(region.source.shape, region.region, strict=True):
        value = analyzer.simplify(rng.min)
        if not isinstance(value, tirx.IntImm) or not isinstance(dim, tirx.IntImm):
            return None
        offset = offset * int(dim) + int(value)
    return offset


def _reads_contiguously(sch: Schedule, block: Any, internal: list[Any]) -> bool:
    """Some function parameter (a buffer not in ``internal``) is read with unit stride along
    the block's innermost iterator (checked at the origin of the iteration space)."""
    stmt = sch.get(block)
    iters = list(stmt.iter_vars)
    at0 = {iv.var: 0 for iv in iters}
    at1 = {**at0, iters[-1].var: 1}
    for region in stmt.reads:
        if any(region.source.same_as(buf) for buf in internal):
            continue
        a, b = flat_offset(region, at0), flat_offset(region, at1)
        if a is not None and b is not None and b - a == 1:
            return True
    return False


def _params_read(sch: Schedule, block: Any, internal: list[Any]) -> list[Any]:
    return [
        r.source for r in sch.get(block).reads if not any(r.source.same_as(buf) for buf in internal)
    ]


def _rereads_input(sch: Schedule, reductions: list[Any], output: Any, internal: list[Any]) -> bool:
    """The output block reads a parameter that every reduction reads (a norm normalises the
    data it took statistics of)."""
    out = _params_read(sch, output, internal)
    return any(
        all(any(p.same_as(q) for q in _params_read(sch, b, internal)) for b in reductions)
        for p in out
    )


def _extent(sch: Schedule, block: Any, kinds: str = "SR") -> int:
    """Product of ``block``'s iterator extents of the given kinds (``S``, ``R``)."""
    total = 1
    for kind, iv in zip(iter_kinds(sch, block), sch.get(block).iter_vars, strict=True):
        if kind in kinds:
            total *= int(iv.dom.extent)
    return total


def _vector_loop(sch: Schedule, loops: list[Any], lanes: int) -> Any:
    """A loop over the same iterations as the innermost of ``loops`` (or all of them, fused)
    whose extent is a whole number of vectors; ``None`` when there is none."""
    if loop_extent(sch, loops[-1]) % lanes == 0:
        return loops[-1]
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    return fused if loop_extent(sch, fused) % lanes == 0 else None


def partial_sums(sch: Schedule, block: Any, lanes: int, *, chunks: int = 1) -> Any:
    """Partial sums of ``block`` (``rfactor``): a few vectors of them per group along the
    innermost (contiguous) reduction loop, their index the last axis of a new buffer; with
    ``chunks > 1`` first that many chunks of the outermost reduction loop, to run in
    parallel. The block of vector partial sums, or ``None`` when the reduction is not a
    whole number of vectors (it stays a scalar reduction)."""
    n_r = iter_kinds(sch, block).count("R")
    if chunks > 1:
        outer = sch.get_loops(block)[-n_r]
        parts = largest_divisor(loop_extent(sch, outer), chunks)
        if parts > 1:
            part, _ = sch.split(outer, factors=[parts, None])
            block = sch.rfactor(part, -1)
            n_r = iter_kinds(sch, block).count("R")
    vec = _vector_loop(sch, sch.get_loops(block)[-n_r:], lanes)
    if vec is None:
        return None
    length = loop_extent(sch, vec)
    width = lanes * largest_divisor(length // lanes, ACCUMULATORS)
    _, inner = sch.split(vec, factors=[None, width])
    return sch.rfactor(inner, -1)


def _loops_by_iterator(sch: Schedule, block: Any) -> list[list[Any]]:
    """For each of ``block``'s iterators, the loops its binding uses (outermost first)."""
    loops = sch.get_loops(block)
    realize = sch.get(loops[-1]).body
    if not isinstance(realize, SBlockRealize):
        raise ValueError("the block is not the only statement of its innermost loop")
    out = []
    for value in realize.iter_values:
        used = undefined_vars(value, [])
        out.append([lp for lp in loops if any(sch.get(lp).loop_var.same_as(v) for v in used)])
    return out


def _among(sch: Schedule, loop: Any, loops: list[Any]) -> bool:
    """``loop`` is one of ``loops`` (loop handles differ between ``get_loops`` calls)."""
    var = sch.get(loop).loop_var
    return any(sch.get(lp).loop_var.same_as(var) for lp in loops)


def _own_loops(sch: Schedule, block: Any) -> list[Any]:
    """The loops around ``block`` that hold nothing else (a chain that can be reordered)."""
    loops = sch.get_loops(block)
    own = [loops[-1]]
    for outer in reversed(loops[:-1]):
        if not sch.get(outer).body.same_as(sch.get(own[0])):
            break
        own.insert(0, outer)
    return own


def vectorise_partial_sums(sch: Schedule, rf: Any, lanes: int) -> tuple[Any, list[Any]]:
    """The partial-sum lanes innermost, in vectors (unrolled: independent add chains).
    Returns the outermost reduction loop (to decompose the reduction at) and the loops of
    the spatial iterators (the groups)."""
    kinds = iter_kinds(sch, rf)
    used = _loops_by_iterator(sch, rf)
    lane = kinds.index("S")  # rfactor's new iterator comes first
    if len(used[lane]) != 1:
        raise ValueError("the partial sums' lane iterator is not one loop")
    (lane_loop,) = used[lane]
    spatial = [lp for i, lps in enumerate(used) if kinds[i] == "S" and i != lane for lp in lps]
    reduce = [lp for i, lps in enumerate(used) if kinds[i] == "R" for lp in lps]
    own = _own_loops(sch, rf)
    spatial = [lp for lp in own if _among(sch, lp, spatial)]
    reduce = [lp for lp in own if _among(sch, lp, reduce)]
    sch.reorder(*spatial, *reduce, lane_loop)
    unroll, vec = sch.split(lane_loop, factors=[None, lanes])
    sch.vectorize(vec)
    sch.unroll(unroll)
    return reduce[0], spatial


def _split_per_group(
    sch: Schedule, loops: list[Any], per_group: int
) -> tuple[list[Any], list[Any]]:
    """``loops`` (the output's, outermost first) as (group loops, row loops): the row loops
    cover ``per_group`` consecutive elements (one loop split where a group boundary falls
    inside it); ``([], [])`` when the groups are not whole rows of the output."""
    rest = per_group
    for i in range(len(loops) - 1, -1, -1):
        extent = loop_extent(sch, loops[i])
        if rest == 1:
            return loops[: i + 1], loops[i + 1 :]
        if rest % extent == 0:
            rest //= extent
            continue
        if extent % rest:
            return [], []
        outer, inner = sch.split(loops[i], factors=[None, rest])
        return [*loops[:i], outer], [inner, *loops[i + 1 :]]
    return ([], loops) if rest == 1 else ([], [])


def _vectorise_rows(sch: Schedule, rows: list[Any], lanes: int) -> None:
    """The innermost (or fused) row loop in vectors where it is whole vectors, else left to
    LLVM's loop vectoriser."""
    if not rows:
        return
    vec = _vector_loop(sch, rows, lanes)
    if vec is not None:
        _, inner = sch.split(vec, factors=[None, lanes])
        sch.vectorize(inner)


def _is_norm(sch: Schedule) -> tuple[list[Any], Any, int] | None:
    """(reduction blocks, output block, groups) of a norm-shaped function (module docstring)
    after its elementwise blocks are inlined; ``None`` for anything else."""
    inline_all(sch)
    blocks = root_blocks(sch)
    if len(blocks) < 2:
        return None
    *reductions, output = blocks
    if "R" in iter_kinds(sch, output):
        return None
    for block in reductions:
        kinds = iter_kinds(sch, block)
        if "R" not in kinds or kinds.rstrip("R").strip("S"):
            return None  # not spatial iterators followed by reduction iterators
    internal = list(sch.get(sch.get_sblock("root")).alloc_buffers)
    if not all(_reads_contiguously(sch, b, internal) for b in reductions):
        return None
    groups = {_extent(sch, b, "S") for b in reductions}
    if len(groups) != 1:
        return None
    (n_groups,) = groups
    total = _extent(sch, output)
    if total % n_groups or total == n_groups:
        return None  # one statistic per output element: a conv or a pool, not a norm
    if not _rereads_input(sch, reductions, output, internal):
        return None
    return reductions, output, n_groups


def schedule_norm(sch: Schedule, lanes: int, cores: int) -> bool:
    """The ``norm`` rule (module docstring); ``False`` when the function is not a norm."""
    found = _is_norm(sch)
    if found is None:
        return False
    reductions, output, n_groups = found
    per_group = _extent(sch, output) // n_groups
    if n_groups >= 2 * cores:
        groups, rows = _split_per_group(sch, sch.get_loops(output), per_group)
        if not groups:
            return False
        group = sch.fuse(*groups) if len(groups) > 1 else groups[0]
        rfs = [partial_sums(sch, b, lanes) for b in reductions]
        for b, rf in reversed(list(zip(reductions, rfs, strict=True))):
            sch.compute_at(b, group, preserve_unit_loops=True)
            if rf is not None:
                sch.compute_at(rf, group, preserve_unit_loops=True)
        inits = [
            vectorise_partial_sums(sch, rf, lanes)[0] if rf is not None else None for rf in rfs
        ]
        _vectorise_rows(sch, rows, lanes)
        sch.parallel(group)
    else:
        # few groups: the reductions in parallel chunks, then the output in parallel rows
        inits, rfs = [], []
        for block in reductions:
            rf = partial_sums(sch, block, lanes, chunks=PARALLEL_CHUNKS // n_groups)
            rfs.append(rf)
            if rf is None:
                inits.append(None)
                continue
            init, spatial = vectorise_partial_sums(sch, rf, lanes)
            sch.parallel(sch.fuse(*spatial) if len(spatial) > 1 else spatial[0])
            inits.append(init)
        loops = sch.get_loops(output)
        _vectorise_rows(sch, loops[-1:], lanes)
        loops = sch.get_loops(output)
        _parallel_outer(sch, loops[:-2] if len(loops) > 2 else loops[:-1])
    # after the parallel loops: TVM checks them on the undecomposed reductions
    for rf, loop in zip(rfs, inits, strict=True):
        if rf is not None and loop is not None:
            sch.decompose_reduction(rf, loop)
    return True


def _parallel_outer(sch: Schedule, loops: list[Any]) -> None:
    """Fuse the outer loops until there are enough iterations to share, and run them in
    parallel."""
    chosen, total = [], 1
    for lp in loops:
        chosen.append(lp)
        total *= loop_extent(sch, lp)
        if total >= PARALLEL_CHUNKS:
            break
    if chosen:
        sch.parallel(sch.fuse(*chosen) if len(chosen) > 1 else chosen[0])
