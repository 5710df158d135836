"""Configs of the RPC pieces: validation and JSON round trips (no tracker needed)."""

from __future__ import annotations

import pytest

from tvm_ext.rpc.devices import DeviceConfig
from tvm_ext.rpc.runner import RemoteRunnerConfig
from tvm_ext.rpc.session import TrackerAddress


def test_device_config_defaults_and_round_trip():
    cfg = DeviceConfig("arm64", TrackerAddress("127.0.0.1", 9190))
    assert cfg.resolved_key == "arm64-qemu" and cfg.host == "127.0.0.1"
    assert DeviceConfig("adreno", TrackerAddress()).resolved_key == "adreno-pocl"
    assert DeviceConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="unknown emulated device 'riscv'"):
        DeviceConfig("riscv", TrackerAddress())


def test_runner_config_validates_and_round_trips():
    cfg = RemoteRunnerConfig(TrackerAddress("10.0.0.5", 9190), "android", queue_timeout=5)
    assert RemoteRunnerConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="mode"):
        RemoteRunnerConfig(TrackerAddress(), "k", mode="cuda")
    with pytest.raises(ValueError, match="timeouts"):
        RemoteRunnerConfig(TrackerAddress(), "k", queue_timeout=-1)
