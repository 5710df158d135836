"""Tuning logs: where they live, what they hold, pruning them, applying them.

Logs are plain MetaSchedule JSON databases (``database_workload.json`` +
``database_tuning_record.json``), one directory per (model family or task set, target):
``tuning_logs/<family>/<target key>/``, so logs for several targets never mix. Workloads are
keyed by structure (MetaSchedule's structural hash of each PrimFunc: weight *values* are
arguments, not part of the key). ``patsparse_budgets.json`` beside the database remembers
tasks tuned to completion (a search space smaller than the budget never reaches it in
records) and which hand schedule each hand record measured. Workloads left by kernels that
changed since are dropped by :func:`prune_logs`; :func:`logs_database` is what a compile
applies. Tuning itself is :mod:`tvm_ext.tuning.tune`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tvm_ext._compat import Target, structural_equal, tvm
from tvm_ext._compat import meta_schedule as ms

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


BUDGET_FILE = "patsparse_budgets.json"


def workload_key(db: Any, mod: tvm.IRModule) -> str:
    """MetaSchedule's structural hash of a task (the key its JSON database uses)."""
    return str(db.commit_workload(mod).as_json()[0])


def is_pattern_task(mod: tvm.IRModule) -> bool:
    """A task of our pattern-sparse / blocked kernels (a ``ps_conv_*`` block at the root)."""
    from tvm_ext._compat import Schedule
    from tvm_ext.schedules.common import pattern_blocks
    from tvm_ext.te.block_names import CONV_BLOCK_PREFIX

    try:
        names = pattern_blocks(Schedule(mod))
    except Exception:  # not a single schedulable PrimFunc
        return False
    return any(n.startswith(CONV_BLOCK_PREFIX) for n in names)


def is_measured(rec: Any) -> bool:
    """A record with a real measurement (failed runs are stored with 1e10 s or none)."""
    secs = [float(s) for s in (rec.run_secs or [])]
    return bool(secs) and min(secs) < 1e9


def records_for(db: Any, mod: tvm.IRModule, records: list[Any]) -> int:
    """Measured tuning records the database holds for ``mod``'s workload (structural
    match); failed trials do not count, so a re-run measures them again."""
    if not db.has_workload(mod):
        return 0
    workload = db.commit_workload(mod)
    return sum(1 for rec in records if rec.workload.same_as(workload) and is_measured(rec))


def read_budgets(work: Path) -> dict[str, int]:
    path = work / BUDGET_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}  # a torn write: fall back to counting records
    return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}


def write_budgets(work: Path, budgets: dict[str, int]) -> None:
    tmp = work / (BUDGET_FILE + ".tmp")
    tmp.write_text(json.dumps(budgets, indent=1, sort_keys=True))
    tmp.replace(work / BUDGET_FILE)


DEFAULT_MARK = "default:"
#: budget-file prefix of the fingerprint of the hand schedule a workload's hand record holds
HAND_MARK = "hand:"


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


def json_lines(path: Path) -> list[Any]:
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


def replace_together(files: dict[Path, list[Any]]) -> None:
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
    workloads = json_lines(wl_path)
    records = json_lines(rec_path) if rec_path.is_file() else []
    probe = ms.database.MemoryDatabase()
    current: dict[str, list[tvm.IRModule]] = {}
    for mod in mods:
        for task in ms.relax_integration.extract_tasks(mod, target):
            m = task.dispatched[0]
            current.setdefault(workload_key(probe, m), []).append(m)

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
    replace_together({wl_path: kept_workloads, rec_path: kept_records})
    keys = {str(entry[0]) for entry in kept_workloads}
    budgets = read_budgets(work)
    write_budgets(work, {k: v for k, v in budgets.items() if _budget_workload(k) in keys})
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
    if not is_measured(rec):
        return float("inf")
    return sum(float(s) for s in rec.run_secs) / len(rec.run_secs)


def logs_database(work_dir: Path | str, *, margin: float = TUNED_MARGIN) -> Any:
    """The MetaSchedule logs in ``work_dir`` as an in-memory database with one record per
    workload: the fastest, except that on pattern-sparse / blocked kernels the hand schedule
    (committed by :func:`tune_module`; its trace samples nothing) stays unless a tuned one
    measured ``margin`` times its time or less. Apply it with ``with db:`` around
    ``relax.transform.MetaScheduleApplyDatabase()``.

    Where the hand schedule stays, the workload gets no record: the kernel then takes
    today's hand schedule (``ScheduleUntunedPatternConvs``),
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
            if hand_wins and is_pattern_task(best.workload.mod):
                continue  # the hand schedule: today's is applied, not the logged one
        workload = out.commit_workload(best.workload.mod)
        out.commit_tuning_record(
            ms.database.TuningRecord(
                best.trace, workload, best.run_secs, best.target, best.args_info
            )
        )
    return out
