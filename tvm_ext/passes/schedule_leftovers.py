"""Module pass: give untuned pattern-sparse PrimFuncs the default CPU schedule.

After ``MetaScheduleApplyDatabase`` the functions that had tuning records are scheduled (and
marked ``tirx.is_scheduled``); any pattern-sparse function without a record would otherwise
run as naive loops. Place it right after applying the database.
"""

from __future__ import annotations

from tvm_ext._compat import Schedule, tirx, tvm
from tvm_ext.schedules.cpu import pattern_blocks, schedule_pattern_conv
from tvm_ext.te.pattern_conv import CONV_BLOCK_PREFIX


def _has_pattern_blocks(sch: Schedule) -> bool:
    return any(name.startswith(CONV_BLOCK_PREFIX) for name in pattern_blocks(sch))


@tvm.transform.module_pass(opt_level=0, name="ScheduleUntunedPatternConvs")
class ScheduleUntunedPatternConvs:
    """Apply :func:`schedule_pattern_conv` to unscheduled pattern-sparse PrimFuncs."""

    def __init__(self) -> None:
        self.scheduled: list[str] = []

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        self.scheduled = []
        for gv, func in list(mod.functions_items()):
            if not isinstance(func, tirx.PrimFunc):
                continue
            if func.attrs is not None and int(func.attrs.get("tirx.is_scheduled", 0)):
                continue
            sch = Schedule(func.with_attr("global_symbol", "main"))
            if not _has_pattern_blocks(sch):
                continue
            schedule_pattern_conv(sch)
            mod[gv] = sch.mod["main"].with_attr("global_symbol", gv.name_hint)
            self.scheduled.append(gv.name_hint)
        return mod
