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
    assert "R.nn.conv2d_transpose(" not in text and "conv2d_transpose_phase00" in text
    target = host_target()
    leftovers = ScheduleLeftovers(target=target)
    ex = tvm.compile(mod, target=target, relax_pipeline=backend_passes(target, leftovers=leftovers))
    rules = {r.name: r.schedule for r in leftovers.records}
    phases = [n for n in rules if "_phase" in n]
    assert phases and all(rules[n] == "conv" for n in phases), rules
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tensor(x.numpy()))[0].numpy()
    with torch.no_grad():
        np.testing.assert_allclose(out, layer(x).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel,taps", [(4, {(2, 2)}), (3, {(2, 2), (2, 1), (1, 2), (1, 1)})])
def test_each_phase_does_only_its_own_multiply_adds(kernel, taps):
    """s=2: each phase reads its own taps of the low-resolution input (k=4: 2x2 each, not
    4x4 of a zero-dilated input; k=3: 2x2, 2x1, 1x2, 1x1); parallel and vectorised."""
    layer = nn.ConvTranspose2d(8, 4, kernel, 2, 1, output_padding=kernel % 2)
    _, _, mod = _import(layer, (1, 8, 16, 16))
    target = host_target()
    with target:
        lowered = backend_passes(target)(mod)
    phases = [f for gv, f in lowered.functions_items() if "_phase" in gv.name_hint]
    seen = set()
    for func in phases:
        text = func.script()
        assert "T.parallel(" in text and "T.vectorized(" in text
        kernel_shape = [int(d) for d in func.ty.params[1].shape]
        assert kernel_shape[:2] == [4, 8]
        seen.add(tuple(kernel_shape[2:]))
    assert seen == taps


def test_leaves_what_it_cannot_take():
    """Stride 1, grouped, and kernels shorter than the stride stay for TVM, with the reason
    recorded."""
    for layer, why in [
        (nn.ConvTranspose2d(4, 4, 3, 1, 1), "stride 1"),
        (nn.ConvTranspose2d(4, 4, 4, 2, 1, groups=2), "grouped"),
        (nn.ConvTranspose2d(4, 4, 1, 2), "shorter than its stride"),
    ]:
        _, _, mod = _import(layer, (1, 4, 5, 5))
        rewrite = Conv2DTransposeAsPhases()
        out = rewrite(mod)
        assert "conv2d_transpose(" in _ops(out)
        assert not rewrite.records[0].rewritten and why in rewrite.records[0].reason
