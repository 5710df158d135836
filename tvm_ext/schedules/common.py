"""Helpers the CPU and GPU schedules share: loop extents, divisors, the kernel's blocks."""

from __future__ import annotations

from typing import Any

from tvm_ext._compat import Schedule, tirx


def loop_extent(sch: Schedule, loop: Any) -> int:
    """The constant extent of ``loop``."""
    return int(sch.get(loop).extent)


def largest_divisor(extent: int, limit: int) -> int:
    """Largest divisor of ``extent`` not above ``limit`` (at least 1)."""
    return max(d for d in range(1, max(1, min(extent, limit)) + 1) if extent % d == 0)


def pattern_blocks(sch: Schedule) -> list[str]:
    """Names of the ``ps_*`` blocks directly under the function's root block."""
    root = sch.get_sblock("root")
    names = [sch.get(b).name_hint for b in sch.get_child_blocks(root)]
    return [n for n in names if n.startswith("ps_")]


def root_blocks(sch: Schedule) -> list[Any]:
    """The blocks directly under the function's root block."""
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def iter_kinds(sch: Schedule, block: Any) -> str:
    """``S``/``R``/``O`` per block iterator (spatial, reduction, other)."""
    kinds = {tirx.IterVar.DataPar: "S", tirx.IterVar.CommReduce: "R"}
    return "".join(kinds.get(int(iv.iter_type), "O") for iv in sch.get(block).iter_vars)


def inline_all(sch: Schedule, *, producers: bool = True) -> None:
    """Inline every non-reduction block into its consumers (or producers) where TVM allows.

    ``producers=False`` inlines consumers only: a padding stage inlined into a conv would put
    a bounds test on every load of its inner loop."""
    ways = (sch.compute_inline, _reverse_inline(sch)) if producers else (_reverse_inline(sch),)
    changed = True
    while changed:
        changed = False
        for block in root_blocks(sch):
            if "R" in iter_kinds(sch, block):
                continue
            for inline in ways:
                try:
                    inline(block)
                except Exception:
                    continue
                changed = True
                break


def _reverse_inline(sch: Schedule) -> Any:
    """``sch.reverse_compute_inline`` where the block is its producers' only consumer.

    TVM 0.27 also inlines a consumer into a producer whose result another block still reads
    (a hard-swish's ``x * clip(x + 3)`` after a conv or pool), leaving that block reading a
    buffer nothing writes: the function then fails to build."""

    def inline(block: Any) -> None:
        for producer in sch.get_producers(block):
            consumers = sch.get_consumers(producer)
            if len(consumers) != 1 or not sch.get(consumers[0]).same_as(sch.get(block)):
                raise ValueError("the producer has other consumers")
        sch.reverse_compute_inline(block)

    return inline
