"""The cache-line round trip between the two CPUs a benchmark runs on (core_link)."""

from __future__ import annotations

import os
import shutil

from patsparse.bench import core_link
from patsparse.bench.core_link import FAR_NS, far_apart, far_apart_line, round_trip_ns
from patsparse.bench.format import unsteady_lines


def test_the_round_trip_is_measured_between_two_cpus():
    # measured wherever it can be (two CPUs, a C compiler: CI has both), None elsewhere
    measurable = (
        hasattr(os, "sched_getaffinity")
        and len(os.sched_getaffinity(0)) >= 2
        and (shutil.which("cc") or shutil.which("gcc")) is not None
    )
    ns = round_trip_ns()
    if not measurable:
        assert ns is None
        return
    # a cache line between two cores: tens to hundreds of ns, never zero, never a millisecond
    assert ns is not None and 10 < ns < 100_000
    assert round_trip_ns() is not None  # the program is built once and runs again


def test_without_a_compiler_there_is_no_figure(monkeypatch):
    core_link._program.cache_clear()
    monkeypatch.setenv("CC", "no-such-compiler")
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    try:
        assert round_trip_ns() is None
    finally:
        core_link._program.cache_clear()


def test_runs_with_distant_cores_are_flagged():
    assert not far_apart([55.0, 60.0, None])
    assert far_apart([55.0, FAR_NS + 1])
    assert far_apart_line([None, 61.0]) is None
    line = far_apart_line([320.7, 61.0])
    assert line is not None and "321, 61 ns" in line and "one-thread times are not" in line
    # in the bench output, with or without a max/min flag
    res = {"core_round_trip_ns": [330.0, 340.0], "unsteady": {}, "max_spread": 1.5}
    assert unsteady_lines(res) == [far_apart_line([330.0, 340.0])]
    res["unsteady"] = {"patsparse": 1.8}
    lines = unsteady_lines(res)
    assert lines[0].startswith("UNSTEADY") and lines[1].startswith("CORES FAR APART")
    assert unsteady_lines({"unsteady": {}, "core_round_trip_ns": [50.0, 52.0]}) == []


def test_round_trips_are_taken_before_and_after_the_block(monkeypatch):
    figures = iter([55.0, 340.0])
    monkeypatch.setattr(core_link, "round_trip_ns", lambda: next(figures))
    with core_link.round_trips() as link:
        assert link == [55.0]  # before: taken when the block starts
    assert link == [55.0, 340.0] and far_apart(link)
