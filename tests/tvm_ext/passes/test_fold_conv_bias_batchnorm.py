from __future__ import annotations

import numpy as np

from tvm_ext._compat import relax, tvm
from tvm_ext.passes import FoldConvBiasBatchNorm


def _module(weight, bias, bn):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, weight.shape[1], 6, 6), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, relax.const(weight), padding=1))
            y = bb.emit(relax.op.add(y, relax.const(bias.reshape(1, -1, 1, 1))))
            t = bb.emit(
                relax.op.nn.batch_norm(
                    y, *[relax.const(a) for a in bn], axis=1, epsilon=1e-5, training=False
                )
            )
            out = bb.emit_output(bb.emit(relax.TupleGetItem(t, 0)))
        bb.emit_func_output(out)
    return bb.get()


def test_bn_after_biased_conv_folds_and_matches(h, well_formed):
    rng = np.random.default_rng(0)
    k = 8
    weight = h.pattern_weight(k, 4, density=0.2)
    bias = rng.standard_normal(k).astype("float32")
    bn = [
        rng.uniform(0.5, 1.5, k).astype("float32"),
        rng.uniform(-0.2, 0.2, k).astype("float32"),
        rng.uniform(-0.5, 0.5, k).astype("float32"),
        rng.uniform(0.5, 2.0, k).astype("float32"),
    ]
    before = _module(weight, bias, bn)
    fold = FoldConvBiasBatchNorm()
    after = fold(before)
    assert fold.folded == 1
    ops = h.relax_ops(after)
    assert "relax.nn.batch_norm" not in ops
    assert ops.count("relax.nn.conv2d") == 1 and ops.count("relax.add") == 1
    # zero weights stay zero: the folded weight keeps the pattern structure
    folded_w = next(
        b.value.args[1].value.numpy()
        for blk in after["main"].body.blocks
        for b in blk.bindings
        if isinstance(b.value, relax.Call) and b.value.op.name == "relax.nn.conv2d"
    )
    np.testing.assert_array_equal(folded_w != 0, weight != 0)
    x = rng.standard_normal((1, 4, 6, 6)).astype("float32")
    np.testing.assert_allclose(
        h.run_module(after, x), h.run_module(before, x), rtol=1e-5, atol=1e-5
    )


def test_nothing_to_fold_leaves_module_unchanged(h, well_formed):
    mod = h.conv_module((1, 4, 6, 6), h.pattern_weight(8, 4), relu=True)
    fold = FoldConvBiasBatchNorm()
    tvm.ir.assert_structural_equal(fold(mod), mod)
    assert fold.folded == 0
