"""``BenchConfig``: remote options checked before anything runs; the block size."""

from __future__ import annotations

import pytest

from patsparse.bench import BenchConfig
from patsparse.core.errors import PatsparseError


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
