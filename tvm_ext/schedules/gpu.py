"""Default GPU (OpenCL, Adreno) schedule for the pattern-sparse conv PrimFunc.

Threads are bound the way the CPU schedule parallelises and vectorises:

- ``ps_pad`` and ``ps_epilogue``: one thread per element (fused, split by ``threads``).
- ``ps_conv_all`` (block layers): a work-group per (image, block, output row, column tile);
  its threads cover (columns of the tile) x (the block's output-channel lanes), each
  accumulating one output in a register; pattern and tap loops unrolled.
- ``ps_conv_flat<g>`` (per-kernel layers): a work-group per (image, filter, run of flat
  output pixels), a thread per pixel.
- ``ps_conv_<p>`` (per-kernel layers reading a chained input): a work-group per (image,
  filter row, output row); threads over the output columns.

``threads`` is the work-group size limit (the ``qcom/adreno-opencl`` tag says 256; PoCL does
not enforce it, so the schedule must).
"""

from __future__ import annotations

from typing import Any

from tvm_ext._compat import Schedule
from tvm_ext.schedules.common import largest_divisor, loop_extent, pattern_blocks
from tvm_ext.te.block_names import CONV_BLOCK_PREFIX, EPILOGUE_BLOCK, PAD_BLOCK

DEFAULT_THREADS = 64


def max_threads(target: Any, default: int = 256) -> int:
    """The target's work-group size limit (``max_num_threads``)."""
    value = target.attrs.get("max_num_threads") if target is not None else None
    return int(value) if value is not None else default


def _bind_elementwise(sch: Schedule, name: str, threads: int) -> None:
    blk = sch.get_sblock(name)
    fused = sch.fuse(*sch.get_loops(blk))
    bx, tx = sch.split(fused, [None, threads])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")


def schedule_block_conv_gpu(sch: Schedule, blk: Any, *, columns: int, unroll: bool = True) -> None:
    """``ps_conv_all``: work-group = ``columns`` output columns x the block's lanes."""
    n, r, y, z, lane, k2, p, t = sch.get_loops(blk)
    zo, zi = sch.split(z, [None, columns])
    sch.reorder(n, r, y, zo, zi, lane, k2, p, t)
    sch.bind(sch.fuse(n, r, y, zo), "blockIdx.x")
    tx = sch.fuse(zi, lane)
    sch.bind(tx, "threadIdx.x")
    acc = sch.cache_write(blk, 0, "local")
    sch.reverse_compute_at(acc, tx)
    if unroll:
        sch.unroll(p)
        sch.unroll(t)
    sch.decompose_reduction(blk, k2)


def schedule_kernel_conv_gpu(sch: Schedule, blk: Any, *, columns: int) -> None:
    """``ps_conv_<p>``: work-group per (image, row, output row), threads over columns."""
    n, r, y, z, lane, j = sch.get_loops(blk)
    zo, zi = sch.split(z, [None, columns])
    sch.reorder(n, r, y, zo, lane, zi, j)
    sch.bind(sch.fuse(n, r, y, zo, lane), "blockIdx.x")
    sch.bind(zi, "threadIdx.x")
    acc = sch.cache_write(blk, 0, "local")
    sch.reverse_compute_at(acc, zi)
    sch.decompose_reduction(blk, j)


def schedule_flat_conv_gpu(
    sch: Schedule, blk: Any, *, threads: Any, decompose: bool = True
) -> None:
    """``ps_conv_flat<g>``: work-group per (image, filter, run of ``threads`` flat output
    pixels; a number, or a sampled factor in the tuning rule), one pixel per thread,
    accumulated in a register; taps unrolled. ``decompose=False`` leaves the reduction init
    to the target's postprocs (tuning)."""
    n, r, j, s, t = sch.get_loops(blk)
    jo, ji = sch.split(j, [None, threads])
    sch.bind(sch.fuse(n, r, jo), "blockIdx.x")
    sch.bind(ji, "threadIdx.x")
    acc = sch.cache_write(blk, 0, "local")
    sch.reverse_compute_at(acc, ji)
    sch.unroll(t)
    if decompose:
        sch.decompose_reduction(blk, s)


def schedule_pattern_conv_gpu(sch: Schedule, *, threads: int = 256) -> None:
    """Bind every ``ps_*`` block of the function in ``sch`` to GPU threads, in place."""
    elementwise = min(threads, DEFAULT_THREADS)
    for name in pattern_blocks(sch):
        if name in (PAD_BLOCK, EPILOGUE_BLOCK):
            _bind_elementwise(sch, name, elementwise)
        elif name.startswith(CONV_BLOCK_PREFIX):
            blk = sch.get_sblock(name)
            loops = sch.get_loops(blk)
            if len(loops) == 8:
                lanes = loop_extent(sch, loops[4])
                cols = largest_divisor(loop_extent(sch, loops[3]), max(1, threads // lanes))
                schedule_block_conv_gpu(sch, blk, columns=cols)
            elif len(loops) == 5:
                pixels = largest_divisor(loop_extent(sch, loops[2]), min(threads, DEFAULT_THREADS))
                schedule_flat_conv_gpu(sch, blk, threads=pixels)
            else:
                cols = largest_divisor(loop_extent(sch, loops[3]), min(threads, DEFAULT_THREADS))
                schedule_kernel_conv_gpu(sch, blk, columns=cols)
