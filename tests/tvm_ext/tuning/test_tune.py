"""Real MetaSchedule tuning with a tiny budget: records, no re-tuning, resume, apply."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patsparse.schemes import PatternConnectivityScheme
from tvm_ext._compat import host_target
from tvm_ext.pipeline import compile_torch, import_torch
from tvm_ext.tuning.tune import log_dir, lower_for_tuning, target_key, tune_module


class OneConv(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(16, 16, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


@pytest.mark.tuning
def test_tune_apply_resume_and_skip(tmp_path):
    torch.manual_seed(0)
    model = OneConv().eval()
    with torch.no_grad():
        model.conv.weight.copy_(PatternConnectivityScheme(density=1 / 8).project(model.conv.weight))
    x = torch.randn(1, 16, 8, 8)
    target = host_target()
    work = log_dir("oneconv", target, tmp_path)
    assert work.name == target_key(target) and work.parent.name == "oneconv"
    lowered = lower_for_tuning(import_torch(model, x), target)

    from tvm_ext._compat import meta_schedule as ms

    def records() -> int:
        return len(ms.database.JSONDatabase(work_dir=str(work)).get_all_tuning_records())

    first = tune_module(lowered, target, work, trials_per_task=2)
    # tuning trials (the search may stop short of the budget on a tiny space) + the default
    assert first.tasks >= 1 and first.trials >= 1
    assert records() == first.trials + first.defaults
    sparse_tasks = [n for n in first.best_ms if n.startswith("pattern_sparse_conv2d")]
    assert sparse_tasks, first.best_ms  # the sparse kernel was measured with valid indices
    assert first.defaults == 1  # our hand schedule is one of the measured candidates
    assert (work / "database_tuning_record.json").is_file()

    again = tune_module(lowered, target, work, trials_per_task=2)
    assert again.trials == 0 and not again.tuned and again.defaults == 0  # nothing re-tuned

    before = records()
    more = tune_module(lowered, target, work, trials_per_task=3)  # resume with a larger budget
    assert more.tuned and not more.skipped and more.defaults == 0
    assert records() == before + more.trials  # nothing lost, nothing measured twice
    assert not tune_module(lowered, target, work, trials_per_task=3).tuned

    compiled = compile_torch(model, x, logs=work, verify=True)
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(compiled(x.numpy()), ref, rtol=1e-4, atol=1e-4)
    assert all(r.rewritten for r in compiled.records)
