"""One ``patsparse bench`` model in a fresh Python process (:func:`run_bench_isolated`).

``bench`` with several models runs each in its own process, so no model inherits another's
process state: ResNet-18's patsparse engine once ran 1.5x slower (5.81 ms instead of 3.88,
every conv slower, a tight spread) in 1 of 4 processes that had compiled and run VGG-16
first, and in none of 5 that ran ResNet-18 alone. The configuration goes to the child as
JSON, the result comes back as JSON on its stdout; its progress goes to this process's
stderr.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from typing import Any

from patsparse.bench.config import BenchConfig
from patsparse.core.errors import PatsparseError

_SCRIPT = """
import json, sys
from patsparse.bench.config import BenchConfig
from patsparse.bench.run import run_bench
result = run_bench(BenchConfig(**json.loads(sys.argv[1])))
print(json.dumps(result | {"fresh_process": True}))
"""


def run_bench_isolated(cfg: BenchConfig, *, timeout: float | None = None) -> dict[str, Any]:
    """:func:`~patsparse.bench.run.run_bench` of ``cfg`` in a fresh process; its result."""
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(asdict(cfg))],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
        timeout=timeout,
    )
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise PatsparseError(
            f"bench of {cfg.model} failed in its own process (exit status {out.returncode}); "
            "its error is printed above",
            fix=f"rerun 'patsparse bench {cfg.model}' alone to see it",
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result
