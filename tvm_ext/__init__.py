"""tvm_ext: the TVM side of patsparse (Relax passes, TE computes, schedules, tuning, RPC).

All TVM imports go through :mod:`tvm_ext._compat`.
"""
