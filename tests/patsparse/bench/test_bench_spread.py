"""Honest timing in ``patsparse bench``: spreads, the unsteady flag (table and JSON) and
interleaved rounds, on synthetic timing lists and a fake clock (no timed tests)."""

from __future__ import annotations

import itertools
import json

import pytest

from patsparse.bench import BenchConfig, format_bench, torch_timing
from patsparse.bench.spread import flag_end_to_end, is_steady, summary_ms, unsteady
from patsparse.bench.torch_timing import interleaved
from patsparse.core.errors import PatsparseError


def test_summary_gives_median_quartiles_and_max_over_min():
    s = summary_ms([4.0, 1.0, 2.0, 3.0, 5.0])
    assert s == {"median": 3.0, "min": 1.0, "max": 5.0, "q1": 2.0, "q3": 4.0, "max_over_min": 5.0}
    assert summary_ms([2.0])["max_over_min"] == 1.0
    assert summary_ms([0.0, 0.0])["max_over_min"] == 1.0  # a coarse clock read 0 twice
    assert summary_ms([0.0, 0.001])["max_over_min"] == 1000.0
    with pytest.raises(ValueError, match="no times"):
        summary_ms([])


def test_measurements_over_the_bound_are_flagged_and_the_rest_are_not():
    steady = summary_ms([10.0, 10.5, 11.0, 10.2])  # max/min 1.1
    slow_stretch = summary_ms([181.0, 185.0, 492.0, 818.0, 878.0])  # a VGG-16 run gone wrong
    assert is_steady(steady, 1.5) and not is_steady(slow_stretch, 1.5)
    assert is_steady(slow_stretch, 5.0)  # the bound decides, nothing else
    e2e = {"pytorch_dense": slow_stretch, "patsparse": steady}
    assert flag_end_to_end(e2e, 1.5) == {"pytorch_dense": pytest.approx(878 / 181, abs=1e-3)}
    assert e2e["pytorch_dense"]["steady"] is False and e2e["patsparse"]["steady"] is True
    assert unsteady(e2e, 1.05) == {
        "pytorch_dense": pytest.approx(4.851, abs=1e-3),
        "patsparse": 1.1,
    }


def test_max_spread_has_one_default_and_is_checked():
    assert BenchConfig(model="digits-cnn").max_spread == 1.5
    with pytest.raises(PatsparseError, match=r"max_spread .* must be > 1"):
        BenchConfig(model="digits-cnn", max_spread=1.0)


def _result(torch_times: list[float], sparse_times: list[float]) -> dict:
    e2e = {"pytorch_dense": summary_ms(torch_times), "patsparse": summary_ms(sparse_times)}
    for d in e2e.values():
        d["speedup_vs_pytorch"] = round(e2e["pytorch_dense"]["median"] / d["median"], 3)
    e2e["patsparse"]["efficiency"] = 0.9
    return {
        "model": "vgg16-imagenet",
        "config": {
            "scheme": "block-pattern",
            "compression": 12.0,
            "others": "block",
            "clock": "wall",
        },
        "threads": 2,
        "flop_reduction": 11.0,
        "logs": None,
        "end_to_end_ms": e2e,
        "max_spread": 1.5,
        "unsteady": flag_end_to_end(e2e, 1.5),
        "max_abs_error_vs_pytorch": 1e-6,
        "storage_bytes": {"dense_weights": 4e6, "patsparse_weights": 1e6},
        "compile_seconds": {"patsparse": 1.0},
        "tuning": {},
    }


def test_table_and_json_flag_an_unsteady_ratio_instead_of_reporting_it_silently():
    res = _result([181.0, 185.0, 492.0, 818.0, 878.0], [16.0, 16.2, 16.5, 16.1, 16.3])
    text = format_bench(res)
    (row,) = [line for line in text.splitlines() if line.startswith("patsparse ")]
    assert row.endswith("x !")  # its ratio uses the unsteady PyTorch time
    (warning,) = [line for line in text.splitlines() if line.startswith("UNSTEADY")]
    assert "pytorch_dense (max/min 4.85) > 1.5" in warning and "not figures" in warning
    # the JSON says the same
    doc = json.loads(json.dumps(res))
    assert doc["unsteady"] == {"pytorch_dense": 4.851}
    assert doc["end_to_end_ms"]["pytorch_dense"]["steady"] is False
    # every engine's spread is printed: IQR and max/min
    assert "IQR  max/min" in text and "16.100-16.300 1.03" in row


def test_a_steady_run_prints_no_flag():
    res = _result([181.0, 185.0, 190.0], [16.0, 16.2, 16.5])
    text = format_bench(res)
    assert res["unsteady"] == {} and "UNSTEADY" not in text and " !" not in text


def test_interleaved_rounds_rotate_and_warm_each_engine_before_its_timed_call(monkeypatch):
    ticks = itertools.count()
    monkeypatch.setitem(torch_timing.CLOCKS, "ticks", lambda: float(next(ticks)))
    log: list[str] = []
    calls = {name: (lambda n=name: log.append(n)) for name in ("a", "b", "c")}
    times = interleaved(calls, 3, "ticks", warmup=1)
    # one warm-up each, then per round every engine twice in a row (untimed, timed), the
    # order rotated each round
    assert log == ["a", "b", "c", *"aabbcc", *"bbccaa", *"ccaabb"]
    # the fake clock advances one tick per reading: every timed call measures one tick
    assert times == {name: [1000.0] * 3 for name in "abc"}


def test_interleaved_spreads_a_slow_stretch_over_every_engine(monkeypatch):
    """A clock that runs 3x slower for a stretch of the run: timed engine by engine, the
    stretch would fall on one engine's series only; interleaved, every engine gets it."""
    now = [0.0]
    reads = itertools.count()

    def clock() -> float:
        # every second reading ends a timed call: slow for timed calls 6..11 of 18
        k = next(reads)
        if k % 2:
            now[0] += 3.0 if 6 <= k // 2 < 12 else 1.0
        return now[0]

    monkeypatch.setitem(torch_timing.CLOCKS, "stretch", clock)
    calls = {name: (lambda: None) for name in ("pytorch_dense", "patsparse", "tvm_dense")}
    times = interleaved(calls, 6, "stretch", warmup=0)
    slow = {name: sum(t > 1500 for t in ts) for name, ts in times.items()}
    assert slow == {"pytorch_dense": 2, "patsparse": 2, "tvm_dense": 2}
    medians = {name: summary_ms(ts)["median"] for name, ts in times.items()}
    assert len(set(medians.values())) == 1  # the ratios stay 1.0
