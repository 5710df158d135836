"""The emulated Adreno device: pattern-sparse OpenCL kernels run on PoCL through the tracker,
and MetaSchedule measures GPU candidates there."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tvm_ext._compat import te
from tvm_ext.layout import analyze_conv_weight
from tvm_ext.rpc.opencl import kernel_bundle, run_remote
from tvm_ext.rpc.session import open_session, query_keys, request_session
from tvm_ext.schedules.dispatch import schedule_pattern_primfunc
from tvm_ext.targets import make_target
from tvm_ext.te.conv_spec import ConvGeometry, Epilogue
from tvm_ext.te.pattern_conv import layout_arguments, pattern_conv2d_te

pytestmark = pytest.mark.rpc


@pytest.mark.parametrize("block", [None, 8])
def test_sparse_conv_runs_on_pocl_through_the_tracker(h, tracker, adreno, block):
    target = make_target("adreno")
    w = h.pattern_weight(16, 8, density=0.25, block=block, seed=3)
    layout = analyze_conv_weight(w, block=block)
    geo = ConvGeometry((1, 8, 10, 12), (1, 1), (1, 1, 1, 1))
    func = te.create_prim_func(pattern_conv2d_te(geo, layout, Epilogue(bias=True, relu=True)))
    bundle, _ = kernel_bundle(schedule_pattern_primfunc(func, target=target), target)
    assert "__kernel" in bundle.source
    assert all(k.local_size[0] <= 256 for k in bundle.kernels)  # Adreno's work-group limit
    rng = np.random.default_rng(0)
    x = rng.standard_normal(geo.in_shape).astype("float32")
    bias = rng.standard_normal(16).astype("float32")
    args = [x, *layout_arguments(layout, geo), bias, np.zeros((1, 16, 10, 12), "float32")]
    with open_session(tracker, adreno.key, queue_timeout=30, session_timeout=120) as session:
        out, times = run_remote(session, bundle, args, number=2, repeat=2)
    ref = h.torch_reference(x, w, stride=(1, 1), padding=(1, 1, 1, 1), bias=bias, relu=True)
    np.testing.assert_allclose(out[-1], ref, rtol=1e-4, atol=1e-4)
    assert len(times) == 2 and all(t > 0 for t in times)


def test_abandoned_request_does_not_take_the_device(tracker, rpc_h):
    """A client that gave up waiting (queue timeout) must not swallow the next free server."""
    from patsparse.core.errors import DeviceKeyMissingError

    rpc_h.require("adreno")
    with pytest.raises(DeviceKeyMissingError):
        request_session(tracker, "adreno-late", queue_timeout=0.5)
    with rpc_h.start_device("adreno", tracker, key="adreno-late") as dev:
        start = time.monotonic()
        with open_session(tracker, dev.key, queue_timeout=20) as session:
            assert session.cpu(0) is not None
        assert time.monotonic() - start < 10


def _sparse_call_constants(mod, gv):
    """The constant arguments (kernel arrays, bias) the model passes to the sparse kernel."""
    from tvm_ext._compat import IRConstant, relax

    found = []

    def visit(expr):
        if isinstance(expr, relax.Call) and len(expr.args) >= 2 and expr.args[0].same_as(gv):
            found.append(
                [a.value.numpy() for a in expr.args[1].fields if isinstance(a, IRConstant)]
            )

    relax.analysis.post_order_visit(mod["main"], visit)
    assert len(found) == 1
    return found[0]


@pytest.mark.tuning
@pytest.mark.slow  # 100-140 s on 2 cores; the Adreno kernels run in the CI tests above
def test_tune_on_the_emulated_adreno_then_run_the_tuned_kernel(
    tmp_path, tracker, adreno, sparse_conv_model, rpc_h
):
    """2 trials: GPU candidates (our rule's thread binding) built, run on PoCL, recorded; the
    best schedule from the database then runs through the tracker and matches PyTorch."""
    from patsparse.compiler.compile import compile_torch, import_torch
    from tvm_ext._compat import meta_schedule as ms
    from tvm_ext.pipeline import lower_for_tuning
    from tvm_ext.rpc.runner import RemoteRunnerConfig, TrackerRunner, remote_builder
    from tvm_ext.tuning.logs import log_dir
    from tvm_ext.tuning.tune import tune_module

    model, x = sparse_conv_model
    target = make_target("adreno")
    work = log_dir("oneconv", target, tmp_path)
    assert work.name == "opencl-adreno-aarch64"  # GPU logs never mix with CPU logs
    lowered = lower_for_tuning(import_torch(model, x), target)
    runner = TrackerRunner(RemoteRunnerConfig(tracker, adreno.key, mode="opencl"))
    report = tune_module(
        lowered, target, work, trials_per_task=2, builder=remote_builder("opencl"), runner=runner
    )
    assert report.failed == 0 and report.trials >= 2, report.errors
    assert any(n.startswith("pattern_sparse_conv2d") for n in report.best_ms)

    db = ms.database.JSONDatabase(work_dir=str(work))
    (task,) = [
        t
        for t in ms.relax_integration.extract_tasks(lowered, target)
        if t.task_name.startswith("pattern_sparse_conv2d")
    ]
    sch = db.query_schedule(task.dispatched[0], target, workload_name="main")
    assert sch is not None
    bundle, _ = kernel_bundle(sch.mod["main"], target)
    gv = next(g for g in lowered.get_global_vars() if g.name_hint == task.task_name)
    args = [x.numpy(), *_sparse_call_constants(lowered, gv), np.zeros((1, 16, 8, 8), "float32")]
    with open_session(tracker, adreno.key, queue_timeout=30, session_timeout=120) as session:
        out, _ = run_remote(session, bundle, args)
    np.testing.assert_allclose(out[-1], rpc_h.reference(model, x), rtol=1e-4, atol=1e-4)

    # the tuned model exports as one aarch64 library with the OpenCL kernels inside
    compiled = compile_torch(model, x, target=target, logs=work, verify=False)
    lib = compiled.export_library(tmp_path / "oneconv_adreno.so").read_bytes()
    assert lib[:4] == b"\x7fELF" and int.from_bytes(lib[18:20], "little") == 183
    assert b"__kernel" in lib
    _wait_free(tracker, adreno.key)  # neither the runner nor the run kept the one device


def test_session_timeout_frees_the_single_device(tracker, adreno):
    """A session that outlives its timeout is ended by the server, and the one device is
    free for the next client at once."""
    session = request_session(tracker, adreno.key, queue_timeout=30, session_timeout=2)
    assert session.cpu(0) is not None
    time.sleep(4)
    with pytest.raises(Exception):  # noqa: B017  (the server closed the session)
        session.get_function("runtime.GetDeviceAttr")()
    start = time.monotonic()
    with open_session(tracker, adreno.key, queue_timeout=30) as again:
        assert again.cpu(0) is not None and time.monotonic() - start < 10


def test_device_kind_is_detected_for_gpu_tuning(tracker, adreno):
    from tvm_ext.rpc.runner import TrackerRunner, measure_on_device

    _builder, runner = measure_on_device(make_target("adreno"), tracker, adreno.key)
    assert isinstance(runner, TrackerRunner) and runner.config.mode == "opencl"
    _wait_free(tracker, adreno.key)  # the probing session gave the device back


def _wait_free(tracker, key, timeout=10.0):
    deadline = time.monotonic() + timeout
    while query_keys(tracker)[key].free < 1:
        assert time.monotonic() < deadline, f"{key} still busy after {timeout} s"
        time.sleep(0.2)
