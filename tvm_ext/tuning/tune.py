"""Tune a lowered (pattern-sparse) Relax module with MetaSchedule into a log directory.

Each task is tuned up to ``trials_per_task`` records, counting what the database already
holds, so a second run on the same model tunes nothing and an interrupted run resumes.
Before searching, the hand schedule of every pattern-sparse / blocked task is measured like
a candidate and committed (so the logs' best is never worse than it); a hand schedule that
changed since is measured again. Where logs live and how they are applied:
:mod:`tvm_ext.tuning.logs`; lowering a model into tasks: :func:`tvm_ext.pipeline.lower_for_tuning`.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tvm_ext._compat import Target, metaschedule_logging, tvm
from tvm_ext._compat import meta_schedule as ms
from tvm_ext.tuning.logs import (
    DEFAULT_MARK,
    HAND_MARK,
    RECORD_FILE,
    WORKLOAD_FILE,
    is_measured,
    is_pattern_task,
    json_lines,
    read_budgets,
    records_for,
    replace_together,
    workload_key,
    write_budgets,
)
from tvm_ext.tuning.measure import make_builder, make_runner


@dataclass
class TuneReport:
    """What one tuning run did."""

    work_dir: str
    tasks: int
    tuned: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    trials: int = 0
    #: candidates whose build or measurement failed (not counted as done: a re-run retries)
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    best_ms: dict[str, float] = field(default_factory=dict)
    #: tasks whose hand (default) schedule was measured and committed as a candidate
    defaults: int = 0
    #: of those, tasks whose earlier hand record was of another hand schedule (dropped)
    stale_defaults: int = 0
    #: tasks that arrive already scheduled by hand (``tirx.is_scheduled``: the depthwise
    #: kernel): MetaSchedule's rules cannot take them, so they are not tuned and keep ours
    hand_scheduled: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _hand_fingerprint(sch: Any) -> int:
    """A stable number for a hand schedule's trace (what the budget file keeps, so a run
    after the hand schedules changed measures them again)."""
    return int(hashlib.sha256(str(sch.trace).encode()).hexdigest()[:12], 16)


def is_hand_scheduled(mod: tvm.IRModule) -> bool:
    """A task whose function already carries its final schedule (``tirx.is_scheduled``)."""
    attrs = mod["main"].attrs or {}
    return bool(int(attrs.get("tirx.is_scheduled", 0)))


def _device_type(target: Target) -> str:
    """The runtime device name of a target kind (``llvm`` runs on ``cpu``)."""
    kind = str(target.kind.name)
    return "cpu" if kind in ("llvm", "c") else kind


def _commit_default_schedules(
    tasks: list[Any], db: Any, target: Target, builder: Any, runner: Any, done: dict[str, int]
) -> int:
    """Measure our hand schedule of each pattern-sparse / blocked task like any candidate and
    commit it as a tuning record, so the database's best is never worse than the default.

    ``done`` (the budget file's table) remembers which workloads already have it, and which
    hand schedule (its fingerprint); a changed hand schedule must have lost its old record
    first (:func:`_drop_stale_hand_records`).
    """
    committed = 0
    for task in tasks:
        mod = task.dispatched[0]
        wkey = workload_key(db, mod)
        key = DEFAULT_MARK + wkey
        if done.get(key) or not is_pattern_task(mod):
            continue
        sch = _hand_schedule(mod, target)
        if sch is None:
            continue
        args_info = ms.arg_info.ArgInfo.from_prim_func(sch.mod["main"])
        built = builder.build([ms.builder.BuilderInput(sch.mod, target)])[0]
        if built.error_msg:
            continue
        result = runner.run(
            [ms.runner.RunnerInput(built.artifact_path, _device_type(target), args_info)]
        )[0].result()
        if result.error_msg or not result.run_secs:
            continue
        db.commit_tuning_record(
            ms.database.TuningRecord(
                sch.trace, db.commit_workload(mod), result.run_secs, target, args_info
            )
        )
        done[key] = 1
        done[HAND_MARK + wkey] = _hand_fingerprint(sch)
        committed += 1
    return committed


def _hand_schedule(mod: tvm.IRModule, target: Target) -> Any:
    """Our hand schedule of a task, on a copy (the task stays unscheduled); ``None`` if none."""
    from tvm_ext.schedules.dispatch import schedule_for_target

    return schedule_for_target(mod["main"], target)


def _drop_stale_hand_records(
    work: Path, tasks: list[Any], target: Target, budgets: dict[str, int]
) -> int:
    """Hand records of ``tasks`` made by another hand schedule than today's (the fingerprint
    in ``budgets`` differs, or predates fingerprints): removed from the record file, and
    their budget entries cleared so that :func:`_commit_default_schedules` measures today's
    hand schedule. Tuned records stay. Returns how many workloads had a stale hand record."""
    probe = ms.database.MemoryDatabase()
    stale: set[str] = set()
    for task in tasks:
        mod = task.dispatched[0]
        wkey = workload_key(probe, mod)
        if not budgets.get(DEFAULT_MARK + wkey) or not is_pattern_task(mod):
            continue
        sch = _hand_schedule(mod, target)
        if sch is not None and budgets.get(HAND_MARK + wkey) != _hand_fingerprint(sch):
            stale.add(wkey)
    if not stale:
        return 0
    wl_path, rec_path = work / WORKLOAD_FILE, work / RECORD_FILE
    workloads = json_lines(wl_path)
    index = {i for i, entry in enumerate(workloads) if str(entry[0]) in stale}
    records = json_lines(rec_path) if rec_path.is_file() else []
    # a record is [workload index, [trace, run_secs, target, args]]; a trace is
    # [instructions, decisions], and a hand schedule's samples nothing
    kept = [r for r in records if not (int(r[0]) in index and not r[1][0][1])]
    replace_together({rec_path: kept})
    for wkey in stale:
        budgets.pop(DEFAULT_MARK + wkey, None)
        budgets.pop(HAND_MARK + wkey, None)
    write_budgets(work, budgets)
    return len(stale)


def tune_module(
    mod: tvm.IRModule,
    target: Target,
    work_dir: Path | str,
    *,
    trials_per_task: int,
    seed: int = 1,
    num_trials_per_iter: int = 16,
    builder: Any = None,
    runner: Any = None,
    progress: bool = False,
) -> TuneReport:
    """Tune every task of a lowered module (see :func:`lower_for_tuning`) into ``work_dir``.

    ``builder`` / ``runner``: MetaSchedule's (default: this machine's CPU); remote devices
    pass :mod:`tvm_ext.rpc.runner`'s. ``progress``: a bar with tasks, trials, best latency.
    Failed trials are reported (``failed``, ``errors``) and retried by the next run.
    """
    import tvm_ext.tuning.rules  # noqa: F401  (registers the pattern-sparse rules)
    from tvm_ext.tuning.progress import TuningProgress

    if trials_per_task < 1:
        raise ValueError(f"trials_per_task must be >= 1, got {trials_per_task}")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    extracted = ms.relax_integration.extract_tasks(mod, target)
    tasks = [t for t in extracted if not is_hand_scheduled(t.dispatched[0])]
    # A task whose space is smaller than the budget never reaches it in records; the
    # budget file remembers that it was tuned to completion.
    budgets = read_budgets(work)
    report = TuneReport(
        work_dir=str(work),
        tasks=len(tasks),
        hand_scheduled=[t.task_name for t in extracted if is_hand_scheduled(t.dispatched[0])],
    )
    if (work / WORKLOAD_FILE).is_file():  # before the database reads the files
        report.stale_defaults = _drop_stale_hand_records(work, tasks, target, budgets)
    db = ms.database.JSONDatabase(work_dir=str(work))
    records = db.get_all_tuning_records()
    todo, budget, most = [], 0, 0
    for task in tasks:
        # the committed hand schedule is not a tuning trial
        key = workload_key(db, task.dispatched[0])
        have = records_for(db, task.dispatched[0], records) - budgets.get(DEFAULT_MARK + key, 0)
        finished = budgets.get(key, 0)
        if have >= trials_per_task or finished >= trials_per_task:
            report.skipped.append(task.task_name)
            continue
        todo.append(task)
        budget += trials_per_task - have
        most = max(most, trials_per_task - have)
        report.tuned.append(task.task_name)
    builder = builder if builder is not None else make_builder()
    runner = runner if runner is not None else make_runner()
    # every task's hand schedule (tuned to completion or not) is measured once per change
    report.defaults = _commit_default_schedules(tasks, db, target, builder, runner, budgets)
    if report.defaults:
        write_budgets(work, budgets)  # an interrupted run keeps them
    if todo:
        before = sum(1 for rec in db.get_all_tuning_records() if is_measured(rec))
        watch = TuningProgress([t.task_name for t in todo], budget, show=progress)
        callbacks = [
            ms.measure_callback.AddToDatabase(),
            ms.measure_callback.RemoveBuildArtifact(),
            ms.measure_callback.UpdateCostModel(),
            watch,
        ]
        # MetaSchedule's loggers (made with the tune contexts) write to stdout: to stderr
        with metaschedule_logging():
            contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
                extracted_tasks=todo,
                work_dir=str(work),
                space="post-order-apply",
                # A small population keeps the search cheap on 2 cores; scaled with the budget.
                strategy=ms.search_strategy.EvolutionarySearch(
                    population_size=min(512, max(64, 8 * trials_per_task)),
                    init_min_unmeasured=min(50, max(8, trials_per_task)),
                    genetic_num_iters=3,
                ),
                seed=seed,
            )
            ms.tune.tune_tasks(
                tasks=contexts,
                task_weights=weights,
                work_dir=str(work),
                max_trials_global=budget,
                max_trials_per_task=most,
                num_trials_per_iter=min(num_trials_per_iter, most),
                builder=builder,
                runner=runner,
                database=db,
                cost_model=ms.cost_model.XGBModel(
                    num_warmup_samples=min(16, trials_per_task), num_tuning_cores=2
                ),
                measure_callbacks=callbacks,
            )
        watch.close()
        report.trials = sum(1 for rec in db.get_all_tuning_records() if is_measured(rec)) - before
        report.failed, report.errors = sum(watch.failed), watch.errors[:20]
        for i, task in enumerate(todo):
            if watch.failed[i]:
                continue  # not finished: the next run tunes it again
            key = workload_key(db, task.dispatched[0])
            budgets[key] = max(budgets.get(key, 0), trials_per_task)
        write_budgets(work, budgets)
    for task in tasks:
        m = task.dispatched[0]
        if db.has_workload(m):
            top = db.get_top_k(db.commit_workload(m), 1)
            if top and top[0].run_secs:
                report.best_ms[task.task_name] = float(top[0].run_secs[0]) * 1e3
    report.seconds = time.perf_counter() - start
    return report
