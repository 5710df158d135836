"""LinearAsConv2D: linear layers become 1x1 convs the blocked kernel runs."""

from __future__ import annotations

import numpy as np
import torch

from patsparse.schemes import BlockScheme, UnstructuredScheme
from tvm_ext._compat import relax, tvm
from tvm_ext.passes import BlockedConv2D, LinearAsConv2D


def _linear_module(weight, bias=None, *, weight_as_input=False, relu=True):
    """``main(x[, w])``: x @ W^T (+ b) (+ relu), as the PyTorch importer emits it."""
    bb = relax.BlockBuilder()
    k, c = weight.shape
    x = relax.Var("x", relax.TensorType((2, c), "float32"))
    params = [x]
    w = relax.const(np.ascontiguousarray(weight.T))
    if weight_as_input:
        w = relax.Var("w", relax.TensorType((c, k), "float32"))
        params.append(w)
    with bb.function("main", params):
        with bb.dataflow():
            y = bb.emit(relax.op.matmul(x, w))
            if bias is not None:
                y = bb.emit(relax.op.add(relax.const(bias), y))
            if relu:
                y = bb.emit(relax.op.nn.relu(y))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def _weight(k, c, scheme=None):
    w = torch.randn(k, c, generator=torch.Generator().manual_seed(0))
    return (scheme.project(w) if scheme else w).numpy()


def test_dense_and_block_pruned_linears_run_on_the_blocked_kernel(h, well_formed):
    for weight in (
        _weight(40, 96),
        _weight(48, 96, BlockScheme(density=0.25, block_rows=16)),
        _weight(32, 64, UnstructuredScheme(density=0.1)),  # blocks over channel unions
    ):
        bias = np.linspace(-1, 1, weight.shape[0]).astype("float32")
        before = _linear_module(weight, bias)
        lin, blk = LinearAsConv2D(), BlockedConv2D(verify=True)
        after = tvm.transform.Sequential([lin, blk])(before)
        assert [r.rewritten for r in lin.records] == [True] and lin.records[0].bias
        assert blk.records[0].rewritten and list(blk.records[0].fused) == ["conv2d", "bias_add"]
        ops = h.relax_ops(after)
        assert "relax.matmul" not in ops and ops.count("relax.call_tir") == 1
        x = np.random.default_rng(0).standard_normal((2, weight.shape[1])).astype("float32")
        ref = np.maximum(x @ weight.T + bias, 0)
        np.testing.assert_allclose(h.run_module(after, x), ref, rtol=1e-4, atol=1e-4)
        # the pass alone: reshape -> conv2d 1x1 -> bias -> reshape, same numbers
        alone = LinearAsConv2D()(before)
        assert "relax.nn.conv2d" in h.relax_ops(alone) and "relax.reshape" in h.relax_ops(alone)
        np.testing.assert_allclose(h.run_module(alone, x), ref, rtol=1e-4, atol=1e-4)


def test_leaves_what_the_blocked_kernel_would_not_take(well_formed):
    for mod, why in (
        (_linear_module(np.zeros((32, 64), "float32"), relu=False), "every kernel is zero"),
        (_linear_module(_weight(8, 16), weight_as_input=True), "not a constant"),
    ):
        lin = LinearAsConv2D()
        tvm.ir.assert_structural_equal(lin(mod), mod)
        assert not lin.records[0].rewritten and why in lin.records[0].reason
