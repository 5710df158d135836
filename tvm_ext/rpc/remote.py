"""Run a compiled model on a remote device: upload the library, run the Relax VM there.

The arm64 path is TVM's own: the cross-linked library is uploaded, ``load_module`` on the
device, the Relax VM driven over RPC (the same calls drive a phone's RPC app).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tvm_ext._compat import close_rpc_session, relax, tensor
from tvm_ext.rpc.session import TrackerAddress, request_session
from tvm_ext.targets import export_library, is_gpu


@dataclass(frozen=True)
class RemoteTiming:
    """Latency of the remote ``main`` (seconds): median, min and max of ``repeat`` runs."""

    median: float
    min: float
    max: float
    repeat: int
    #: every run's time, in order
    runs: tuple[float, ...] = ()


class RemoteModel:
    """A compiled model (``tvm_ext.pipeline.CompiledModel``) loaded on a device at a tracker.

    ``with RemoteModel(compiled, tracker, key) as rm: y = rm(x)``.
    """

    def __init__(
        self,
        compiled: Any,
        tracker: TrackerAddress,
        key: str,
        *,
        queue_timeout: float = 60.0,
        session_timeout: float = 600.0,
        threads: int | None = None,
    ) -> None:
        if is_gpu(compiled.target):
            raise ValueError(
                "GPU models run through TVM's OpenCL runtime, which the emulated Adreno device "
                "lacks: run their kernels with tvm_ext.rpc.opencl (or a phone's RPC app)"
            )
        self.compiled = compiled
        self.tracker, self.key = tracker, key
        self.queue_timeout, self.session_timeout = queue_timeout, session_timeout
        self.session: Any = None
        self.vm: Any = None
        self.device: Any = None
        #: runtime threads on the device: asked for (``None``: its default), then as read back
        self.threads = threads

    def open(self) -> RemoteModel:
        self.session = request_session(
            self.tracker,
            self.key,
            queue_timeout=self.queue_timeout,
            session_timeout=self.session_timeout,
        )
        with tempfile.TemporaryDirectory() as tmp:
            lib = export_library(
                self.compiled.executable, Path(tmp) / "model.so", self.compiled.target
            )
            self.session.upload(str(lib))
        self.device = self.session.cpu(0)
        self.vm = relax.VirtualMachine(self.session.load_module("model.so"), self.device)
        try:
            self.threads = self._configure_threads(self.threads)
        except Exception:
            self.close()
            raise
        return self

    def _configure_threads(self, threads: int | None) -> int | None:
        """Set the device runtime's thread count (the session's pool) and read it back;
        ``None`` where the runtime lacks the functions (it then runs its default)."""
        if threads is not None:
            try:
                config = self.session.get_function("runtime.config_threadpool")
            except Exception as exc:
                raise ValueError(
                    f"the device runtime cannot set its thread count ({exc}); start its RPC "
                    "server with TVM_NUM_THREADS instead and leave --threads out"
                ) from exc
            config(1, int(threads))  # affinity mode 1: the big cores first
        try:
            return int(self.session.get_function("runtime.NumThreads")())
        except Exception:  # a runtime without it: what was asked for, or unknown
            return threads

    def close(self) -> None:
        self.vm = None
        self.device = None
        if self.session is not None:
            close_rpc_session(self.session)  # the device is free for the next client
        self.session = None

    def __enter__(self) -> RemoteModel:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _input(self, x: np.ndarray) -> Any:
        return tensor(np.ascontiguousarray(x, dtype=np.float32), self.device)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        # Over RPC a returned tuple is an opaque remote object: the stateful interface hands
        # the outputs back one tensor at a time.
        self.vm.set_input("main", self._input(x))
        self.vm.invoke_stateful("main")
        out = self.vm.get_outputs("main")
        while isinstance(out, (tuple, list)):
            out = out[0]
        return np.asarray(out.numpy())

    def time(self, x: np.ndarray, *, number: int = 1, repeat: int = 3) -> RemoteTiming:
        """Time ``main`` on the device (the VM's time evaluator, run remotely)."""
        self.vm.set_input("main", self._input(x))
        f = self.vm.time_evaluator("invoke_stateful", self.device, number=number, repeat=repeat)
        res = f("main")
        runs = [float(r) for r in res.results]
        return RemoteTiming(float(np.median(runs)), min(runs), max(runs), repeat, tuple(runs))
