"""Module pass: give every PrimFunc still unscheduled after fusion a CPU schedule.

Where it belongs: after ``FuseTIR`` (when the functions that will run exist) and before
``CallTIRRewrite`` on llvm targets; :func:`tvm_ext.pipeline.backend_passes` places it.
Functions that carry a schedule (our kernels, tuned ones) are left alone; the rest get the
first rule of :mod:`tvm_ext.schedules.leftovers` that applies (``norm``, ``strided_reduce``,
``conv``, ``injective``, ``parallel``). ``records`` lists each function
with the rule that scheduled it, or ``None`` when none did (slow: reported, never hidden).
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm_ext._compat import Target, tirx, tvm
from tvm_ext.schedules.leftovers import is_scheduled, schedule_leftover


@dataclass(frozen=True)
class LeftoverRecord:
    """One PrimFunc of the compiled module: how it is scheduled."""

    name: str
    #: ``"ours"`` (a patsparse kernel or tuned), a rule of :mod:`tvm_ext.schedules.leftovers`,
    #: or ``None``: no rule applied, the function runs as plain loops
    schedule: str | None


@tvm.transform.module_pass(opt_level=0, name="ScheduleLeftovers")
class ScheduleLeftovers:
    """Schedule every unscheduled PrimFunc for the target in scope (CPU targets)."""

    def __init__(self, *, target: Target | None = None) -> None:
        self.target = target
        self.records: list[LeftoverRecord] = []

    @property
    def unscheduled(self) -> list[str]:
        """Names of the functions no rule could schedule."""
        return [r.name for r in self.records if r.schedule is None]

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        target = self.target or Target.current(allow_none=False)
        self.records = []
        for gv, func in list(mod.functions_items()):
            if not isinstance(func, tirx.PrimFunc):
                continue
            if is_scheduled(func):
                self.records.append(LeftoverRecord(gv.name_hint, "ours"))
                continue
            new, rule = schedule_leftover(func, target)
            if rule is not None:
                mod[gv] = new
            self.records.append(LeftoverRecord(gv.name_hint, rule))
        return mod
