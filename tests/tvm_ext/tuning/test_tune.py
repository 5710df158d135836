"""Real MetaSchedule tuning with a tiny budget: records, no re-tuning, resume, apply."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patsparse.compiler.compile import compile_torch, import_torch
from patsparse.schemes import PatternConnectivityScheme
from tvm_ext._compat import host_target
from tvm_ext.pipeline import lower_for_tuning
from tvm_ext.tuning.logs import log_dir, target_key
from tvm_ext.tuning.tune import tune_module


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


@pytest.mark.parametrize(
    ("tuned_secs", "hand_secs", "picked"),
    [(0.95e-3, 1.0e-3, "hand"), (0.5e-3, 1.0e-3, "tuned"), (2.0e-3, 1.0e-3, "hand")],
)
def test_logs_database_keeps_the_hand_schedule_unless_clearly_beaten(
    h, tmp_path, tuned_secs, hand_secs, picked
):
    """A tuned record replaces the hand schedule of a pattern kernel only when it measured at
    most TUNED_MARGIN of its time; other workloads keep their fastest record."""
    from tvm_ext._compat import Schedule, te, tvm
    from tvm_ext._compat import meta_schedule as ms
    from tvm_ext.layout import analyze_conv_weight
    from tvm_ext.schedules.cpu import schedule_pattern_conv
    from tvm_ext.schedules.dispatch import schedule_for_target
    from tvm_ext.te.conv_spec import ConvGeometry, Epilogue
    from tvm_ext.te.pattern_conv import pattern_conv2d_te
    from tvm_ext.tuning.logs import TUNED_MARGIN, logs_database

    assert tuned_secs / hand_secs > TUNED_MARGIN or picked == "tuned"
    w = h.pattern_weight(16, 8, density=0.3, block=16, seed=2)
    lay = analyze_conv_weight(w, block=16)
    geo = ConvGeometry((1, 8, 8, 8), (1, 1), (1, 1, 1, 1))
    func = te.create_prim_func(pattern_conv2d_te(geo, lay, Epilogue())).with_attr(
        "global_symbol", "main"
    )
    mod = tvm.IRModule({"main": func})
    target = host_target()
    hand = schedule_for_target(func, target)
    assert hand is not None and not hand.trace.decisions
    tuned = Schedule(mod)
    tuned.sample_categorical([1, 2], [0.5, 0.5])  # a sampled decision, as tuned traces have
    schedule_pattern_conv(tuned)
    # a workload without a pattern block: its fastest record is kept whatever it is
    a = te.placeholder((8,), name="a")
    add = te.create_prim_func([a, te.compute((8,), lambda i: a[i] + 1.0, name="b")])
    plain = tvm.IRModule({"main": add.with_attr("global_symbol", "main")})
    db = ms.database.JSONDatabase(work_dir=str(tmp_path))
    args = ms.arg_info.ArgInfo.from_prim_func(func)
    for sch, secs in ((hand, hand_secs), (tuned, tuned_secs)):
        rec = ms.database.TuningRecord(sch.trace, db.commit_workload(mod), [secs], target, args)
        db.commit_tuning_record(rec)
    for secs in (3e-6, 1e-6):
        sch = Schedule(plain)
        if secs < 2e-6:  # the faster one was tuned: no hand-schedule rule applies here
            sch.sample_categorical([1, 2], [0.5, 0.5])
        plain_args = ms.arg_info.ArgInfo.from_prim_func(add)
        rec = ms.database.TuningRecord(
            sch.trace, db.commit_workload(plain), [secs], target, plain_args
        )
        db.commit_tuning_record(rec)
    out = logs_database(tmp_path)
    # the hand schedule kept: no record (today's hand schedule is applied, not a logged one)
    assert out.has_workload(mod) == (picked == "tuned")
    if picked == "tuned":
        (best,) = out.get_top_k(out.commit_workload(mod), 1)
        assert best.trace.decisions
    (fastest,) = out.get_top_k(out.commit_workload(plain), 1)
    assert float(fastest.run_secs[0]) == pytest.approx(1e-6)
    with pytest.raises(ValueError, match="margin"):
        logs_database(tmp_path, margin=0)


def test_prune_logs_drops_stale_workloads_and_renumbers_records(tmp_path):
    """Workloads that are no task of the model any more go, with their records and budget
    entries; the rest keep their records (renumbered), and tuning again tunes nothing."""
    import json

    from tvm_ext._compat import Schedule
    from tvm_ext._compat import meta_schedule as ms
    from tvm_ext.tuning.logs import (
        BUDGET_FILE,
        DEFAULT_MARK,
        is_pattern_task,
        logs_database,
        prune_logs,
    )

    torch.manual_seed(0)
    model = OneConv().eval()
    with torch.no_grad():
        model.conv.weight.copy_(PatternConnectivityScheme(density=1 / 8).project(model.conv.weight))
    target = host_target()
    current = lower_for_tuning(import_torch(model, torch.randn(1, 16, 8, 8)), target)
    stale = lower_for_tuning(import_torch(model, torch.randn(1, 16, 12, 12)), target)
    db = ms.database.JSONDatabase(work_dir=str(tmp_path))
    secs: dict[str, float] = {}
    keys: dict[str, list[str]] = {"current": [], "stale": []}
    # stale workloads first, so every kept one moves to a new line number
    for name, mod in (("stale", stale), ("current", current)):
        for task in ms.relax_integration.extract_tasks(mod, target):
            m = task.dispatched[0]
            workload = db.commit_workload(m)
            key = str(workload.as_json()[0])
            keys[name].append(key)
            secs[key] = 1e-3 * (len(secs) + 1)
            args = ms.arg_info.ArgInfo.from_prim_func(m["main"])
            trace = Schedule(m).trace
            db.commit_tuning_record(
                ms.database.TuningRecord(trace, workload, [secs[key]], target, args)
            )
    assert keys["current"] and keys["stale"] and not set(keys["current"]) & set(keys["stale"])
    budgets = {k: 4 for ks in keys.values() for k in ks} | {DEFAULT_MARK + keys["stale"][0]: 1}
    (tmp_path / BUDGET_FILE).write_text(json.dumps(budgets))

    # a torn line: a clear error and nothing written
    wl_file = tmp_path / "database_workload.json"
    good = wl_file.read_bytes()
    wl_file.write_bytes(good + b'["123", "abc')
    torn = wl_file.read_bytes()
    with pytest.raises(ValueError, match="not JSON"):
        prune_logs(tmp_path, [current], target)
    assert wl_file.read_bytes() == torn
    wl_file.write_bytes(good)

    report = prune_logs(tmp_path, [current], target)
    assert report.workloads == len(keys["current"])
    assert report.dropped_workloads == len(keys["stale"])
    assert report.records == len(keys["current"]) and report.dropped_records == len(keys["stale"])
    assert report.bytes_after < report.bytes_before
    assert not list(tmp_path.glob("*.bak")) and not list(tmp_path.glob("*.tmp"))
    assert set(json.loads((tmp_path / BUDGET_FILE).read_text())) == set(keys["current"])

    db = ms.database.JSONDatabase(work_dir=str(tmp_path))
    for name, mod in (("current", current), ("stale", stale)):
        for task in ms.relax_integration.extract_tasks(mod, target):
            assert db.has_workload(task.dispatched[0]) == (name == "current")
    kept = {str(r.workload.as_json()[0]): float(r.run_secs[0]) for r in db.get_all_tuning_records()}
    assert kept == pytest.approx({k: secs[k] for k in keys["current"]})  # each its own record
    again = tune_module(current, target, tmp_path, trials_per_task=4)
    assert not again.tuned and again.trials == 0  # the kept keys still match their tasks
    # the renumbered files load; pattern kernels' hand records give no record (today's applies)
    plain = [
        t
        for t in ms.relax_integration.extract_tasks(current, target)
        if not is_pattern_task(t.dispatched[0])
    ]
    assert len(logs_database(tmp_path).get_all_tuning_records()) == len(plain)
    assert prune_logs(tmp_path, [current], target).dropped_workloads == 0


@pytest.mark.tuning
def test_a_changed_hand_schedule_is_measured_again_and_applied_fresh(tmp_path, monkeypatch):
    """Logs outlive improvements of the hand schedules: a tune run after the hand schedule
    changed drops the old hand record (tuned records stay) and measures today's; applying
    the logs then gives a kernel where the hand schedule wins no record (today's hand
    schedule is applied, not the logged one)."""
    import json

    from patsparse.schemes import BlockPatternScheme
    from tvm_ext._compat import Schedule
    from tvm_ext._compat import meta_schedule as ms
    from tvm_ext.schedules import cpu
    from tvm_ext.schedules.cpu import schedule_pattern_conv
    from tvm_ext.tuning.logs import BUDGET_FILE, HAND_MARK, logs_database

    torch.manual_seed(0)
    model = OneConv().eval()
    with torch.no_grad():
        w = BlockPatternScheme(density=1 / 4, block_size=16).project(model.conv.weight)
        model.conv.weight.copy_(w)
    x = torch.randn(1, 16, 8, 8)
    target = host_target()
    lowered = lower_for_tuning(import_torch(model, x), target)
    (task,) = [
        t
        for t in ms.relax_integration.extract_tasks(lowered, target)
        if t.task_name.startswith("pattern_sparse_conv2d")
    ]
    mod = task.dispatched[0]
    db = ms.database.JSONDatabase(work_dir=str(tmp_path))
    key = str(db.commit_workload(mod).as_json()[0])
    # a "tuned" record (a sampled decision), slower than any hand schedule; tuned to completion
    tuned = Schedule(mod)
    tuned.sample_categorical([1, 2], [0.5, 0.5])
    schedule_pattern_conv(tuned, fuse_rows=False)
    args = ms.arg_info.ArgInfo.from_prim_func(mod["main"])
    db.commit_tuning_record(
        ms.database.TuningRecord(tuned.trace, db.commit_workload(mod), [1.0], target, args)
    )
    (tmp_path / BUDGET_FILE).write_text(json.dumps({key: 1}))

    def hand_records() -> list[str]:
        recs = ms.database.JSONDatabase(work_dir=str(tmp_path)).get_all_tuning_records()
        assert sum(bool(r.trace.decisions) for r in recs) == 1  # the tuned record stays
        return [str(r.trace) for r in recs if not r.trace.decisions]

    monkeypatch.setattr(cpu, "FUSE_ROWS_FROM_PIXELS", 10**6)  # 8x8: the conv at the root
    first = tune_module(lowered, target, tmp_path, trials_per_task=1)
    assert first.trials == 0 and first.defaults >= 1 and first.stale_defaults == 0
    (old,) = hand_records()
    again = tune_module(lowered, target, tmp_path, trials_per_task=1)
    assert again.defaults == 0 and again.stale_defaults == 0
    assert hand_records() == [old]

    monkeypatch.setattr(cpu, "FUSE_ROWS_FROM_PIXELS", 1)  # now rows inside the epilogue
    changed = tune_module(lowered, target, tmp_path, trials_per_task=1)
    assert changed.trials == 0 and changed.stale_defaults == 1 and changed.defaults == 1
    (new,) = hand_records()
    assert new != old and "sch.compute_at(" in new and "sch.compute_at(" not in old
    assert HAND_MARK + key in json.loads((tmp_path / BUDGET_FILE).read_text())

    # the hand schedule beats the (slow) tuned record: no record, today's schedule applies
    assert not logs_database(tmp_path).has_workload(mod)
    compiled = compile_torch(model, x, logs=tmp_path, verify=False)  # compared below
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(compiled(x.numpy()), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.tuning
def test_hand_scheduled_depthwise_kernels_are_not_tuned(tmp_path):
    """MetaSchedule extracts the depthwise kernel (already scheduled by hand) as a task; tuning
    leaves it out and reports it, and the module compiled with the logs runs our schedule."""
    from tvm_ext.passes.depthwise_conv2d import DepthwiseConv2D
    from tvm_ext.pipeline import compile_module

    torch.manual_seed(0)
    model = torch.nn.Conv2d(32, 32, 3, 1, 1, groups=32).eval()
    x = torch.randn(1, 32, 8, 8)
    target = host_target()
    mod = import_torch(model, x)
    lowered = lower_for_tuning(mod, target, depthwise=DepthwiseConv2D())
    report = tune_module(lowered, target, tmp_path, trials_per_task=1)
    assert report.hand_scheduled and all("depthwise" in n for n in report.hand_scheduled)
    assert report.tasks == 0 and not report.tuned and report.trials == 0
    compiled = compile_module(mod, target=target, logs=tmp_path)
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(compiled(x.numpy()), want, rtol=1e-4, atol=1e-4)
    assert compiled.depthwise_records and all(r.rewritten for r in compiled.depthwise_records)
