"""Default schedules for the PrimFuncs tvm_ext generates (tuned ones come from MetaSchedule)."""
