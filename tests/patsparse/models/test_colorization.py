"""The Iizuka-like colorization network: shapes, bounded chroma, the global branch's
reach, typed errors, and a pruned one compiled by patsparse matching PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patsparse.compiler import compile_torch
from patsparse.core.errors import DataError
from patsparse.models.colorization import ColorizationNet
from patsparse.pruning.pruners import MagnitudePruner
from patsparse.schemes import PruningPlan
from patsparse.schemes.options import scheme_from_options


def test_lightness_in_full_resolution_chroma_out():
    torch.manual_seed(0)
    with torch.no_grad():
        y = ColorizationNet(width=4)(torch.randn(2, 1, 24, 40))
    assert y.shape == (2, 2, 24, 40)
    assert float(y.abs().max()) <= 0.5


def test_global_branch_sees_the_whole_picture():
    """A change far outside the local receptive field still changes the output (only the
    global branch carries it there)."""
    torch.manual_seed(0)
    net = ColorizationNet(width=4).eval()
    x = torch.randn(1, 1, 96, 96)
    x2 = x.clone()
    x2[..., 80:, 80:] += 3.0
    with torch.no_grad():
        d = (net(x) - net(x2))[..., :8, :8].abs().max()
    assert float(d) > 0


@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (1, 1, 30, 32), (1, 32, 32)])
def test_bad_input_is_a_data_error(shape):
    with pytest.raises(DataError):
        ColorizationNet(width=4)(torch.zeros(shape))


def test_width_must_be_positive():
    with pytest.raises(ValueError):
        ColorizationNet(width=0)


@pytest.mark.parametrize(
    "scheme", ["pattern+connectivity", pytest.param("block-pattern", marks=pytest.mark.slow)]
)
def test_pruned_model_compiles_scheduled_and_matches_pytorch(scheme):
    torch.manual_seed(0)
    model = ColorizationNet(width=4)
    pruner = MagnitudePruner(PruningPlan(default=scheme_from_options(scheme, 4.0)))
    pruner.prepare(model)
    pruner.step()
    pruner.squash_mask()
    x = torch.randn(1, 1, 32, 32)
    compiled = compile_torch(model.eval(), x)
    assert [r.name for r in compiled.schedule_records if r.schedule is None] == []
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(compiled(x.numpy()), ref, rtol=1e-4, atol=1e-4)
