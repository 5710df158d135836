"""The ``contiguous_reduce`` leftover rule: global pools and means over the last axes in
vectors of partial sums, outputs in parallel; convs, pool windows and strided means are not
taken."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tvm_ext._compat import from_exported_program, host_target, relax, tensor, tvm
from tvm_ext.passes.schedule_leftovers import ScheduleLeftovers
from tvm_ext.pipeline import backend_passes


class Lambda(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _compile(model, x):
    mod = from_exported_program(torch.export.export(model.eval(), (x,)), keep_params_as_input=False)
    target = host_target()
    leftovers = ScheduleLeftovers(target=target)
    with target:
        lowered = backend_passes(target, leftovers=leftovers)(mod)
    ex = tvm.compile(mod, target=target, relax_pipeline=backend_passes(target))
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tensor(x.numpy()))[0].numpy()
    return out, {r.name: r.schedule for r in leftovers.records}, lowered


@pytest.mark.parametrize(
    "name,model,shape",
    [
        ("global average pool", nn.AdaptiveAvgPool2d(1), (1, 24, 16, 16)),
        ("mean over the last axis, batch 2", Lambda(lambda x: x.mean(-1)), (2, 8, 8, 64)),
        ("mean over the last axes", Lambda(lambda x: x.mean((2, 3))), (1, 16, 32, 32)),
        ("sum over the last axis", Lambda(lambda x: x.sum(-1)), (1, 4, 6, 64)),
    ],
)
def test_takes_contiguous_reductions_and_matches_pytorch(name, model, shape):
    torch.manual_seed(0)
    x = torch.randn(*shape)
    out, rules, lowered = _compile(model, x)
    (func_name,) = [n for n in rules if any(op in n for op in ("pool", "mean", "max", "sum"))]
    assert rules[func_name] == "contiguous_reduce", (name, rules)
    text = lowered[func_name].script()
    assert "T.parallel(" in text and "T.vectorized(" in text  # vector partial sums
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "model,shape",
    [
        (nn.MaxPool2d(3, 2, 1), (1, 8, 32, 32)),  # a window: 9 elements, not contiguous
        (nn.Conv2d(16, 32, 3, padding=1), (1, 16, 16, 16)),  # reads a weight too
        (Lambda(lambda x: x.mean(1)), (1, 16, 8, 32)),  # over channels: strided
        (nn.AdaptiveAvgPool2d(1), (1, 1, 16, 16)),  # 1 output: nothing to share
        (nn.AdaptiveAvgPool2d(1), (1, 32, 7, 7)),  # 49 elements: not whole vectors
    ],
)
def test_leaves_other_reductions_to_other_rules(model, shape):
    torch.manual_seed(0)
    x = torch.randn(*shape)
    out, rules, _ = _compile(model, x)
    assert "contiguous_reduce" not in rules.values(), rules
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-4, atol=1e-4)
