"""A TVM RPC server that serves in its own process and registers at a tracker.

Run as a script on the device (``python device_server.py --tracker H:P --key K``): under
qemu-user with the runtime-only aarch64 wheel (the emulated arm64 phone), or on this machine
with ``--init tvm_ext.rpc.opencl:register`` (the emulated Adreno executor). Unlike
``python -m tvm.exec.rpc_server`` it never starts a second interpreter, so qemu-user needs no
binfmt_misc registration. Sessions are forked per connection, as in the stock server.

Standalone on purpose: it imports only ``tvm`` (the device has no compiler, no tvm_ext), which
is why it does not go through ``tvm_ext._compat``.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import logging
import os
import signal
import sys


def _load_runtime_extra() -> None:
    """The runtime-only wheel does not load libtvm_runtime_extra.so, which holds functions
    MetaSchedule's stock runner calls (``tvm.contrib.random.random_fill_for_measure``)."""
    import tvm

    if not getattr(tvm.base, "_RUNTIME_ONLY", False):
        return
    runtime = tvm.base._LOADED_LIBS["tvm_runtime"]._name
    extra = os.path.join(os.path.dirname(runtime), "libtvm_runtime_extra.so")
    if os.path.exists(extra):
        tvm.base._LOADED_LIBS["tvm_runtime_extra"] = ctypes.CDLL(extra, ctypes.RTLD_LOCAL)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tracker", required=True, help="HOST:PORT of the tracker")
    p.add_argument("--key", required=True)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    p.add_argument("--port", type=int, default=9100)
    p.add_argument("--port-end", type=int, default=9200)
    p.add_argument("--init", default=None, help="MODULE:FUNCTION to call first (registrations)")
    args = p.parse_args(argv)

    # the stock server logs each session ("connection from ...") at INFO: keep that in the log
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    _load_runtime_extra()
    if args.init:
        module, _, func = args.init.partition(":")
        getattr(importlib.import_module(module), func)()
    from tvm.rpc.server import PopenRPCServerState

    host, _, port = args.tracker.rpartition(":")
    state = PopenRPCServerState(
        args.host, args.port, args.port_end, False, (host, int(port)), args.key, None, None, True
    )
    print(f"rpc server pid {os.getpid()} on {args.host}:{state.port}, key {args.key}", flush=True)
    # SIGTERM: leave at once (forked sessions are children; they end with their socket)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    state.thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
