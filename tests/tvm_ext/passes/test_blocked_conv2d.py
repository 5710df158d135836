"""BlockedConv2D: the convs the pattern pass leaves, on the register-blocked kernel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patsparse.schemes import BlockScheme
from tvm_ext._compat import tvm
from tvm_ext.layout import Rejection, SparseConvLayout, analyze_blocked_weight
from tvm_ext.passes import BlockedConv2D, PatternSparseConv2D


def _weight(shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).numpy()


def _block_pruned(shape, density, seed=0):
    return (
        BlockScheme(density=density, block_rows=16)
        .project(torch.from_numpy(_weight(shape, seed)))
        .numpy()
    )


CASES = [
    # (name, weight, input shape, stride, padding, bias, residual, relu)
    (
        "dense 3x3, 20 filters (padded lanes)",
        _weight((20, 6, 3, 3)),
        (1, 6, 9, 7),
        (1, 1),
        (1, 1, 1, 1),
        True,
        True,
        True,
    ),
    (
        "dense 1x1 stride 2",
        _weight((32, 24, 1, 1)),
        (1, 24, 9, 9),
        (2, 2),
        (0, 0, 0, 0),
        False,
        False,
        True,
    ),
    (
        "7x7 stem stride 2",
        _weight((16, 3, 7, 7)),
        (1, 3, 19, 19),
        (2, 2),
        (3, 3, 3, 3),
        True,
        False,
        True,
    ),
    (
        "block-pruned 1x1",
        _block_pruned((48, 64, 1, 1), 0.25),
        (1, 64, 5, 5),
        (1, 1),
        (0, 0, 0, 0),
        True,
        True,
        False,
    ),
    (
        "dense 5x3, asymmetric pad",
        _weight((16, 4, 5, 3)),
        (1, 4, 8, 6),
        (1, 2),
        (2, 1, 1, 0),
        False,
        False,
        False,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_rewrites_and_matches_dense_conv(h, well_formed, case):
    _, w, xs, stride, pad, with_bias, with_res, relu = case
    k = w.shape[0]
    bias = np.linspace(-1, 1, k).astype("float32") if with_bias else None
    before = h.conv_module(
        xs, w, stride=stride, padding=pad, bias=bias, residual=with_res, relu=relu
    )
    p = BlockedConv2D(verify=True)
    after = p(before)
    rec = p.records[0]
    assert rec.rewritten, rec.reason
    assert rec.kind == "block" and rec.function.startswith("blocked_conv2d_")
    assert rec.max_abs_error is not None and rec.max_abs_error < 1e-3
    expect_fused = [
        "conv2d",
        *(["bias_add"] if with_bias else []),
        *(["residual_add"] if with_res else []),
        *(["relu"] if relu else []),
    ]
    assert list(rec.fused) == expect_fused
    # structure: the conv and everything fused are gone, one call into the new PrimFunc
    ops = h.relax_ops(after)
    assert "relax.nn.conv2d" not in ops and "relax.nn.relu" not in ops
    assert ops.count("relax.call_tir") == 1
    script = after[rec.function].script()
    assert "ps_conv_all" in script and "T.vectorized" in script
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs).astype("float32")
    args = [x]
    ref_res = None
    if with_res:
        oh = (xs[2] + pad[0] + pad[2] - w.shape[2]) // stride[0] + 1
        ow = (xs[3] + pad[1] + pad[3] - w.shape[3]) // stride[1] + 1
        ref_res = rng.standard_normal((1, k, oh, ow)).astype("float32")
        args.append(ref_res)
    ref = h.torch_reference(
        x, w, stride=stride, padding=pad, bias=bias, residual=ref_res, relu=relu
    )
    np.testing.assert_allclose(h.run_module(after, *args), ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(h.run_module(before, *args), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("dilation", [2, 3])
@pytest.mark.parametrize("stride", [1, 2])
def test_dilated_dense_convs_match_pytorch(h, well_formed, size, dilation, stride):
    """Dense 3x3 and 5x5 with dilation 2 and 3 ("same" padding at stride 1), stride 1 and 2:
    one blocked kernel, its taps the kernel offsets times the dilation."""
    w = _weight((16, 6, size, size), seed=size + dilation)
    pad = (dilation * (size - 1) // 2,) * 4
    xs = (1, 6, 17, 14)
    mod = h.conv_module(
        xs, w, stride=(stride, stride), padding=pad, dilation=(dilation, dilation), relu=True
    )
    p = BlockedConv2D(verify=True)
    after = p(mod)
    rec = p.records[0]
    assert rec.rewritten and rec.kind == "block", rec.reason
    assert rec.dilation == (dilation, dilation) and rec.max_abs_error < 1e-3
    assert h.relax_ops(after).count("relax.call_tir") == 1
    assert "relax.nn.conv2d" not in h.relax_ops(after)
    x = np.random.default_rng(0).standard_normal(xs).astype("float32")
    ref = h.torch_reference(
        x, w, stride=(stride,) * 2, padding=pad, dilation=(dilation,) * 2, relu=True
    )
    np.testing.assert_allclose(h.run_module(after, x), ref, rtol=1e-4, atol=1e-4)


def test_block_pruned_layout_skips_pruned_channels_and_round_trips():
    w = _block_pruned((48, 64, 1, 1), 0.25)
    lay = analyze_blocked_weight(w)
    assert isinstance(lay, SparseConvLayout)
    assert lay.kind == "block" and lay.block == 16 and lay.rows == 3
    # each block of 16 filters keeps 16 of 64 input channels: 16 slots, not 64
    assert lay.values[0].shape == (3, 16, 1, 16)
    assert lay.kept_kernels == 48 * 16
    np.testing.assert_array_equal(lay.to_dense(), w)
    dense = _weight((20, 3, 7, 7))
    lay = analyze_blocked_weight(dense)
    assert isinstance(lay, SparseConvLayout) and lay.rows == 2 and len(lay.taps(0)) == 49
    np.testing.assert_array_equal(lay.to_dense(), dense)
    assert sorted(lay.inverse.tolist()) == sorted(set(lay.inverse.tolist()))


def test_rejections_name_the_problem(h):
    # zeros inside kept kernels (e.g. exact zeros of a dense model) are computed, not refused
    holes = _weight((16, 8, 3, 3))
    holes[0, 0, 1, 1] = holes[3, 2, 0, 0] = 0.0
    lay = analyze_blocked_weight(holes)
    assert isinstance(lay, SparseConvLayout) and lay.kept_kernels == 16 * 8
    np.testing.assert_array_equal(lay.to_dense(), holes)
    rej = analyze_blocked_weight(np.zeros((4, 4, 3, 3), "float32"))
    assert isinstance(rej, Rejection) and "every kernel is zero" in rej.reason


def test_scattered_connectivity_runs_as_blocks_of_channel_unions():
    """Every filter keeps its own channels (per-kernel connectivity): filters are clustered
    so each block computes a small union of channels, never more than the dense conv."""
    rng = np.random.default_rng(0)
    w = np.zeros((32, 8, 3, 3), "float32")
    for f in rng.permutation(32):  # filters of two channel groups, interleaved
        group = 4 * (f % 2)
        keep = group + rng.choice(4, size=int(rng.integers(1, 4)), replace=False)
        w[f, keep] = rng.standard_normal((len(keep), 3, 3))
    lay = analyze_blocked_weight(w)
    assert isinstance(lay, SparseConvLayout)
    np.testing.assert_array_equal(lay.to_dense(), w)
    # two blocks, each over one group's 4 channels (not all 8)
    assert lay.rows == 2 and lay.channels[0].shape == (2, 4)
    assert {frozenset(r.tolist()) for r in lay.channels[0]} == {
        frozenset(range(4)),
        frozenset(range(4, 8)),
    }
    diagonal = np.zeros((16, 16, 1, 1), "float32")
    diagonal[np.arange(16), np.arange(16)] = 1.0  # 16 filters, 16 distinct kept channels
    lay = analyze_blocked_weight(diagonal)
    assert isinstance(lay, SparseConvLayout) and lay.rows == 1
    np.testing.assert_array_equal(lay.to_dense(), diagonal)


def test_per_kernel_connectivity_layer_is_blocked_and_exact(h, well_formed):
    from patsparse.schemes import ConnectivityScheme

    w = ConnectivityScheme(density=0.25).project(torch.from_numpy(_weight((32, 32, 3, 3))))
    mod = h.conv_module((1, 32, 10, 10), w.numpy(), relu=True)
    p = BlockedConv2D(verify=True)
    after = p(mod)
    assert p.records[0].rewritten, p.records[0].reason
    assert "relax.nn.conv2d" not in h.relax_ops(after)
    x = np.random.default_rng(1).standard_normal((1, 32, 10, 10)).astype("float32")
    ref = torch.relu(torch.nn.functional.conv2d(torch.from_numpy(x), w, padding=1)).numpy()
    np.testing.assert_allclose(h.run_module(after, x), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("weight_as_input", "groups", "why"),
    [(True, 1, "function input"), (False, 4, "depthwise")],
)
def test_leaves_what_it_cannot_take_unchanged(h, well_formed, weight_as_input, groups, why):
    w = _weight((4, 1, 3, 3)) if groups == 4 else _weight((8, 4, 3, 3))
    mod = h.conv_module((1, 4, 6, 6), w, groups=groups, weight_as_input=weight_as_input)
    p = BlockedConv2D()
    tvm.ir.assert_structural_equal(p(mod), mod)
    assert not p.records[0].rewritten and why in p.records[0].reason


def test_pattern_layers_first_then_blocked_for_the_rest(h, well_formed):
    """In a pipeline the pattern pass takes the pattern-sparse conv, the blocked pass the rest."""
    from tvm_ext._compat import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 8, 6, 6), "float32"))
    sparse = h.pattern_weight(16, 8, density=0.2)
    dense = _weight((16, 16, 1, 1))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, relax.const(sparse), padding=(1, 1)))
            y = bb.emit(relax.op.nn.conv2d(y, relax.const(dense)))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    mod = bb.get()
    ps, bl = PatternSparseConv2D(), BlockedConv2D()
    after = tvm.transform.Sequential([ps, bl])(mod)
    assert [r.rewritten for r in ps.records] == [True, False]
    assert [r.rewritten for r in bl.records] == [True]
    names = [gv.name_hint for gv in after.get_global_vars()]
    assert any(n.startswith("pattern_sparse_conv2d_") for n in names)
    assert any(n.startswith("blocked_conv2d_") for n in names)
    xv = np.random.default_rng(2).standard_normal((1, 8, 6, 6)).astype("float32")
    np.testing.assert_allclose(h.run_module(after, xv), h.run_module(mod, xv), rtol=1e-4, atol=1e-4)


def test_bad_option_is_a_clear_error():
    with pytest.raises(ValueError, match="positive int"):
        BlockedConv2D(block=0)


def test_thin_convs_are_left_to_the_pixel_vectorised_leftover_schedule(h, well_formed):
    """3 output channels would fill 3 of 16 lanes: the conv stays for ScheduleLeftovers,
    whose conv rule vectorises over output pixels (9x9 32->3 at 256²: 9.5 ms against 25.9 on
    the blocked kernel and 24.7 in PyTorch, BENCHMARKS.md)."""
    from tvm_ext._compat import host_target, relax, tensor
    from tvm_ext.passes.schedule_leftovers import ScheduleLeftovers
    from tvm_ext.pipeline import pattern_sparse_pipeline

    w = _weight((3, 8, 9, 9))
    before = h.conv_module((1, 8, 64, 64), w, padding=(4, 4, 4, 4))
    small = h.conv_module((1, 8, 12, 12), w, padding=(4, 4, 4, 4))
    kept = BlockedConv2D(block=16)
    kept(small)
    assert kept.records[0].rewritten  # small maps keep the blocked kernel
    p = BlockedConv2D(block=16)
    tvm.ir.assert_structural_equal(p(before), before)
    assert not p.records[0].rewritten and "thin conv" in p.records[0].reason
    assert "3 of 16 lanes" in p.records[0].reason
    target = host_target()
    leftovers = ScheduleLeftovers()
    ex = tvm.compile(
        before, target=target, relax_pipeline=pattern_sparse_pipeline(target, leftovers=leftovers)
    )
    assert [r.schedule for r in leftovers.records] == ["conv"]
    x = np.random.default_rng(3).standard_normal((1, 8, 64, 64)).astype("float32")
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tensor(x, tvm.cpu())).numpy()
    ref = h.torch_reference(x, w, stride=(1, 1), padding=(4, 4, 4, 4))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
