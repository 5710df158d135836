"""Latency of compiled search candidates on the host and over a loopback RPC tracker."""

from __future__ import annotations

import pytest
import torch

from patsparse.compiler.latency import CompiledLibrary, LocalLatency, RPCLatency
from patsparse.core.errors import (
    DeviceKeyMissingError,
    RemoteError,
    SearchConfigError,
    TrackerUnreachableError,
)
from patsparse.models import build_model
from patsparse.schemes import PruningPlan, make_scheme
from patsparse.search import LatencyMeasurer, MemoLatency, TimingConfig, structure_model

X = torch.zeros(1, 1, 8, 8)


@pytest.fixture(scope="module")
def host_measurer():
    """The host measurer (one TVM thread unless TVM_NUM_THREADS says otherwise), memoised by
    structure."""
    return MemoLatency(LocalLatency(timing=TimingConfig(number=5, repeat=5, min_repeat_ms=5)))


def _pc8() -> PruningPlan:
    return PruningPlan(default=make_scheme("pattern+connectivity", density=1 / 8))


def test_host_latency_is_positive_and_sparse_beats_dense(host_measurer):
    assert isinstance(host_measurer, LatencyMeasurer)
    model = build_model("digits-cnn")
    dense = host_measurer.measure(structure_model(model, PruningPlan(default=None)), X)
    sparse = host_measurer.measure(structure_model(model, _pc8()), X)
    assert dense.median_ms > 0 and sparse.median_ms > 0
    assert dense.min_ms <= dense.median_ms <= dense.max_ms
    assert sparse.rewritten_convs == 2 and dense.rewritten_convs == 0
    # The digits CNN compiles to ~0.04 ms pruned or not (fixed costs), so speed is compared
    # where the work dominates: SR-net on a 64x64 image, block-pattern 8x runs ~4.5x faster
    # than dense here (both on the blocked kernel: the margin is the sparsity alone).
    sr, x = build_model("sr-net"), torch.zeros(1, 1, 64, 64)
    bp8 = PruningPlan(default=make_scheme("block-pattern", density=1 / 8))
    sr_dense = host_measurer.measure(structure_model(sr, PruningPlan(default=None)), x)
    sr_sparse = host_measurer.measure(structure_model(sr, bp8), x)
    assert sr_sparse.rewritten_convs > 0
    assert sr_sparse.median_ms < sr_dense.median_ms
    assert host_measurer.key.startswith("local:llvm")


def test_dead_tracker_is_a_typed_error():
    measurer = RPCLatency("127.0.0.1:1", "nothing-here")
    with pytest.raises(TrackerUnreachableError, match="rpc_tracker"):
        measurer.check()
    with pytest.raises(SearchConfigError, match="HOST:PORT"):
        RPCLatency("localhost", "key")
    with pytest.raises(SearchConfigError, match="repeat >= 1"):
        LocalLatency(timing=TimingConfig(repeat=0))


def test_loopback_rpc_measurement():
    """A tracker and a host RPC server (TVM's own, on 127.0.0.1): measure over RPC."""
    from tvm_ext._compat import RPCServer, RPCTracker

    tracker = RPCTracker(host="127.0.0.1", port=9190, port_end=9290, silent=True)
    server = None
    try:
        server = RPCServer(
            host="127.0.0.1",
            port=9300,
            port_end=9400,
            key="patsparse-test",
            tracker_addr=("127.0.0.1", tracker.port),
            silent=True,
        )
        address = f"127.0.0.1:{tracker.port}"
        timing = TimingConfig(number=5, repeat=3, min_repeat_ms=5)
        measurer = RPCLatency(address, "patsparse-test", timing=timing)
        import time

        deadline = time.time() + 30
        while True:  # the server registers with the tracker asynchronously
            try:
                measurer.check()
                break
            except RemoteError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        model = structure_model(build_model("digits-cnn"), _pc8())
        result = measurer.measure(model, X)
        assert result.median_ms > 0 and result.rewritten_convs == 2
        assert result.device.startswith("rpc:patsparse-test:")
        # the search's path: a library compiled in a worker process, uploaded as it is
        with measurer.compile_pool() as pool:
            lib = measurer.submit_compile(pool, model, X).result()
        assert isinstance(lib, CompiledLibrary) and lib.rewritten_convs == 2
        assert measurer.time(lib, X).median_ms > 0
        with pytest.raises(DeviceKeyMissingError, match="no RPC server is registered"):
            RPCLatency(address, "other-device").check()
    finally:
        if server is not None:
            server.terminate()
        tracker.terminate()


@pytest.mark.tuning
@pytest.mark.slow
def test_candidates_tuned_with_a_small_budget(tmp_path):
    """``tune_trials``: each candidate's tasks are tuned into the logs, then applied."""
    measurer = LocalLatency(
        logs=tmp_path, tune_trials=2, timing=TimingConfig(number=5, repeat=3, min_repeat_ms=5)
    )
    assert not measurer.overlappable and "+tune:2" in measurer.key
    model = structure_model(build_model("digits-cnn"), _pc8())
    result = measurer.measure(model, X)
    assert result.median_ms > 0 and result.rewritten_convs == 2
    assert (tmp_path / "database_tuning_record.json").stat().st_size > 0


def test_make_measurer_picks_host_or_rpc():
    from patsparse.compiler.latency import make_measurer

    assert isinstance(make_measurer(), LocalLatency)
    rpc = make_measurer(tracker="127.0.0.1:9190", key="phone")
    assert isinstance(rpc, RPCLatency) and rpc.key.startswith("rpc:phone:")
    with pytest.raises(SearchConfigError, match="--key"):
        make_measurer(tracker="127.0.0.1:9190")
    with pytest.raises(SearchConfigError, match="tunes on this machine"):
        make_measurer(tracker="127.0.0.1:9190", key="phone", tune_trials=2)
