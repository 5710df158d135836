"""Fixtures of the search tests: a small search space, a shared host measurer, data splits.

Everything measures real compiled models on the host with one TVM thread. The session
measurer memoises by sparsity structure, so a configuration compiled by one test is not
compiled again by the next (subprocess tests compile their own).
"""

from __future__ import annotations

import os

import pytest
import torch
from _search_helpers import SMALL_COMPRESSIONS, SMALL_SCHEMES

os.environ.setdefault("TVM_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def host_measurer():
    from patsparse.compiler.latency import LocalLatency
    from patsparse.search import MemoLatency, TimingConfig

    return MemoLatency(LocalLatency(timing=TimingConfig(number=5, repeat=5, min_repeat_ms=5)))


class WeightCountLatency:
    """A deterministic stand-in for a device: latency proportional to the kept weights.

    For tests of the search's mechanics that compare latencies (the digits CNN compiles to
    ~0.04 ms whatever its sparsity, so real timings of it are within noise of each other).
    """

    key = "test:weight-count"

    def measure(self, model, example):
        from patsparse.search import LatencyMeasurement

        kept = sum(int((p != 0).sum()) for p in model.parameters() if p.dim() > 1)
        ms = kept * 1e-4
        return LatencyMeasurement(
            median_ms=ms,
            min_ms=ms,
            max_ms=ms,
            repeat=1,
            compile_seconds=0.0,
            rewritten_convs=0,
            device=self.key,
        )


@pytest.fixture(scope="session")
def count_measurer():
    return WeightCountLatency()


@pytest.fixture(scope="session")
def search_splits(digits_loaders):
    from patsparse.search import split_train_val

    return split_train_val(digits_loaders[0], seed=0)


@pytest.fixture
def small_space(trained_digits):
    from patsparse.search import SearchSpace, SpaceConfig

    model, _ = trained_digits
    cfg = SpaceConfig(schemes=SMALL_SCHEMES, compressions=SMALL_COMPRESSIONS)
    return model, SearchSpace.from_model(model, cfg)


@pytest.fixture(scope="session")
def digits_checkpoint(_trained_digits, tmp_path_factory):
    """The session's trained dense digits CNN saved as a checkpoint (for subprocesses)."""
    from patsparse.export import save_pruned

    model, _ = _trained_digits
    path = tmp_path_factory.mktemp("search") / "digits-dense.pt"
    return save_pruned(path, model, {}, arch="digits-cnn")
