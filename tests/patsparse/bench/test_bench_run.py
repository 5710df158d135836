"""``run_bench``: one small model measured end to end and per layer, real timings."""

from __future__ import annotations

import pytest

from patsparse.bench import BenchConfig, format_bench, run_bench


@pytest.fixture(scope="module")
def digits_bench():
    cfg = BenchConfig(model="digits-cnn", compression=6.0, repeat=3, logs_root=None)
    return run_bench(cfg, log=lambda _msg: None)


def test_bench_measures_every_engine_side_by_side(digits_bench):
    res = digits_bench
    e2e = res["end_to_end_ms"]
    assert set(e2e) == {"pytorch_dense", "patsparse", "tvm_dense_blocked"}
    for d in e2e.values():
        assert 0 < d["min"] <= d["median"] <= d["max"]
        assert d["speedup_vs_pytorch"] > 0
    assert e2e["pytorch_dense"]["speedup_vs_pytorch"] == 1.0
    # the pruned model computes what PyTorch computes on the same pruned weights
    assert res["max_abs_error_vs_pytorch"] < 1e-3
    # 3x3 layers at 6x plus the dense stem: overall reduction between 1 and 6
    assert 1.5 < res["flop_reduction"] < 6.0
    assert res["storage_bytes"]["patsparse_weights"] < res["storage_bytes"]["dense_weights"]
    assert res["compile_seconds"]["patsparse"] > 0 and res["logs"] is None
    assert res["allocator"].startswith("glibc ")  # no engine page-faults per call
    # where the host had put the two CPUs, before and after the timing (core_link)
    assert len(res["core_round_trip_ns"]) == 2
    assert all(ns is None or ns > 0 for ns in res["core_round_trip_ns"])
    mem = res["peak_memory_mb"]
    assert set(mem) == {"pytorch_dense", "patsparse", "tvm_dense_blocked"}
    # each engine in a fresh process: its own peak (not the parent's, which exec inherits)
    assert all(0 <= v["model_mb"] < v["peak_mb"] for v in mem.values())
    assert mem["pytorch_dense"]["peak_mb"] < res["max_rss_mb_this_process"]


def test_bench_per_layer_rows_time_the_models_own_kernels(digits_bench):
    rows = digits_bench["layers"]
    assert [r["layer"] for r in rows] == ["features.0", "features.3", "features.7"]
    pruned = [r for r in rows if r["flop_reduction"] > 1]
    assert len(pruned) == 2  # the first conv is kept dense, as in the papers
    for r in pruned:
        assert r["patsparse_kernel"].startswith("pattern_sparse_conv2d_")
        assert r["tvm_dense_blocked_kernel"].startswith("blocked_conv2d_")
        assert r["patsparse_ms"]["median"] > 0 and r["pytorch_dense_ms"]["median"] > 0
        # both are rounded to 3 decimals: compare within that rounding
        assert r["efficiency"] == pytest.approx(
            r["speedup_vs_pytorch"] / r["flop_reduction"], rel=1e-2, abs=1.5e-3
        )
        # PyTorch in its whole-model runs, and alone on the layer's input
        assert r["pytorch_dense_alone_ms"]["median"] > 0
        assert r["efficiency_vs_alone"] == pytest.approx(
            r["pytorch_dense_alone_ms"]["median"]
            / r["patsparse_ms"]["median"]
            / r["flop_reduction"],
            rel=1e-2,
            abs=1.5e-3,
        )
    text = format_bench(digits_bench)
    assert "patsparse" in text and "efficiency" in text and "3x3 layer" in text
    assert "eff vs PyTorch alone" in text
    speed = digits_bench["end_to_end_ms"]["patsparse"]["speedup_vs_pytorch"]
    (row,) = [line for line in text.splitlines() if line.startswith("patsparse ")]
    # the speed-up column is filled on the host (then " !" when bench flags the run unsteady)
    assert row.rstrip().removesuffix("!").rstrip().endswith(f"{speed:.2f}x")
