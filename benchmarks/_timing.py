"""Wall-clock timing shared by the benchmark scripts (run them as ``python benchmarks/X.py``).

Importing it sets the process's allocator steady (:mod:`patsparse.bench.allocator`: PyTorch's
activations would otherwise page-fault on every call in some processes, not in others).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from patsparse.bench.allocator import steady_allocator

ALLOCATOR = steady_allocator()


def median_ms(fn: Callable[[], object], *, repeat: int = 20) -> tuple[float, float, float]:
    """(median, min, max) milliseconds of ``fn()`` over ``repeat`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times), max(times)


def torch_around(
    runs: dict[str, Callable[[], object]], repeat: int, *, warmup: int = 3
) -> dict[str, list[float]]:
    """Milliseconds per call of each of ``runs``: the one named ``torch`` timed in two blocks
    (before and after), the others interleaved between them (PyTorch's thread pool and TVM's
    do not alternate call by call); ``warmup`` untimed calls of each first."""
    for _ in range(warmup):
        for fn in runs.values():
            fn()
    times: dict[str, list[float]] = {n: [] for n in runs}
    others = [n for n in runs if n != "torch"]
    for names in (["torch"], others, ["torch"]):
        for _ in range(-(-repeat // 2) if names == ["torch"] else repeat):
            for name in names:
                t0 = time.perf_counter()
                runs[name]()
                times[name].append((time.perf_counter() - t0) * 1e3)
    return times
