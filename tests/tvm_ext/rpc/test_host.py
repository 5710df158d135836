"""Tuning through the tracker on a server of this machine's kind (a Linux board stand-in):
libraries are linked with the host compiler, not the aarch64 one."""

from __future__ import annotations

import pytest

from patsparse.compiler.compile import import_torch
from tvm_ext.pipeline import lower_for_tuning
from tvm_ext.rpc.runner import TrackerRunner, measure_on_device
from tvm_ext.targets import make_target
from tvm_ext.tuning.logs import log_dir
from tvm_ext.tuning.tune import tune_module

pytestmark = [pytest.mark.rpc, pytest.mark.tuning]


def test_tune_on_a_host_server_over_rpc(tmp_path, tracker, sparse_conv_model, rpc_h):
    model, x = sparse_conv_model
    target = make_target("host")
    lowered = lower_for_tuning(import_torch(model, x), target)
    with rpc_h.start_device("host", tracker) as dev:
        builder, runner = measure_on_device(target, tracker, dev.key)
        assert isinstance(runner, TrackerRunner) and runner.config.mode == "module"
        report = tune_module(
            lowered,
            target,
            log_dir("oneconv", target, tmp_path),
            trials_per_task=2,
            builder=builder,
            runner=runner,
        )
    assert report.failed == 0 and report.trials >= 2, report.errors
