"""ThinSparseConv2D: pruned thin convs computed over their kept weight columns (structure,
numerics vs PyTorch with the pads / upsampling / dilation / stride they take, what it leaves
alone, how the function is fused and scheduled)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tvm_ext._compat import from_exported_program, host_target, relax, tensor, tvm
from tvm_ext.passes.schedule_leftovers import ScheduleLeftovers
from tvm_ext.passes.thin_sparse_conv2d import ThinSparseConv2D
from tvm_ext.pipeline import backend_passes
from tvm_ext.te.conv_spec import ConvGeometry
from tvm_ext.te.thin_conv import kept_columns


def _column_pruned(conv: nn.Conv2d, keep: float, seed: int = 0) -> nn.Conv2d:
    """Zero all but ``keep`` of the (input channel, tap) columns, the same in every filter
    (what block pruning does to a thin conv)."""
    gen = torch.Generator().manual_seed(seed)
    _, c, kh, kw = conv.weight.shape
    mask = torch.rand(c, kh, kw, generator=gen) < keep
    with torch.no_grad():
        conv.weight.mul_(mask[None].float())
    return conv


def _import(model: nn.Module, x: torch.Tensor):
    """Exported with ``aten.pad`` kept whole, so pads import as ``relax.nn.pad`` (as
    ``patsparse.compiler.import_torch`` does; decomposed, they become gathers)."""
    table = torch.export.default_decompositions()
    table.pop(torch.ops.aten.pad.default, None)
    exported = torch.export.export(model.eval(), (x,)).run_decompositions(table)
    return from_exported_program(exported, keep_params_as_input=False, run_ep_decomposition=False)


def _compile(mod):
    target = host_target()
    leftovers = ScheduleLeftovers(target=target)
    thin = ThinSparseConv2D(target=target)
    ex = tvm.compile(
        mod, target=target, relax_pipeline=backend_passes(target, leftovers=leftovers, thin=thin)
    )
    return relax.VirtualMachine(ex, tvm.cpu()), thin, leftovers


CASES = {
    "reflect pad + 9x9 + tanh": (
        lambda: nn.Sequential(
            nn.ReflectionPad2d(4), _column_pruned(nn.Conv2d(8, 3, 9), 0.15), nn.Tanh()
        ),
        (1, 8, 70, 66),
        ("reflect_pad", "conv2d"),
    ),
    "replicate pad + 3x3": (
        lambda: nn.Sequential(nn.ReplicationPad2d(1), _column_pruned(nn.Conv2d(16, 2, 3), 0.3)),
        (1, 16, 64, 72),
        ("replicate_pad", "conv2d"),
    ),
    "nearest x2 + zero-padded 3x3": (
        lambda: nn.Sequential(
            nn.Upsample(scale_factor=2), _column_pruned(nn.Conv2d(16, 3, 3, padding=1), 0.2)
        ),
        (1, 16, 40, 40),
        ("upsample_nearest2", "conv2d"),
    ),
    "dilated 5x5, batch 2": (
        lambda: _column_pruned(nn.Conv2d(8, 1, 5, padding=4, dilation=2), 0.25),
        (2, 8, 64, 64),
        ("conv2d",),
    ),
    "stride 2, no bias": (
        lambda: _column_pruned(nn.Conv2d(8, 4, 3, stride=2, padding=1, bias=False), 0.3),
        (1, 8, 130, 132),
        ("conv2d",),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_matches_pytorch_over_kept_columns_only(case):
    make, shape, fused = CASES[case]
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(*shape)
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    w = conv.weight.detach().numpy()
    kept = int((w != 0).any(0).sum())
    vm, thin, leftovers = _compile(_import(model, x))
    (rec,) = thin.records
    assert rec.rewritten and rec.fused == fused
    assert (rec.kept_columns, rec.columns) == (kept, w[0].size)
    # the pad / upsampling runs inside the conv's function, the bias and tanh fused after it
    rules = {r.name: r.schedule for r in leftovers.records}
    (name,) = [n for n in rules if "thin_sparse_conv2d" in n]
    assert rules[name] == "conv" and not [n for n in rules if "pad" in n or "resize" in n]
    out = vm["main"](tensor(x.numpy()))[0].numpy()
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_the_function_reduces_over_kept_columns_in_vectors():
    model = _column_pruned(nn.Conv2d(32, 3, 9, padding=4), 0.125)
    x = torch.randn(1, 32, 64, 64)
    target = host_target()
    with target:
        lowered = backend_passes(target)(_import(model, x))
    (func,) = [f for gv, f in lowered.functions_items() if "thin_sparse_conv2d" in gv.name_hint]
    kept = int((model.weight != 0).any(0).sum())
    shapes = [[int(d) for d in p.shape] for p in func.ty.params if hasattr(p, "shape")]
    assert [3, kept] in shapes and [kept] in shapes  # the weight and the column tables
    text = func.script()
    assert "T.parallel(" in text and "T.vectorized(" in text


def test_leaves_what_it_should_not_take_with_the_reason():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(4, 3, 3, padding=1),  # thin but dense: every column kept
        _column_pruned(nn.Conv2d(3, 32, 3, padding=1), 0.2),  # 32 outputs: not thin
        _column_pruned(nn.Conv2d(32, 3, 3, padding=1), 0.2),  # thin, pruned: rewritten
    ).eval()
    x = torch.randn(1, 4, 64, 64)
    vm, thin, _ = _compile(_import(model, x))
    assert [(r.weight_shape, r.rewritten) for r in thin.records] == [
        ((3, 4, 3, 3), False),
        ((3, 32, 3, 3), True),
    ]
    assert "36 of 36 weight columns kept" in thin.records[0].reason
    out = vm["main"](tensor(x.numpy()))[0].numpy()
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-4, atol=1e-5)
    # small maps stay on the blocked kernel: no record at all
    small = _column_pruned(nn.Conv2d(32, 3, 3, padding=1), 0.2)
    _, thin_small, _ = _compile(_import(small, torch.randn(1, 32, 16, 16)))
    assert thin_small.records == []


def test_kept_columns_lists_each_nonzero_column_once_with_dilated_offsets():
    w = np.zeros((2, 3, 3, 3), dtype=np.float32)
    w[0, 1, 0, 2] = 1.0
    w[1, 1, 0, 2] = 2.0  # the same column in the other filter
    w[1, 2, 2, 0] = 3.0
    geometry = ConvGeometry(in_shape=(1, 3, 8, 8), stride=(1, 1), padding=(2,) * 4, dilation=(2, 2))
    kept = kept_columns(w, geometry)
    assert kept.count == 2
    assert kept.channel.tolist() == [1, 2]
    assert kept.dy.tolist() == [0, 4] and kept.dx.tolist() == [4, 0]
    np.testing.assert_array_equal(kept.weight, [[1.0, 0.0], [2.0, 3.0]])
