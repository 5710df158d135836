"""Conv2DTransposeAsPhases: strided transposed convs as phase convs over the low-resolution
input (structure, numerics vs PyTorch, what it leaves alone, how the functions are scheduled)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tvm_ext._compat import from_exported_program, host_target, relax, tensor, tvm
from tvm_ext.passes.conv2d_transpose_as_phases import Conv2DTransposeAsPhases
from tvm_ext.passes.schedule_leftovers import ScheduleLeftovers
from tvm_ext.pipeline import backend_passes


def _import(layer: nn.Module, shape):
    torch.manual_seed(0)
    layer = layer.eval()
    x = torch.randn(*shape)
    return (
        layer,
        x,
        from_exported_program(torch.export.export(layer, (x,)), keep_params_as_input=False),
    )


def _ops(mod) -> str:
    return mod["main"].script()


@pytest.mark.parametrize(
    "args,hw",
    [
        ((8, 4, 4, 2, 1), 6),  # DCGAN / U-Net upsampling: k=4, s=2, p=1
        ((8, 4, 3, 2, 1, 1), 6),  # k=3, s=2, output_padding=1 (a phase with fewer taps)
        ((3, 5, 5, 3, 2), 5),  # stride 3
        ((4, 6, (4, 3), (2, 3), (1, 0), (1, 2)), 5),  # per-axis kernel, stride, padding
    ],
)
def test_matches_pytorch_and_runs_as_a_tiled_conv(args, hw):
    layer, x, mod = _import(nn.ConvTranspose2d(*args), (1, args[0], hw, hw + 1))
    rewrite = Conv2DTransposeAsPhases()
    out_mod = rewrite(mod)
    assert [r.rewritten for r in rewrite.records] == [True]
    text = _ops(out_mod)
    assert "conv2d_transpose(" not in text and "conv2d_transpose_phases" in text
    target = host_target()
    leftovers = ScheduleLeftovers(target=target)
    ex = tvm.compile(mod, target=target, relax_pipeline=backend_passes(target, leftovers=leftovers))
    rules = {r.name: r.schedule for r in leftovers.records}
    assert rules["conv2d_transpose_phases"] == "conv", rules
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tensor(x.numpy()))[0].numpy()
    with torch.no_grad():
        np.testing.assert_allclose(out, layer(x).numpy(), rtol=1e-4, atol=1e-4)


def test_the_phase_conv_does_only_the_useful_multiply_adds():
    """k=4, s=2: each phase reads 2x2 taps of the low-resolution input (not 4x4 of a
    zero-dilated one); its schedule is parallel and vectorised."""
    _, _, mod = _import(nn.ConvTranspose2d(8, 4, 4, 2, 1), (1, 8, 16, 16))
    target = host_target()
    with target:
        lowered = backend_passes(target)(mod)
    (phases,) = [f for gv, f in lowered.functions_items() if gv.name_hint.endswith("_phases")]
    text = phases.script()
    assert "T.parallel(" in text and "T.vectorized(" in text
    assert "T.Buffer((T.int64(16), T.int64(8), T.int64(2), T.int64(2))" in text  # 4 phases x 4


def test_leaves_what_it_cannot_take():
    """Stride 1 and grouped transposed convs stay for TVM, with the reason recorded."""
    for layer, why in [
        (nn.ConvTranspose2d(4, 4, 3, 1, 1), "stride 1"),
        (nn.ConvTranspose2d(4, 4, 4, 2, 1, groups=2), "grouped"),
    ]:
        _, _, mod = _import(layer, (1, 4, 5, 5))
        rewrite = Conv2DTransposeAsPhases()
        out = rewrite(mod)
        assert "conv2d_transpose(" in _ops(out)
        assert not rewrite.records[0].rewritten and why in rewrite.records[0].reason
