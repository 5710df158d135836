"""MetaSchedule measurement on a device at an RPC tracker (emulated or a phone).

:class:`TrackerRunner` measures candidates one after the other on the device with ``key``:

- ``mode="module"`` (arm64 CPUs, and any device whose TVM runtime loads libraries): the
  cross-linked candidate library is uploaded, loaded and timed with ``time_evaluator``, the
  way MetaSchedule's stock ``RPCRunner`` does; arguments come from
  :func:`tvm_ext.tuning.measure.alloc_sparse_arguments` (valid index arrays, allocated on the
  device).
- ``mode="opencl"`` (the emulated Adreno device): the candidate is a kernel bundle
  (:mod:`tvm_ext.rpc.opencl`) run by the device's executor.

Why not the stock ``RPCRunner``: its per-candidate timeout includes the wait for a free
device, so with one phone and several workers candidates are blamed for queueing (TVM #7725),
and a dead device costs every candidate the whole timeout. Here the queue has its own timeout,
the session timeout starts once connected, one session serves a whole batch, and once the
device is gone the rest of the batch fails at once (a re-run measures them again). A phone
with TVM's Android RPC app works with either runner (:func:`stock_rpc_runner`).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

from patsparse.core.errors import RemoteError
from tvm_ext._compat import close_rpc_session, derived_object, tvm
from tvm_ext._compat import meta_schedule as ms
from tvm_ext.rpc.session import TrackerAddress, open_session, request_session
from tvm_ext.tuning.measure import alloc_sparse_arguments, fast_build

RUNNER_MODES = ("module", "opencl")


@dataclass(frozen=True)
class RemoteRunnerConfig:
    """How candidates are measured on the device."""

    tracker: TrackerAddress
    key: str
    mode: str = "module"
    number: int = 3
    repeat: int = 1
    min_repeat_ms: int = 0
    #: seconds to wait for a free server with ``key`` (the device may be busy)
    queue_timeout: float = 60.0
    #: seconds a session may last once connected (0: unlimited)
    session_timeout: float = 300.0
    version: int = 1

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "tracker": str(self.tracker)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RemoteRunnerConfig:
        data = json.loads(text)
        return cls(**{**data, "tracker": TrackerAddress.parse(data["tracker"])})

    def __post_init__(self) -> None:
        if self.queue_timeout < 0 or self.session_timeout < 0:
            raise ValueError(
                f"timeouts must be >= 0, got queue {self.queue_timeout}, "
                f"session {self.session_timeout}"
            )
        if self.mode not in RUNNER_MODES:
            raise ValueError(f"mode must be one of {RUNNER_MODES}, got {self.mode!r}")
        if self.number < 1 or self.repeat < 1:
            raise ValueError(f"number and repeat must be >= 1, got {self.number}, {self.repeat}")


@derived_object
class _DoneFuture(ms.runner.PyRunnerFuture):
    def __init__(self, result: Any) -> None:
        super().__init__()
        self._result = result

    def done(self) -> bool:
        return True

    def result(self) -> Any:
        return self._result


def _args_json(runner_input: Any) -> list[Any]:
    return [list(info.as_json()) for info in runner_input.args_info]


@derived_object
class TrackerRunner(ms.runner.PyRunner):
    """Measure candidates on the device at the tracker (see the module docstring)."""

    def __init__(self, config: RemoteRunnerConfig) -> None:
        super().__init__()
        self.config = config

    def run(self, runner_inputs: list[Any]) -> list[Any]:
        cfg = self.config
        results: list[Any] = []
        session: Any = None
        gone: str | None = None
        try:
            for inp in runner_inputs:
                if gone is not None:
                    results.append(ms.runner.RunnerResult(None, gone))
                    continue
                try:
                    if session is None:
                        session = request_session(
                            cfg.tracker,
                            cfg.key,
                            queue_timeout=cfg.queue_timeout,
                            session_timeout=cfg.session_timeout,
                        )
                    secs = self._measure(session, inp)
                    results.append(ms.runner.RunnerResult(secs, None))
                except RemoteError as exc:
                    gone = f"device unavailable: {exc}"
                    results.append(ms.runner.RunnerResult(None, gone))
                except Exception as exc:
                    # The candidate failed, or the session died with the device: measure the
                    # next one on a fresh session (a missing device then fails the rest at once).
                    results.append(ms.runner.RunnerResult(None, f"{type(exc).__name__}: {exc}"))
                    if session is not None:
                        close_rpc_session(session)
                    session = None
        finally:
            if session is not None:
                close_rpc_session(session)  # the device is free for the next batch / client
        return [_DoneFuture(r) for r in results]

    def _measure(self, session: Any, inp: Any) -> list[float]:
        cfg = self.config
        if cfg.mode == "opencl":
            from tvm_ext.rpc.opencl import KernelBundle, run_remote

            with open(inp.artifact_path) as f:
                bundle = KernelBundle.from_json(f.read())
            args = alloc_sparse_arguments(tvm.cpu(), _args_json(inp), 1)[0]
            _, times = run_remote(
                session, bundle, [a.numpy() for a in args], number=cfg.number, repeat=cfg.repeat
            )
            return times
        # A unique remote name per candidate: dlopen hands back an already loaded library for
        # a path it has seen, so reusing one name could time the previous candidate again.
        folder = os.path.basename(os.path.dirname(inp.artifact_path))
        name = f"{folder}-{os.path.basename(inp.artifact_path)}"
        session.upload(inp.artifact_path, name)
        try:
            rt = session.load_module(name)
            dev = session.cpu(0)
            args = alloc_sparse_arguments(dev, _args_json(inp), 1)[0]
            entry = getattr(rt, "entry_name", None) or "main"
            f = rt.time_evaluator(
                entry, dev, number=cfg.number, repeat=cfg.repeat, min_repeat_ms=cfg.min_repeat_ms
            )
            return [float(x) for x in f(*args).results]
        finally:
            # the session may be gone with the device: nothing left to clean then
            with contextlib.suppress(Exception):
                session.remove(name)


def stock_rpc_runner(config: RemoteRunnerConfig) -> Any:
    """MetaSchedule's own ``RPCRunner`` (one worker: one device), with valid index arrays.

    For a phone running TVM's Android RPC app (it has the OpenCL runtime, so GPU candidates
    run there as libraries)."""

    def alloc(session: Any, device: Any, args_info: Any, alloc_repeat: int) -> Any:
        return alloc_sparse_arguments(device, args_info, alloc_repeat)

    return ms.runner.RPCRunner(
        rpc_config=ms.runner.RPCConfig(
            tracker_host=config.tracker.host,
            tracker_port=config.tracker.port,
            tracker_key=config.key,
            session_timeout_sec=int(config.session_timeout),
        ),
        evaluator_config=ms.runner.EvaluatorConfig(
            number=config.number, repeat=config.repeat, min_repeat_ms=config.min_repeat_ms
        ),
        f_alloc_argument=alloc,
        max_workers=1,
    )


# --- builders for remote targets ------------------------------------------------------------

_BUNDLES: list[str] = []


def export_cross(mod: Any) -> str:
    """Builder ``f_export``: the candidate library, linked with the cross compiler."""
    from tvm_ext.targets import linker

    path = os.path.join(tempfile.mkdtemp(prefix="patsparse-ms-"), "candidate.so")
    fcompile = linker(tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu"}))
    mod.export_library(path, fcompile=fcompile)
    return path


def build_opencl_bundle(mod: Any, target: Any, params: Any) -> Any:
    """Builder ``f_build`` for the emulated Adreno device: build, and keep the kernel bundle
    for :func:`export_opencl_bundle` (same worker, called right after)."""
    from tvm_ext.rpc.opencl import kernel_bundle

    bundle, built = kernel_bundle(mod["main"], target)
    _BUNDLES[:] = [bundle.to_json()]
    return built if hasattr(built, "imports") else built.mod


def export_opencl_bundle(mod: Any) -> str:
    """Builder ``f_export``: the kernel bundle as a JSON artifact."""
    path = os.path.join(tempfile.mkdtemp(prefix="patsparse-ms-"), "candidate.json")
    with open(path, "w") as f:
        f.write(_BUNDLES.pop())
    return path


def remote_builder(
    mode: str, *, cross: bool = True, max_workers: int = 2, timeout_sec: float = 120.0
) -> Any:
    """The builder matching a runner mode: an OpenCL kernel bundle, or a library
    (cross-linked for arm64 devices; ``cross=False`` for a remote machine like this one)."""
    f_build: Any
    f_export: Any
    if mode == "opencl":
        f_build, f_export = build_opencl_bundle, export_opencl_bundle
    else:
        f_build, f_export = fast_build, export_cross if cross else None
    return ms.builder.LocalBuilder(
        max_workers=max_workers, timeout_sec=timeout_sec, f_build=f_build, f_export=f_export
    )


def has_opencl_executor(session: Any) -> bool:
    """True if the server is our emulated Adreno executor (it registers ``RUN_FUNC``)."""
    from tvm_ext.rpc.opencl import RUN_FUNC

    try:
        return session.get_function(RUN_FUNC) is not None
    except Exception:  # AttributeError / TVMError: the function does not exist there
        return False


def measure_on_device(
    target: Any, tracker: TrackerAddress, key: str, *, queue_timeout: float = 60.0
) -> tuple[Any, Any]:
    """(builder, runner) measuring ``target``'s candidates on the device ``key``.

    CPU targets: cross-linked libraries timed by :class:`TrackerRunner`. GPU targets: kernel
    bundles if the device is the emulated Adreno executor, else (a phone's RPC app with the
    OpenCL runtime) libraries through MetaSchedule's stock runner.
    """
    from tvm_ext.targets import is_cross, is_gpu

    mode = "module"
    if is_gpu(target):
        with open_session(tracker, key, queue_timeout=queue_timeout, session_timeout=30) as sess:
            mode = "opencl" if has_opencl_executor(sess) else "stock"
    if mode == "stock":
        config = RemoteRunnerConfig(tracker, key, queue_timeout=queue_timeout)
        return remote_builder("module"), stock_rpc_runner(config)
    config = RemoteRunnerConfig(tracker, key, mode=mode, queue_timeout=queue_timeout)
    return remote_builder(mode, cross=is_cross(target)), TrackerRunner(config)
