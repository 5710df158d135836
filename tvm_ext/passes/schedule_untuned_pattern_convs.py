"""Module pass: give untuned pattern-sparse PrimFuncs the default schedule of the target in
scope (``with target:``: CPU vectors for llvm targets, bound threads for GPU targets).

After ``MetaScheduleApplyDatabase`` the functions that had tuning records are scheduled (and
marked ``tirx.is_scheduled``); any pattern-sparse function without a record would otherwise
run as naive loops. Place it right after applying the database.
"""

from __future__ import annotations

from tvm_ext._compat import tirx, tvm
from tvm_ext.schedules.dispatch import schedule_pattern_primfunc


@tvm.transform.module_pass(opt_level=0, name="ScheduleUntunedPatternConvs")
class ScheduleUntunedPatternConvs:
    """Apply the default schedule to unscheduled pattern-sparse PrimFuncs."""

    def __init__(self) -> None:
        self.scheduled: list[str] = []

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        self.scheduled = []
        for gv, func in list(mod.functions_items()):
            if not isinstance(func, tirx.PrimFunc):
                continue
            new = schedule_pattern_primfunc(func)
            if new is not None and not new.same_as(func):
                mod[gv] = new
                self.scheduled.append(gv.name_hint)
        return mod
