"""Default schedules for the PrimFuncs tvm_ext generates (tuned ones come from MetaSchedule).

:mod:`.dispatch` picks the schedule for a target and is what callers use; :mod:`.cpu` and
:mod:`.gpu` schedule one function each way and share :mod:`.common`, never each other.
"""
