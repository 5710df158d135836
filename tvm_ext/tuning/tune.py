"""Tune a (pattern-sparse) Relax module with MetaSchedule and apply the resulting logs.

Logs are plain MetaSchedule JSON databases (``database_workload.json`` +
``database_tuning_record.json``), one directory per (model family or task set, target):
``tuning_logs/<family>/<target key>/``, so logs for several targets never mix. Workloads are
keyed by structure (MetaSchedule's structural hash of each PrimFunc: weight *values* are
arguments, not part of the key), which makes a second run on the same model tune nothing and
lets an interrupted run resume: each task is tuned up to ``trials_per_task`` records, counting
what the database already holds (``patsparse_budgets.json`` beside the database remembers
tasks tuned to completion whose search space is smaller than the budget). Workloads left by
kernels that changed since are dropped by :func:`prune_logs`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tvm_ext._compat import Target, metaschedule_logging, relax, structural_equal, tvm
from tvm_ext._compat import meta_schedule as ms
from tvm_ext.passes import BlockedConv2D, CompactStructuredConv2D, PatternSparseConv2D
from tvm_ext.pipeline import Blocked, Chain, default_sparse_pass, rewrite_passes
from tvm_ext.tuning.measure import make_builder, make_runner

DEFAULT_LOG_ROOT = Path("tuning_logs")


def target_key(target: Target) -> str:
    """A directory name for a target, e.g. ``llvm-znver4-2c`` or ``llvm-aarch64-cortex-a76``."""
    cfg = dict(target.export())
    parts = [str(cfg.get("kind", "target"))]
    if cfg.get("mtriple"):
        parts.append(str(cfg["mtriple"]).split("-")[0])
    if cfg.get("mcpu"):
        parts.append(str(cfg["mcpu"]))
    if cfg.get("num-cores"):
        parts.append(f"{int(cfg['num-cores'])}c")
    if cfg.get("device"):  # GPU targets: the device and the host CPU it sits next to
        parts.append(str(cfg["device"]))
        host = dict(cfg.get("host") or {})
        if host.get("mtriple"):
            parts.append(str(host["mtriple"]).split("-")[0])
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts))


def log_dir(family: str, target: Target, root: Path | str = DEFAULT_LOG_ROOT) -> Path:
    return Path(root) / re.sub(r"[^A-Za-z0-9._-]+", "_", family) / target_key(target)


def other_target_logs(work: Path) -> list[str]:
    """Target keys beside ``work`` (a :func:`log_dir`) that hold tuning records (sorted).

    Logs never cross targets (a schedule tuned for one CPU model is not measured for another,
    TVM #15549); this tells a user whose CPU has none which ones exist, e.g. logs shipped for
    ``llvm-znver4-2c`` on a ``znver5`` host."""
    return sorted(
        d.name
        for d in work.parent.glob("*")
        if d.is_dir() and d.name != work.name and (d / RECORD_FILE).is_file()
    )


def lower_for_tuning(
    mod: tvm.IRModule,
    target: Target,
    *,
    sparse: PatternSparseConv2D | None = None,
    compact: CompactStructuredConv2D | None = None,
    blocked: Blocked = None,
    chain: Chain = None,
) -> tvm.IRModule:
    """Our rewrites (sparse and blocked kernels left unscheduled), then legalise and fuse:
    tasks ready. ``blocked=False`` leaves dense convs to TVM (stock tasks); chained kernels
    stay unscheduled too (they are scheduled only where the kernels they replace were)."""
    seq = tvm.transform.Sequential(
        [
            *rewrite_passes(
                sparse=sparse
                if sparse is not None
                else default_sparse_pass(blocked=blocked is not False, schedule=False),
                compact=compact,
                blocked=blocked if blocked is not None else BlockedConv2D(schedule=False),
                chain=chain,
            ),
            relax.transform.LegalizeOps(),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
        ]
    )
    with target:
        return seq(mod)


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

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


BUDGET_FILE = "patsparse_budgets.json"


def _workload_key(db: Any, mod: tvm.IRModule) -> str:
    """MetaSchedule's structural hash of a task (the key its JSON database uses)."""
    return str(db.commit_workload(mod).as_json()[0])


def _is_pattern_task(mod: tvm.IRModule) -> bool:
    """A task of our pattern-sparse / blocked kernels (a ``ps_conv_*`` block at the root)."""
    from tvm_ext._compat import Schedule
    from tvm_ext.schedules.cpu import pattern_blocks
    from tvm_ext.te.pattern_conv import CONV_BLOCK_PREFIX

    try:
        names = pattern_blocks(Schedule(mod))
    except Exception:  # not a single schedulable PrimFunc
        return False
    return any(n.startswith(CONV_BLOCK_PREFIX) for n in names)


def _measured(rec: Any) -> bool:
    """A record with a real measurement (failed runs are stored with 1e10 s or none)."""
    secs = [float(s) for s in (rec.run_secs or [])]
    return bool(secs) and min(secs) < 1e9


def _records_for(db: Any, mod: tvm.IRModule, records: list[Any]) -> int:
    """Measured tuning records the database holds for ``mod``'s workload (structural
    match); failed trials do not count, so a re-run measures them again."""
    if not db.has_workload(mod):
        return 0
    workload = db.commit_workload(mod)
    return sum(1 for rec in records if rec.workload.same_as(workload) and _measured(rec))


def _read_budgets(work: Path) -> dict[str, int]:
    path = work / BUDGET_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}  # a torn write: fall back to counting records
    return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_budgets(work: Path, budgets: dict[str, int]) -> None:
    tmp = work / (BUDGET_FILE + ".tmp")
    tmp.write_text(json.dumps(budgets, indent=1, sort_keys=True))
    tmp.replace(work / BUDGET_FILE)


DEFAULT_MARK = "default:"
#: budget-file prefix of the fingerprint of the hand schedule a workload's hand record holds
HAND_MARK = "hand:"


def _hand_fingerprint(sch: Any) -> int:
    """A stable number for a hand schedule's trace (what the budget file keeps, so a run
    after the hand schedules changed measures them again)."""
    return int(hashlib.sha256(str(sch.trace).encode()).hexdigest()[:12], 16)


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
        wkey = _workload_key(db, mod)
        key = DEFAULT_MARK + wkey
        if done.get(key) or not _is_pattern_task(mod):
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
    from tvm_ext.schedules.cpu import schedule_for_target

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
        wkey = _workload_key(probe, mod)
        if not budgets.get(DEFAULT_MARK + wkey) or not _is_pattern_task(mod):
            continue
        sch = _hand_schedule(mod, target)
        if sch is not None and budgets.get(HAND_MARK + wkey) != _hand_fingerprint(sch):
            stale.add(wkey)
    if not stale:
        return 0
    wl_path, rec_path = work / WORKLOAD_FILE, work / RECORD_FILE
    workloads = _json_lines(wl_path)
    index = {i for i, entry in enumerate(workloads) if str(entry[0]) in stale}
    records = _json_lines(rec_path) if rec_path.is_file() else []
    # a record is [workload index, [trace, run_secs, target, args]]; a trace is
    # [instructions, decisions], and a hand schedule's samples nothing
    kept = [r for r in records if not (int(r[0]) in index and not r[1][0][1])]
    _replace_together({rec_path: kept})
    for wkey in stale:
        budgets.pop(DEFAULT_MARK + wkey, None)
        budgets.pop(HAND_MARK + wkey, None)
    _write_budgets(work, budgets)
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
    tasks = ms.relax_integration.extract_tasks(mod, target)
    # A task whose space is smaller than the budget never reaches it in records; the
    # budget file remembers that it was tuned to completion.
    budgets = _read_budgets(work)
    report = TuneReport(work_dir=str(work), tasks=len(tasks))
    if (work / WORKLOAD_FILE).is_file():  # before the database reads the files
        report.stale_defaults = _drop_stale_hand_records(work, tasks, target, budgets)
    db = ms.database.JSONDatabase(work_dir=str(work))
    records = db.get_all_tuning_records()
    todo, budget, most = [], 0, 0
    for task in tasks:
        # the committed hand schedule is not a tuning trial
        key = _workload_key(db, task.dispatched[0])
        have = _records_for(db, task.dispatched[0], records) - budgets.get(DEFAULT_MARK + key, 0)
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
        _write_budgets(work, budgets)  # an interrupted run keeps them
    if todo:
        before = sum(1 for rec in db.get_all_tuning_records() if _measured(rec))
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
        report.trials = sum(1 for rec in db.get_all_tuning_records() if _measured(rec)) - before
        report.failed, report.errors = sum(watch.failed), watch.errors[:20]
        for i, task in enumerate(todo):
            if watch.failed[i]:
                continue  # not finished: the next run tunes it again
            key = _workload_key(db, task.dispatched[0])
            budgets[key] = max(budgets.get(key, 0), trials_per_task)
        _write_budgets(work, budgets)
    for task in tasks:
        m = task.dispatched[0]
        if db.has_workload(m):
            top = db.get_top_k(db.commit_workload(m), 1)
            if top and top[0].run_secs:
                report.best_ms[task.task_name] = float(top[0].run_secs[0]) * 1e3
    report.seconds = time.perf_counter() - start
    return report


@dataclass(frozen=True)
class PruneReport:
    """What :func:`prune_logs` kept and dropped (workloads, their records, file bytes)."""

    work_dir: str
    workloads: int
    dropped_workloads: int
    records: int
    dropped_records: int
    bytes_before: int
    bytes_after: int


WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"


def _json_lines(path: Path) -> list[Any]:
    """The lines of a MetaSchedule JSON database file, parsed; a clear error (and nothing
    written) on a line that is not JSON."""
    out = []
    for no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{path}:{no} is not JSON ({err.msg}): a torn write? Repair or delete that line, "
                "then prune again (nothing was changed)"
            ) from None
    return out


def _replace_together(files: dict[Path, list[Any]]) -> None:
    """Write each file's JSON lines beside it, then swap all in, the old ones kept as
    ``*.bak`` until every file is in place (files that refer to each other never mix)."""
    for path, lines in files.items():
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))
    for path in files:
        if path.is_file():
            path.replace(path.with_name(path.name + ".bak"))
        path.with_name(path.name + ".tmp").replace(path)
    for path in files:
        path.with_name(path.name + ".bak").unlink(missing_ok=True)


def _budget_workload(entry: str) -> str:
    """The workload key of a budget-file entry (trials, hand record or its fingerprint)."""
    return entry.removeprefix(DEFAULT_MARK).removeprefix(HAND_MARK)


def prune_logs(work_dir: Path | str, mods: list[tvm.IRModule], target: Target) -> PruneReport:
    """Drop from the logs in ``work_dir`` every workload that is no task of ``mods`` (lowered
    modules, :func:`lower_for_tuning`), with its tuning records and budget entries.

    A kernel change leaves the old kernels' workloads behind (their task keys no longer
    match anything); they cost space and load time only. Workloads are matched like
    MetaSchedule matches them (structural hash, then structural equality); the record file
    refers to workloads by line number, so it is rewritten with the new numbers. Both files
    are written beside the old ones first and swapped in with the old kept as ``*.bak`` until
    both are in place (an interrupted prune leaves them to restore from).
    """
    work = Path(work_dir)
    wl_path, rec_path = work / WORKLOAD_FILE, work / RECORD_FILE
    if not wl_path.is_file():
        raise FileNotFoundError(f"no MetaSchedule logs to prune in {work} ({WORKLOAD_FILE})")
    workloads = _json_lines(wl_path)
    records = _json_lines(rec_path) if rec_path.is_file() else []
    probe = ms.database.MemoryDatabase()
    current: dict[str, list[tvm.IRModule]] = {}
    for mod in mods:
        for task in ms.relax_integration.extract_tasks(mod, target):
            m = task.dispatched[0]
            current.setdefault(_workload_key(probe, m), []).append(m)

    def wanted(entry: Any) -> bool:
        cands = current.get(str(entry[0]), [])
        if not cands:
            return False
        mod = ms.database.Workload.from_json(entry).mod
        return any(structural_equal(mod, m) for m in cands)

    renumber: dict[int, int] = {}
    kept_workloads: list[Any] = []
    for i, entry in enumerate(workloads):
        if wanted(entry):
            renumber[i] = len(kept_workloads)
            kept_workloads.append(entry)
    kept_records = [[renumber[int(r[0])], r[1]] for r in records if int(r[0]) in renumber]
    before = wl_path.stat().st_size + (rec_path.stat().st_size if rec_path.is_file() else 0)
    _replace_together({wl_path: kept_workloads, rec_path: kept_records})
    keys = {str(entry[0]) for entry in kept_workloads}
    budgets = _read_budgets(work)
    _write_budgets(work, {k: v for k, v in budgets.items() if _budget_workload(k) in keys})
    return PruneReport(
        work_dir=str(work),
        workloads=len(kept_workloads),
        dropped_workloads=len(workloads) - len(kept_workloads),
        records=len(kept_records),
        dropped_records=len(records) - len(kept_records),
        bytes_before=before,
        bytes_after=wl_path.stat().st_size + rec_path.stat().st_size,
    )


#: a tuned schedule replaces our hand schedule of a pattern-sparse / blocked kernel only if it
#: measured at least this much faster (run time <= margin x the hand schedule's): on this
#: shared 2-core VM one kernel's timing moves by up to 2x between moments (the second core
#: comes and goes), and 4-trial logs picked schedules that measured 2 % faster than the hand
#: one and ran 2.2x slower inside the model (BENCHMARKS.md, ResNet-50)
TUNED_MARGIN = 0.8


def _mean_secs(rec: Any) -> float:
    """Mean measured run time of a record; infinite for a failed one."""
    if not _measured(rec):
        return float("inf")
    return sum(float(s) for s in rec.run_secs) / len(rec.run_secs)


def logs_database(work_dir: Path | str, *, margin: float = TUNED_MARGIN) -> Any:
    """The MetaSchedule logs in ``work_dir`` as an in-memory database with one record per
    workload: the fastest, except that on pattern-sparse / blocked kernels the hand schedule
    (committed by :func:`tune_module`; its trace samples nothing) stays unless a tuned one
    measured ``margin`` times its time or less. Apply it with ``with db:`` around
    ``relax.transform.MetaScheduleApplyDatabase()``.

    Where the hand schedule stays, the workload gets no record: the kernel then takes
    today's hand schedule (:class:`~tvm_ext.passes.schedule_leftovers.ScheduleUntunedPatternConvs`),
    not the one replayed from the logs, which may be older (logs outlive improvements of the
    hand schedules; ``patsparse tune`` measures a changed one again)."""
    if not 0 < margin <= 1:
        raise ValueError(f"margin must be in (0, 1], got {margin}")
    src = ms.database.JSONDatabase(work_dir=str(work_dir))
    groups: dict[str, list[Any]] = {}
    for rec in src.get_all_tuning_records():
        groups.setdefault(str(rec.workload.as_json()[0]), []).append(rec)
    out = ms.database.MemoryDatabase()
    for recs in groups.values():
        recs = [r for r in recs if _mean_secs(r) < float("inf")]
        if not recs:
            continue
        best = min(recs, key=_mean_secs)
        hand = [r for r in recs if not r.trace.decisions]
        if hand:
            mine = min(hand, key=_mean_secs)
            hand_wins = not best.trace.decisions or _mean_secs(best) > margin * _mean_secs(mine)
            # cheap comparison first: building a Schedule to inspect the task is not
            if hand_wins and _is_pattern_task(best.workload.mod):
                continue  # the hand schedule: today's is applied, not the logged one
        workload = out.commit_workload(best.workload.mod)
        out.commit_tuning_record(
            ms.database.TuningRecord(
                best.trace, workload, best.run_secs, best.target, best.args_info
            )
        )
    return out


def tuned_pipeline(
    target: Target,
    work_dir: Path | str | None,
    *,
    sparse: PatternSparseConv2D | None = None,
    compact: CompactStructuredConv2D | None = None,
    blocked: Blocked = None,
    chain: Chain = None,
) -> tvm.transform.Pass:
    """Rewrite, apply the tuning logs in ``work_dir`` (if any, through
    :func:`logs_database`), schedule what has no record with the defaults, then TVM's default
    pipeline."""
    from tvm_ext.passes.schedule_leftovers import ScheduleUntunedPatternConvs

    @tvm.transform.module_pass(opt_level=0, name="patsparse_tuned_pipeline")
    def _pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        mod = lower_for_tuning(
            mod, target, sparse=sparse, compact=compact, blocked=blocked, chain=chain
        )
        with target:
            if work_dir is not None and Path(work_dir).is_dir():
                with logs_database(work_dir):
                    mod = relax.transform.MetaScheduleApplyDatabase()(mod)
            mod = ScheduleUntunedPatternConvs()(mod)  # type: ignore[operator]
        return relax.get_default_pipeline(target)(mod)

    return _pipeline
