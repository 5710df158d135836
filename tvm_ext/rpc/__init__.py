"""Phones and emulated devices over TVM RPC.

- :mod:`~tvm_ext.rpc.session`: tracker (context manager), key queries and waits, sessions with
  separate queue and session timeouts; errors that name ``patsparse rpc query``.
- :mod:`~tvm_ext.rpc.devices`: emulated arm64 (qemu-user, :mod:`~tvm_ext.rpc.arm64_root`) and
  Adreno (PoCL, :mod:`~tvm_ext.rpc.opencl`) devices; :mod:`~tvm_ext.rpc.device_server` is the
  server process both run.
- :mod:`~tvm_ext.rpc.runner`: MetaSchedule measurement on a device at a tracker.
- :mod:`~tvm_ext.rpc.remote`: run and time a compiled model on a device.
"""
