"""MetaSchedule rules for the pattern-sparse conv blocks (CPU and GPU), registered on import.

The TE compute tags each per-pattern reduction block with
``schedule_rule = "patsparse.pattern_conv2d"`` and the padding block with
``"patsparse.pattern_pad"``; MetaSchedule's ``ApplyCustomRule`` looks them up as
``s_tir.meta_schedule.<first target key>.<name>``: ``cpu`` / ``arm_cpu`` (x86, arm64) get the
CPU rules, ``gpu`` / ``opencl`` / ``adreno`` the GPU rules (:func:`pattern_conv_rule_gpu`).
CPU knobs (sampled, mutated by the search):

- output-width tile (``zi``): the register tile along the output row;
- row tile (``ri``): filters (per-kernel layers) or blocks (block layers) sharing a loop nest;
- the accumulator lives in a local buffer written back once per tile.

Parallel loops and reduction init come from the target's postprocs, driven by the root
block's annotations (the default ParallelizeVectorizeUnroll rule samples them).

Block layers vectorise over the block's output-channel lanes; per-kernel layers over the
output width (flat stages: over a run of flat output pixels, the register tile of vectors
being the knob). Rows x output rows run in parallel.
"""

from __future__ import annotations

from typing import Any

from tvm_ext._compat import Schedule, tvm
from tvm_ext.schedules.common import loop_extent
from tvm_ext.te.block_names import PAD_RULE, SCHEDULE_RULE


def _block_all_rule(sch: Schedule, block: Any) -> list[Schedule]:
    """``ps_conv_all``: register tile (output columns x rows) x lanes, pattern/tap unrolled."""
    n, r, y, z, lane, k2, p, t = sch.get_loops(block)
    zo, zi = sch.split(z, sch.sample_perfect_tile(z, n=2, max_innermost_factor=14))
    ro, ri = sch.split(r, sch.sample_perfect_tile(r, n=2, max_innermost_factor=2))
    sch.reorder(n, ro, y, zo, k2, p, t, ri, zi, lane)
    acc = sch.cache_write(block, 0, "local")
    sch.reverse_compute_at(acc, zo)
    for loop in (p, t, ri, zi):
        sch.unroll(loop)
    sch.vectorize(lane)
    return [sch]


def _flat_rule(sch: Schedule, block: Any) -> list[Schedule]:
    """``ps_conv_flat<g>``: the default schedule's loop nest with a sampled register tile."""
    from tvm_ext.schedules.cpu import flat_register_tile
    from tvm_ext.targets import vector_lanes

    lanes = vector_lanes(tvm.target.Target.current(allow_none=True))
    lanes = lanes if loop_extent(sch, sch.get_loops(block)[2]) % lanes == 0 else 1
    flat_register_tile(
        sch,
        block,
        lanes,
        lambda sch, loop: sch.sample_perfect_tile(loop, n=2, max_innermost_factor=8)[1],
    )
    return [sch]


def pattern_conv_rule(sch: Schedule, block: Any) -> list[Schedule]:
    """Design space of one ``ps_conv_<p>`` / ``ps_conv_flat<g>`` / ``ps_conv_all`` block."""
    if len(sch.get_loops(block)) == 8:
        return _block_all_rule(sch, block)
    if len(sch.get_loops(block)) == 5:
        return _flat_rule(sch, block)
    n, r, y, z, lane, j = sch.get_loops(block)
    block_layer = loop_extent(sch, lane) > 1
    zo, zi = sch.split(
        z, sch.sample_perfect_tile(z, n=2, max_innermost_factor=8 if block_layer else 16)
    )
    ro, ri = sch.split(
        r, sch.sample_perfect_tile(r, n=2, max_innermost_factor=2 if block_layer else 4)
    )
    if block_layer:
        sch.reorder(n, ro, y, zo, j, ri, zi, lane)
    else:
        sch.reorder(n, ro, y, zo, lane, j, ri, zi)
    acc = sch.cache_write(block, 0, "local")
    sch.reverse_compute_at(acc, zo)
    if block_layer:
        sch.vectorize(lane)
        sch.unroll(zi)
        sch.unroll(ri)
    else:
        sch.vectorize(zi)
        sch.unroll(ri)
    # No parallel() or decompose_reduction() here: the target's postprocs
    # (RewriteParallelVectorizeUnroll, RewriteReductionBlock) do both, and fail if we did.
    return [sch]


def pattern_pad_rule(sch: Schedule, block: Any) -> list[Schedule]:
    """Keep the padded input materialised (inlining puts a branch in the hot loop)."""
    return [sch]  # parallelised by the postproc from the root annotation


def pattern_conv_rule_gpu(sch: Schedule, block: Any) -> list[Schedule]:
    """GPU design space: the work-group's column tile is the knob (threads bound as in
    :mod:`tvm_ext.schedules.gpu`); the unbound pad/epilogue blocks are bound by the target's
    ``RewriteUnboundBlock`` postproc, the reduction split by ``RewriteReductionBlock``."""
    from tvm_ext.schedules.gpu import max_threads

    threads = max_threads(tvm.target.Target.current(allow_none=True))
    loops = sch.get_loops(block)
    if len(loops) == 5:  # ps_conv_flat<g>: a thread per flat output pixel
        from tvm_ext.schedules.gpu import schedule_flat_conv_gpu

        limit = max(1, min(64, threads))
        pixels = sch.sample_perfect_tile(loops[2], n=2, max_innermost_factor=limit)[1]
        schedule_flat_conv_gpu(sch, block, threads=pixels, decompose=False)
        return [sch]
    n, r, y, z, lane = loops[:5]
    lanes = loop_extent(sch, lane)
    zo, zi = sch.split(
        z, sch.sample_perfect_tile(z, n=2, max_innermost_factor=max(1, min(64, threads // lanes)))
    )
    if len(loops) == 8:
        k2, p, t = loops[5:]
        sch.reorder(n, r, y, zo, zi, lane, k2, p, t)
        sch.bind(sch.fuse(n, r, y, zo), "blockIdx.x")
        tx = sch.fuse(zi, lane)
        unrolled = [p, t]
    else:
        (j,) = loops[5:]
        sch.reorder(n, r, y, zo, lane, zi, j)
        sch.bind(sch.fuse(n, r, y, zo, lane), "blockIdx.x")
        tx = zi
        unrolled = []
    sch.bind(tx, "threadIdx.x")
    acc = sch.cache_write(block, 0, "local")
    sch.reverse_compute_at(acc, tx)
    for loop in unrolled:
        sch.unroll(loop)
    return [sch]


#: target keys whose MetaSchedule rule namespace gets the CPU / the GPU rules
CPU_KEYS = ("cpu", "arm_cpu")
GPU_KEYS = ("gpu", "opencl", "adreno")


def register() -> None:
    """Register the rules (idempotent)."""
    rules = {
        CPU_KEYS: ((SCHEDULE_RULE, pattern_conv_rule), (PAD_RULE, pattern_pad_rule)),
        GPU_KEYS: ((SCHEDULE_RULE, pattern_conv_rule_gpu), (PAD_RULE, pattern_pad_rule)),
    }
    for keys, pairs in rules.items():
        for key in keys:
            for name, fn in pairs:
                tvm.register_global_func(f"s_tir.meta_schedule.{key}.{name}", fn, override=True)


register()
