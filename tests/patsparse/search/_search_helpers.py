"""Helpers shared by the search tests that run ``patsparse search`` in subprocesses."""

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
