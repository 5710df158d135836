"""How steady a ``patsparse bench`` measurement is: each engine's median with its spread
(min-max and the interquartile range) and its max/min, and which measurements exceed the
bound :attr:`~patsparse.bench.config.BenchConfig.max_spread`.

A ratio of two measurements (a speed-up) is only as trustworthy as the less steady one: a
run in which a slow stretch of a shared machine hit some runs shows a wide max/min, and
``bench`` flags it in the table and the JSON instead of reporting its ratio as a figure.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any


def summary_ms(times: Sequence[float]) -> dict[str, float]:
    """Median, min, max, quartiles (``q1``, ``q3``) and ``max_over_min`` of ``times`` (ms)."""
    if not times:
        raise ValueError("no times to summarise")
    lo, hi = min(times), max(times)
    if len(times) > 1:
        q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
    else:
        q1 = q3 = lo
    return {
        "median": round(statistics.median(times), 4),
        "min": round(lo, 4),
        "max": round(hi, 4),
        "q1": round(q1, 4),
        "q3": round(q3, 4),
        # a clock reading of 0 (a coarse CPU clock) counts as 1 ns: JSON has no infinity
        "max_over_min": round(max(hi, 1e-6) / max(lo, 1e-6), 3),
    }


def is_steady(summary: Mapping[str, Any], bound: float) -> bool:
    """Whether a :func:`summary_ms`'s slowest run is within ``bound`` times its fastest."""
    return bool(summary["max_over_min"] <= bound)


def unsteady(summaries: Mapping[str, Mapping[str, Any]], bound: float) -> dict[str, float]:
    """The measurements (by name) whose max/min exceeds ``bound``, with their max/min."""
    return {
        name: float(s["max_over_min"]) for name, s in summaries.items() if not is_steady(s, bound)
    }


def flag_end_to_end(e2e: dict[str, dict[str, Any]], bound: float) -> dict[str, float]:
    """Mark every engine's summary ``steady`` (max/min within ``bound``) in place; the
    unsteady ones with their max/min."""
    for s in e2e.values():
        s["steady"] = is_steady(s, bound)
    return unsteady(e2e, bound)
