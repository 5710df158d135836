"""ChannelNormNCHW: permute -> LayerNorm(C) -> permute back becomes one norm over axis 1."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tvm_ext._compat import from_exported_program, host_target, relax, tensor, tvm
from tvm_ext.passes.channel_norm_nchw import ChannelNormNCHW
from tvm_ext.passes.schedule_leftovers import ScheduleLeftovers
from tvm_ext.pipeline import backend_passes


class PermutedLayerNorm(nn.Module):
    def __init__(self, channels: int, *, back: bool = True) -> None:
        super().__init__()
        self.ln, self.back = nn.LayerNorm(channels), back
        torch.manual_seed(1)
        for p in self.ln.parameters():
            p.data = torch.rand(p.shape) + 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln(x.permute(0, 2, 3, 1))
        return y.permute(0, 3, 1, 2) if self.back else y


def _import(model, shape=(1, 8, 5, 16)):
    torch.manual_seed(0)
    x = torch.randn(*shape) * 3 + 1
    return x, from_exported_program(
        torch.export.export(model.eval(), (x,)), keep_params_as_input=False
    )


def test_the_transposes_are_gone_and_the_norm_is_over_axis_1():
    _, mod = _import(PermutedLayerNorm(8))
    rewrite = ChannelNormNCHW()
    text = rewrite(mod)["main"].script()
    assert rewrite.rewritten == 1
    assert "permute_dims" not in text and "axes=[1]" in text


def test_matches_pytorch_and_takes_the_strided_reduce_rule():
    model = PermutedLayerNorm(8)
    x, mod = _import(model)
    target = host_target()
    leftovers = ScheduleLeftovers(target=target)
    ex = tvm.compile(mod, target=target, relax_pipeline=backend_passes(target, leftovers=leftovers))
    assert [(r.schedule) for r in leftovers.records] == ["strided_reduce"]
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tensor(x.numpy()))[0].numpy()
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-4, atol=1e-4)


def test_a_channels_last_result_is_left_alone():
    """Without the permute back the output is NHWC: nothing to rewrite."""
    _, mod = _import(PermutedLayerNorm(8, back=False))
    rewrite = ChannelNormNCHW()
    text = rewrite(mod)["main"].script()
    assert rewrite.rewritten == 0 and "permute_dims" in text
