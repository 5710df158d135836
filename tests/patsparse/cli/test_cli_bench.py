"""``patsparse bench`` from the command line: JSON, bad input, tuning logs, remote devices."""

from __future__ import annotations

import json

import pytest

from patsparse.bench import BenchConfig, format_bench, paper_rate
from patsparse.cli import main
from patsparse.core.errors import PatsparseError


def test_bench_cli_json_and_bad_input(capsys):
    args = ["--repeat", "3", "--no-memory", "--no-layers", "--threads", "1", "--clock", "cpu"]
    rc = main(["bench", "digits-cnn", *args, "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["threads"] == 1 and res["config"]["clock"] == "cpu"
    assert res["config"]["verify"] is True  # every engine checked against PyTorch by default
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


def test_bench_no_verify_reaches_the_config():
    from patsparse.cli import build_parser
    from patsparse.cli.bench import bench_config

    parser = build_parser()
    on = bench_config(parser.parse_args(["bench", "digits-cnn"]), "digits-cnn")
    off = bench_config(parser.parse_args(["bench", "digits-cnn", "--no-verify"]), "digits-cnn")
    assert on.verify and not off.verify
