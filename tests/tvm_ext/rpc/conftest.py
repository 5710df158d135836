"""RPC fixtures: a loopback tracker per module and the emulated devices registered at it.

The devices need apt packages (qemu-user-static, mmdebstrap, g++-aarch64-linux-gnu for arm64;
pocl-opencl-icd and pyopencl for adreno); ``.ci/run`` installs them, so in CI these tests
run. Elsewhere they skip, naming what is missing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tvm_ext.rpc.devices import DeviceConfig, EmulatedDevice, missing_for
from tvm_ext.rpc.session import Tracker


def require(kind: str) -> None:
    missing = missing_for(kind)
    if missing:
        pytest.skip(
            f"the emulated {kind} device needs {', '.join(missing)} (.ci/run installs them)"
        )


@pytest.fixture(scope="module")
def tracker():
    with Tracker(port=9400) as t:
        yield t.address


@pytest.fixture
def device_log(tmp_path):
    return tmp_path / "device.log"


def start_device(kind, tracker, log=None, key=None):
    require(kind)
    return EmulatedDevice(DeviceConfig(kind, tracker, key=key), log=log)


@pytest.fixture(scope="module")
def arm64(tracker, tmp_path_factory):
    with start_device("arm64", tracker, log=tmp_path_factory.mktemp("arm64") / "server.log") as dev:
        yield dev


@pytest.fixture(scope="module")
def adreno(tracker, tmp_path_factory):
    log = tmp_path_factory.mktemp("adreno") / "server.log"
    with start_device("adreno", tracker, log=log) as dev:
        yield dev


class OneSparseConv(torch.nn.Module):
    """conv3x3 (pattern+connectivity, 8x) + bias + ReLU, 16 -> 16 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(16, 16, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


@pytest.fixture
def sparse_conv_model():
    from patsparse.schemes import PatternConnectivityScheme

    torch.manual_seed(0)
    model = OneSparseConv().eval()
    with torch.no_grad():
        model.conv.weight.copy_(PatternConnectivityScheme(density=1 / 8).project(model.conv.weight))
    x = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    return model, x


def reference(model, x) -> np.ndarray:
    with torch.no_grad():
        return model(x).numpy()


@pytest.fixture(scope="session")
def rpc_h():
    """Helpers: ``require(kind)``, ``start_device(kind, tracker, log=, key=)``,
    ``reference(model, x)``."""
    from types import SimpleNamespace

    return SimpleNamespace(require=require, start_device=start_device, reference=reference)
