"""TopOneAsReduce: ``topk(k=1)`` (``torch.max(x, dim)``) as max / argmax reductions that the
leftover rules schedule (structure, numerics vs PyTorch, indices, what it leaves alone)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tvm_ext._compat import from_exported_program, host_target, relax, tensor, tvm
from tvm_ext.passes.schedule_leftovers import ScheduleLeftovers
from tvm_ext.passes.top_one_as_reduce import TopOneAsReduce
from tvm_ext.pipeline import backend_passes


class SpatialAttention(nn.Module):
    """CBAM's spatial attention: channel max and mean, a 7x7 conv, a sigmoid gate."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([torch.max(x, 1, keepdim=True)[0], x.mean(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.conv(pooled))


class MaxWithIndices(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, indices = x.max(-1)
        low = torch.topk(x, 1, dim=-1, largest=False).values
        return values + low.squeeze(-1), indices


def _import(model, x):
    return from_exported_program(
        torch.export.export(model.eval(), (x,)), keep_params_as_input=False
    )


def _run(mod, x):
    target = host_target()
    leftovers = ScheduleLeftovers(target=target)
    ex = tvm.compile(mod, target=target, relax_pipeline=backend_passes(target, leftovers=leftovers))
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tensor(x.numpy()))
    return [o.numpy() for o in out], {r.name: r.schedule for r in leftovers.records}


def test_channel_max_of_spatial_attention_is_a_scheduled_reduction():
    torch.manual_seed(0)
    model, x = SpatialAttention(), torch.randn(1, 16, 24, 32)
    mod = _import(model, x)
    rewrite = TopOneAsReduce()
    text = rewrite(mod)["main"].script()
    assert rewrite.rewritten == 1
    assert "R.topk(" not in text and "R.max(" in text and "R.argmax(" not in text  # unread
    (out,), rules = _run(mod, x)
    assert None not in rules.values(), rules
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-5, atol=1e-5)


def test_values_and_indices_match_pytorch_ties_included():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 32)
    x[..., 5] = x[..., 9] = 10.0  # a tie along the last axis: the first index wins
    model = MaxWithIndices()
    mod = _import(model, x)
    rewrite = TopOneAsReduce()
    text = rewrite(mod)["main"].script()
    assert rewrite.rewritten == 2 and "R.argmax(" in text and "R.min(" in text
    (values, indices), rules = _run(mod, x)
    assert None not in rules.values(), rules
    with torch.no_grad():
        ref_values, ref_indices = model(x)
    np.testing.assert_allclose(values, ref_values.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(indices, ref_indices.numpy())
    assert (indices == 5).all()


def test_leaves_topk_above_one():
    x = torch.randn(1, 4, 8, 8)
    mod = _import(type("Top2", (nn.Module,), {"forward": lambda s, t: torch.topk(t, 2, 1)[0]})(), x)
    rewrite = TopOneAsReduce()
    assert "R.topk(" in rewrite(mod)["main"].script() and rewrite.rewritten == 0
