"""Shared flags: the device options of ``tune``/``compile`` and defaults read off the
configs."""

from __future__ import annotations

import pytest

from patsparse.bench.config import BenchConfig
from patsparse.cli import build_parser, main
from patsparse.cli.bench import bench_config
from patsparse.cli.options import default_of


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tune", "digits-cnn", "--target", "arm64", "--trials", "2"], "--tracker HOST:PORT"),
        (["tune", "digits-cnn", "--target", "arm64", "--tracker", "127.0.0.1:1"], "--key"),
        (
            ["compile", "digits-cnn", "--target", "adreno", "--tracker", "127.0.0.1:1"],
            "OpenCL runtime",
        ),
    ],
)
def test_remote_target_without_device_is_a_clear_error(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bench_flags_default_to_bench_configs_defaults():
    """``patsparse bench MODEL`` measures what ``BenchConfig(model=MODEL)`` describes."""
    args = build_parser().parse_args(["bench", "digits-cnn"])
    assert bench_config(args, "digits-cnn") == BenchConfig(model="digits-cnn")
    for name in ("scheme", "compression", "block_size", "others", "trials", "repeat", "clock"):
        assert getattr(args, name) == default_of(BenchConfig, name)
    no_logs = build_parser().parse_args(["bench", "digits-cnn", "--no-logs"])
    assert bench_config(no_logs, "digits-cnn").logs_root is None


def test_bench_logs_root_is_the_compilers():
    from patsparse.compiler.tune import DEFAULT_LOG_ROOT

    assert BenchConfig(model="digits-cnn").logs_root == str(DEFAULT_LOG_ROOT)


def test_default_of_names_a_missing_field():
    assert default_of(BenchConfig, "repeat") == 15
    with pytest.raises(KeyError, match="no field 'model'"):
        default_of(BenchConfig, "model")  # required: no default
