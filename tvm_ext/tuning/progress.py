"""A MetaSchedule measure callback: progress bar (tasks, trials, best latency) and per-task
counts of measured and failed trials."""

from __future__ import annotations

from typing import Any

from tvm_ext._compat import derived_object
from tvm_ext._compat import meta_schedule as ms

#: run_secs at or above this mark a failed measurement (MetaSchedule stores 1e10)
FAILED_SECS = 1e9


@derived_object
class TuningProgress(ms.measure_callback.PyMeasureCallback):
    """Counts trials per task (``measured``, ``failed``, ``best``) and draws a tqdm bar."""

    def __init__(self, task_names: list[str], total: int, *, show: bool = True) -> None:
        super().__init__()
        self.task_names = task_names
        self.measured = [0] * len(task_names)
        self.failed = [0] * len(task_names)
        self.best = [float("inf")] * len(task_names)
        self.errors: list[str] = []
        self.bar: Any = None
        if show:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="tuning", unit="trial", leave=True)

    def apply(
        self,
        task_scheduler: Any,
        task_id: int,
        measure_candidates: Any,
        builder_results: Any,
        runner_results: Any,
    ) -> None:
        for build, run in zip(builder_results, runner_results, strict=False):
            secs = [float(s) for s in (run.run_secs or [])]
            if build.error_msg or run.error_msg or not secs or min(secs) >= FAILED_SECS:
                self.failed[task_id] += 1
                msg = str(build.error_msg or run.error_msg or "no measurement")
                self.errors.append(msg.strip().splitlines()[-1][:300] if msg.strip() else msg)
            else:
                self.measured[task_id] += 1
                self.best[task_id] = min(self.best[task_id], sum(secs) / len(secs))
        if self.bar is not None:
            done = sum(1 for m, f in zip(self.measured, self.failed, strict=True) if m + f)
            best = self.best[task_id]
            self.bar.set_postfix_str(
                f"task {done}/{len(self.task_names)} {self.task_names[task_id][:28]} best "
                f"{best * 1e3:.3f} ms, failed {sum(self.failed)}"
                if best < float("inf")
                else f"task {done}/{len(self.task_names)}, failed {sum(self.failed)}"
            )
            self.bar.update(len(runner_results))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
