"""Helpers the CPU and GPU schedules share: loop extents, divisors, the kernel's blocks."""

from __future__ import annotations

from typing import Any

from tvm_ext._compat import Schedule


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
