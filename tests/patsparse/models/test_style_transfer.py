"""The Johnson-like style-transfer network: shapes, an RGB picture in [0, 1] out, typed
errors, and a pruned one compiled by patsparse matching PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from patsparse.compiler import compile_torch
from patsparse.core.errors import DataError
from patsparse.models.style_transfer import StyleTransferNet
from patsparse.pruning.pruners import MagnitudePruner
from patsparse.schemes import PruningPlan
from patsparse.schemes.options import scheme_from_options


def _tiny() -> StyleTransferNet:
    return StyleTransferNet(widths=(4, 8, 16), blocks=1)


def test_picture_in_picture_out():
    torch.manual_seed(0)
    with torch.no_grad():
        y = _tiny()(torch.rand(2, 3, 20, 36))
    assert y.shape == (2, 3, 20, 36)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_shipped_size_has_the_johnson_layers():
    net = StyleTransferNet()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in (convs[0], convs[-1])] == [(9, 9), (9, 9)]
    assert all(c.out_channels % 16 == 0 for c in convs[:-1])
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in net.modules()) == len(convs) - 1
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in net.modules()) == len(convs)


@pytest.mark.parametrize("shape", [(1, 1, 32, 32), (1, 3, 30, 32), (3, 32, 32)])
def test_bad_input_is_a_data_error(shape):
    with pytest.raises(DataError):
        _tiny()(torch.zeros(shape))


@pytest.mark.parametrize("kwargs", [{"widths": (4, 8)}, {"widths": (0, 8, 16)}, {"blocks": -1}])
def test_bad_sizes_are_value_errors(kwargs):
    with pytest.raises(ValueError):
        StyleTransferNet(**kwargs)


@pytest.mark.parametrize(
    "scheme", ["column", pytest.param("block-pattern", marks=pytest.mark.slow)]
)
def test_pruned_model_compiles_scheduled_and_matches_pytorch(scheme):
    torch.manual_seed(0)
    model = _tiny()
    pruner = MagnitudePruner(PruningPlan(default=scheme_from_options(scheme, 4.0)))
    pruner.prepare(model)
    pruner.step()
    pruner.squash_mask()
    x = torch.rand(1, 3, 32, 32)
    compiled = compile_torch(model.eval(), x)
    assert [r.name for r in compiled.schedule_records if r.schedule is None] == []
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(compiled(x.numpy()), ref, rtol=1e-4, atol=1e-4)
