"""The emulated arm64 phone (a real TVM RPC server under qemu-user): tuning over RPC, running
a tuned pattern-sparse model remotely against PyTorch, and a server killed mid-tuning."""

from __future__ import annotations

import numpy as np
import pytest

from patsparse.compiler.compile import compile_torch, import_torch
from tvm_ext._compat import derived_object
from tvm_ext._compat import meta_schedule as ms
from tvm_ext.pipeline import lower_for_tuning
from tvm_ext.rpc.remote import RemoteModel
from tvm_ext.rpc.runner import RemoteRunnerConfig, TrackerRunner, remote_builder
from tvm_ext.targets import make_target
from tvm_ext.tuning.logs import is_measured, log_dir
from tvm_ext.tuning.tune import tune_module

pytestmark = [pytest.mark.rpc, pytest.mark.tuning]


def _measured_records(work):
    db = ms.database.JSONDatabase(work_dir=str(work))
    return [r for r in db.get_all_tuning_records() if is_measured(r)]


def test_tune_over_rpc_then_run_the_tuned_model_remotely(
    tmp_path, tracker, arm64, sparse_conv_model, rpc_h
):
    model, x = sparse_conv_model
    target = make_target("arm64")
    work = log_dir("oneconv", target, tmp_path)
    assert work.name == "llvm-aarch64-4c"
    lowered = lower_for_tuning(import_torch(model, x), target)
    runner = TrackerRunner(RemoteRunnerConfig(tracker, arm64.key))
    report = tune_module(
        lowered, target, work, trials_per_task=2, builder=remote_builder("module"), runner=runner
    )
    assert report.failed == 0, report.errors
    assert report.trials >= 2
    assert any(n.startswith("pattern_sparse_conv2d") for n in report.best_ms)
    assert len(_measured_records(work)) >= 2

    compiled = compile_torch(model, x, target=target, logs=work, verify=True)
    assert all(r.rewritten for r in compiled.records)
    with RemoteModel(compiled, tracker, arm64.key) as remote:
        out = remote(x.numpy())
        timing = remote.time(x.numpy(), repeat=2)
    np.testing.assert_allclose(out, rpc_h.reference(model, x), rtol=1e-4, atol=1e-4)
    assert timing.median > 0

    lib = compiled.export_library(tmp_path / "oneconv_arm64.so")
    assert lib.read_bytes()[:4] == b"\x7fELF" and lib.read_bytes()[18] == 183  # EM_AARCH64


@derived_object
class _KillAfterFirst(ms.runner.PyRunner):
    """Measures the first candidate of a batch, then kills the device (a crashing phone app)
    and lets the real runner meet the dead device for the rest."""

    def __init__(self, inner, device) -> None:
        super().__init__()
        self.inner, self.device = inner, device

    def run(self, runner_inputs):
        first = self.inner.run(runner_inputs[:1])
        self.device.kill()
        return first + self.inner.run(runner_inputs[1:])


@pytest.mark.slow  # ~50 s on 2 cores; tuning over RPC itself is in CI (the test above)
def test_server_killed_mid_tuning_then_resume(tmp_path, tracker, sparse_conv_model, rpc_h):
    model, x = sparse_conv_model
    target = make_target("arm64")
    work = log_dir("oneconv", target, tmp_path)
    lowered = lower_for_tuning(import_torch(model, x), target)
    config = RemoteRunnerConfig(tracker, "arm64-crashy", queue_timeout=3.0)
    with rpc_h.start_device("arm64", tracker, key="arm64-crashy") as dev:
        crashing = _KillAfterFirst(TrackerRunner(config), dev)
        first = tune_module(
            lowered,
            target,
            work,
            trials_per_task=4,
            builder=remote_builder("module"),
            runner=crashing,
        )
    # one measurement before the kill: the hand schedule committed as a candidate first
    assert first.trials + first.defaults == 1 and first.failed >= 1, first.to_dict()
    assert any("device unavailable" in e or "Error" in e for e in first.errors)
    kept = _measured_records(work)
    assert len(kept) == 1  # the finished record is in the database

    # a restarted server registers under the same key and is used again
    with rpc_h.start_device("arm64", tracker, key="arm64-crashy"):
        again = tune_module(
            lowered,
            target,
            work,
            trials_per_task=4,
            builder=remote_builder("module"),
            runner=TrackerRunner(config),
        )
    assert again.failed == 0, again.errors
    assert 1 <= again.trials <= 4  # resumes: the kept record is not measured again
    assert again.defaults == 0
    after = _measured_records(work)
    assert len(after) == 1 + again.trials
    assert any(str(r.trace) == str(kept[0].trace) for r in after)

    done = tune_module(lowered, target, work, trials_per_task=again.trials)
    assert done.trials == 0 and not done.tuned  # nothing left: no device needed


def test_stock_rpc_runner_measures_on_the_device(tmp_path, tracker, arm64, sparse_conv_model):
    """The path of a phone running TVM's RPC app: MetaSchedule's own RPCRunner, fed valid
    index arrays by our argument allocator."""
    from tvm_ext.rpc.runner import stock_rpc_runner

    model, x = sparse_conv_model
    target = make_target("arm64")
    work = log_dir("oneconv-stock", target, tmp_path)
    lowered = lower_for_tuning(import_torch(model, x), target)
    report = tune_module(
        lowered,
        target,
        work,
        trials_per_task=2,
        builder=remote_builder("module"),
        runner=stock_rpc_runner(RemoteRunnerConfig(tracker, arm64.key)),
    )
    assert report.failed == 0 and report.trials >= 2, report.errors
