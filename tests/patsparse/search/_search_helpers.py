"""Helpers shared by the search tests: ``patsparse search`` in subprocesses and a
deterministic device with a slow stretch."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
#: two choices per searched layer: 4 configurations on the digits CNN
SMALL_SCHEMES = ("dense", "pattern+connectivity")
SMALL_COMPRESSIONS = (8.0,)


def subprocess_env() -> dict[str, str]:
    """The worktree first on the path, one thread everywhere."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(TVM_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def search_cmd(checkpoint: Path, storage: str, *extra: str) -> list[str]:
    """A tiny ``patsparse search`` run on the small space."""
    return [
        sys.executable,
        "-m",
        "patsparse",
        "search",
        str(checkpoint),
        "--latency-fraction",
        "100",
        "--storage",
        storage,
        "--schemes",
        ",".join(SMALL_SCHEMES),
        "--compressions",
        ",".join(f"{c:g}" for c in SMALL_COMPRESSIONS),
        "--retrain-steps",
        "3",
        "--retrain-epochs",
        "1",
        "--phase1-epochs",
        "0",
        "--methods",
        "magnitude",
        "--final-epochs",
        "1",
        "--repeat",
        "3",
        "--verify-top",
        "1",
        *extra,
    ]


class SlowStretch:
    """A deterministic device for the interleaving tests: each model takes its kept-weight
    count x 1e-4 ms, except during ``slow_calls`` (timings counted from 0), when the machine
    is 10x slower (a burst of other work); compiles are counted."""

    key = "test:slow-stretch"

    def __init__(self, slow_calls: range) -> None:
        self.slow_calls, self.calls, self.compiles = slow_calls, 0, 0

    def compile(self, model, example):
        self.compiles += 1
        return sum(int((p != 0).sum()) for p in model.parameters() if p.dim() > 1)

    def measure(self, model, example):
        return self.time(self.compile(model, example), example)

    def time(self, compiled, example):
        from patsparse.search import LatencyMeasurement

        factor = 10.0 if self.calls in self.slow_calls else 1.0
        self.calls += 1
        ms = compiled * 1e-4 * factor
        return LatencyMeasurement(ms, ms, ms, 1, 0.0, 0, self.key)
