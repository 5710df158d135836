"""Each model of a multi-model ``patsparse bench`` runs in a fresh process."""

from __future__ import annotations

import pytest

from patsparse.bench import BenchConfig, isolate
from patsparse.bench.isolate import run_bench_isolated
from patsparse.core.errors import PatsparseError

_SMALL = {"repeat": 3, "layers": False, "memory": False, "tvm_dense": False, "logs_root": None}


def test_a_model_benched_in_a_fresh_process_returns_its_full_result():
    res = run_bench_isolated(BenchConfig(model="digits-cnn", threads=1, **_SMALL), timeout=300)
    assert res["fresh_process"] is True and res["model"] == "digits-cnn"
    assert res["config"]["threads"] == 1 and res["config"]["max_spread"] == 1.5
    assert set(res["end_to_end_ms"]) == {"pytorch_dense", "patsparse"}
    assert res["max_abs_error_vs_pytorch"] < 1e-3 and "unsteady" in res
    assert res["max_rss_mb_this_process"] > 0


def test_a_child_that_fails_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(isolate, "_SCRIPT", "raise SystemExit(3)")
    with pytest.raises(PatsparseError, match=r"digits-cnn failed in its own process \(exit"):
        run_bench_isolated(BenchConfig(model="digits-cnn", **_SMALL))
