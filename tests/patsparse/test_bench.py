"""``patsparse bench``: one small model measured end to end and per layer, real timings."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from patsparse import bench
from patsparse.bench import (
    BenchConfig,
    KernelCall,
    format_bench,
    paper_rate,
    run_bench,
    torch_layer_times,
)
from patsparse.cli import main
from patsparse.core.errors import PatsparseError


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


def test_torch_layer_times_times_each_layer_inside_whole_model_runs(monkeypatch):
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 2)
    )
    ticks = itertools.count()
    # a clock that advances one second per reading: each layer reads it twice (before and
    # after its forward), so every layer measures exactly one tick
    monkeypatch.setitem(bench.CLOCKS, "ticks", lambda: float(next(ticks)))
    times = torch_layer_times(model, torch.randn(1, 3, 8, 8), repeat=3, clock="ticks")
    assert times == {"0": [1000.0] * 3, "3": [1000.0] * 3}  # conv and linear, 3 runs each
    # the hooks are gone: the model runs as before
    assert not model[0]._forward_hooks and not model[0]._forward_pre_hooks
    real = torch_layer_times(model, torch.randn(1, 3, 8, 8), repeat=2)
    assert set(real) == {"0", "3"} and all(len(v) == 2 and min(v) > 0 for v in real.values())


def test_kernel_runs_merge_only_when_the_calls_match():
    first = [KernelCall("conv_a", (1,), (1,), 9, [1.0]), KernelCall("conv_b", (1,), (1,), 9, [2.0])]
    again = [KernelCall("conv_a", (1,), (1,), 9, [3.0]), KernelCall("conv_b", (1,), (1,), 9, [4.0])]
    merged = bench._more_runs(bench._more_runs(None, first), again)
    assert [k.times for k in merged] == [[1.0, 3.0], [2.0, 4.0]]
    with pytest.raises(PatsparseError, match="differ between runs"):
        bench._more_runs(merged, again[::-1])


def test_bench_cli_json_and_bad_input(capsys):
    args = ["--repeat", "3", "--no-memory", "--no-layers", "--threads", "1", "--clock", "cpu"]
    rc = main(["bench", "digits-cnn", *args, "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["threads"] == 1 and res["config"]["clock"] == "cpu"
    assert res["model"] == "digits-cnn" and res["config"]["compression"] == paper_rate("digits-cnn")
    assert "layers" not in res and "peak_memory_mb" not in res
    assert main(["bench", "resnet19"]) == 2
    assert "unknown model 'resnet19'" in capsys.readouterr().err
    assert main(["bench", "digits-cnn", "--compression", "0.5"]) == 2
    with pytest.raises(PatsparseError, match="repeat"):
        BenchConfig(model="digits-cnn", repeat=1)
    assert paper_rate("vgg16-imagenet") == 12.0 and paper_rate("resnet50-cifar") == 5.8


def test_bench_prune_logs_drops_workloads_the_model_no_longer_has(tmp_path, capsys):
    """``--prune-logs`` keeps only the model's tasks in its logs directory (here: one stale
    workload, dropped with its record); without logs it is a clear error."""
    from tvm_ext._compat import Schedule, host_target, te, tvm
    from tvm_ext._compat import meta_schedule as ms
    from tvm_ext.tuning.logs import log_dir

    work = log_dir("digits-cnn", host_target(num_cores=1), tmp_path)
    work.mkdir(parents=True)
    a = te.placeholder((8,), name="a")
    func = te.create_prim_func([a, te.compute((8,), lambda i: a[i] * 2.0, name="b")])
    stale = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    db = ms.database.JSONDatabase(work_dir=str(work))
    args = ms.arg_info.ArgInfo.from_prim_func(func)
    record = ms.database.TuningRecord(
        Schedule(stale).trace, db.commit_workload(stale), [1e-6], host_target(), args
    )
    db.commit_tuning_record(record)
    opts = ["--repeat", "3", "--no-memory", "--no-layers", "--no-tvm-dense", "--threads", "1"]
    rc = main(
        ["bench", "digits-cnn", *opts, "--logs-root", str(tmp_path), "--prune-logs", "--json"]
    )
    assert rc == 0
    pruned = json.loads(capsys.readouterr().out)["tuning"]["pruned"]
    assert pruned["dropped_workloads"] == 1 and pruned["dropped_records"] == 1
    assert pruned["workloads"] == 0 and not (work / "database_workload.json").read_text()
    assert main(["bench", "digits-cnn", "--no-logs", "--prune-logs"]) == 2
    assert "prune_logs needs tuning logs" in capsys.readouterr().err


def test_bench_names_the_targets_that_have_logs_when_this_one_has_none(tmp_path, capsys):
    """Logs never cross targets: on a CPU the shipped logs were not tuned for (say znver5 next
    to logs for znver4), bench runs the default schedules and says which targets have logs."""
    from tvm_ext._compat import host_target
    from tvm_ext.tuning.logs import RECORD_FILE, log_dir, target_key

    here = log_dir("digits-cnn", host_target(num_cores=1), tmp_path)
    other = here.parent / "llvm-otherchip-1c"
    other.mkdir(parents=True)
    (other / RECORD_FILE).write_text("")
    (here.parent / "llvm-empty-1c").mkdir()  # a directory without records is not listed
    opts = ["--repeat", "3", "--no-memory", "--no-layers", "--no-tvm-dense", "--threads", "1"]
    assert main(["bench", "digits-cnn", *opts, "--logs-root", str(tmp_path), "--json"]) == 0
    out, err = capsys.readouterr()
    res = json.loads(out)
    assert res["logs"] is None and res["logs_for_other_targets"] == ["llvm-otherchip-1c"]
    assert f"no tuning logs for this target in {here}" in err
    assert "has logs for llvm-otherchip-1c only" in err and "--trials N" in err
    assert "(logs exist for llvm-otherchip-1c)" in format_bench(res)
    assert target_key(host_target(num_cores=1)) == here.name


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"target": "arm64"}, "cannot run on this machine: pass --tracker"),
        ({"tracker": "127.0.0.1:9190"}, "both --tracker HOST:PORT and --key"),
        ({"key": "android"}, "both --tracker HOST:PORT and --key"),
        ({"target": "adreno", "tracker": "127.0.0.1:9190", "key": "a"}, "OpenCL runtime"),
        ({"target": "riscv"}, "unknown target 'riscv'"),
        ({"tracker": "127.0.0.1:9190", "key": "a", "clock": "cpu"}, "--clock cpu"),
    ],
)
def test_bench_remote_options_are_checked_before_anything_runs(options, message):
    with pytest.raises(PatsparseError, match=message):
        BenchConfig(model="digits-cnn", **options)


def test_bench_block_size_follows_the_target():
    from patsparse.schemes.hardware import default_block_size

    assert BenchConfig(model="digits-cnn").block == default_block_size("host")
    remote = BenchConfig(model="digits-cnn", target="arm64", tracker="h:1", key="k")
    assert remote.block == 4 and remote.remote  # NEON: 4 fp32 lanes
    assert BenchConfig(model="digits-cnn", block_size=8).block == 8


@pytest.mark.rpc
def test_bench_on_a_device_behind_a_tracker(capsys):
    """``bench --target T --tracker --key``: both engines uploaded to the device and timed
    there, the device's own output checked against PyTorch, its runtime set to one thread.
    The device is the emulated arm64 (qemu; .ci/run installs it), or on a machine without
    qemu the ``host`` kind (an RPC server of this machine's kind, a Linux-board stand-in):
    the remote path runs either way."""
    from tvm_ext._compat import host_target
    from tvm_ext.rpc.devices import DeviceConfig, EmulatedDevice, missing_for
    from tvm_ext.rpc.session import Tracker

    kind = "host" if missing_for("arm64") else "arm64"
    expected_target = {"arm64": "aarch64-linux-gnu", "host": host_target().export()["mcpu"]}
    with (
        Tracker(port=9520) as tracker,
        EmulatedDevice(DeviceConfig(kind, tracker.address)) as dev,
    ):
        address, key = str(tracker.address), dev.key
        opts = ["--repeat", "3", "--no-logs", "--threads", "1", "--json"]
        remote = ["--target", kind, "--tracker", address, "--key", key]
        assert main(["bench", "digits-cnn", *remote, *opts]) == 0
    res = json.loads(capsys.readouterr().out)
    e2e = res["end_to_end_ms"]
    assert set(e2e) == {"patsparse", "tvm_dense_blocked"}  # PyTorch does not run there
    for d in e2e.values():
        assert 0 < d["min"] <= d["median"] <= d["max"]
    assert res["baseline"] == "tvm_dense_blocked" and res["threads"] == 1
    assert res["target"] == expected_target[kind]  # compiled for the device's target
    assert res["device"] == {"target": kind, "tracker": address, "key": key}
    speed = e2e["patsparse"]["speedup_vs_tvm_dense_blocked"]
    assert speed == pytest.approx(
        e2e["tvm_dense_blocked"]["median"] / e2e["patsparse"]["median"], rel=1e-2
    )
    assert e2e["patsparse"]["efficiency"] == pytest.approx(speed / res["flop_reduction"], rel=1e-2)
    assert res["max_abs_error_vs_pytorch"] < 1e-3  # computed on the device
    assert "layers" not in res and res["host_only_skipped"] == ["per-layer table", "peak memory"]
    text = format_bench(res)
    assert f"{kind} device" in text and "vs tvm_dense_blocked" in text and "host only" in text


@pytest.mark.rpc
def test_bench_with_a_key_nobody_serves_exits_2_naming_it(capsys):
    """A tracker that answers but has no server under the key: a clear error before any
    compiling (the device list is the tracker's)."""
    from tvm_ext.rpc.session import Tracker

    with Tracker(port=9521) as tracker:
        remote = ["--target", "arm64", "--tracker", str(tracker.address), "--key", "nobody"]
        assert main(["bench", "digits-cnn", *remote, "--no-logs"]) == 2
    err = capsys.readouterr().err
    assert "'nobody'" in err and "compiling" not in err
