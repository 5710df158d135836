"""``compile_blocked_only``: a pruned model with none of its convs on the pattern kernels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from patsparse.compiler.compile import compile_torch
from patsparse.compiler.engines import compile_blocked_only
from patsparse.pruning.pruners import MagnitudePruner
from patsparse.schemes import PruningPlan, scheme_from_options


@pytest.mark.parametrize("scheme", ["pattern+connectivity", "block-pattern"])
def test_no_conv_on_the_pattern_kernels_and_the_same_outputs(scheme):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1)
    ).eval()
    plan = PruningPlan(default=scheme_from_options(scheme, 4.0), skip_first_conv=False)
    pruner = MagnitudePruner(plan)
    pruner.prepare(model)
    pruner.step()
    pruner.squash_mask()
    x = torch.randn(1, 16, 8, 8)
    with_patterns = compile_torch(model, x)
    assert any(r.rewritten for r in with_patterns.records)
    blocked = compile_blocked_only(model, x, None)
    assert not any(r.rewritten for r in blocked.records)
    assert sum(r.rewritten for r in blocked.blocked_records) == 2
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(blocked(x.numpy()), ref, atol=1e-4)
