from __future__ import annotations

import numpy as np
import pytest

from tvm_ext._compat import relax, tvm
from tvm_ext.passes import DropUnreadFilters
from tvm_ext.relax_match import static_shape

RNG = np.random.default_rng(0)


def _weight(k, c, ksize=3, *, unread=()):
    w = RNG.standard_normal((k, c, ksize, ksize)).astype("float32")
    w[:, list(unread)] = 0
    return w


def _convs(between, *, unread=(1, 2, 4, 6), residual=False, second_user=False):
    """``main(x)``: conv 4->8 (+bias) -> ``between`` ops -> conv 8->5 reading the channels
    not in ``unread``; optionally a residual add or a second output using the middle."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 4, 6, 7), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, relax.const(_weight(8, 4)), padding=[1, 1, 1, 1]))
            bias = RNG.standard_normal((1, 8, 1, 1)).astype("float32")
            y = bb.emit(relax.op.add(y, relax.const(bias)))
            for make in between:
                y = bb.emit(make(y))
            z = bb.emit(relax.op.nn.conv2d(y, relax.const(_weight(5, 8, 1, unread=unread))))
            if residual:
                z = bb.emit(relax.op.add(z, relax.op.strided_slice(y, [1], [0], [5])))
            outs = [z, y] if second_user else [z]
            out = bb.emit_output(relax.Tuple(outs) if second_user else z)
        bb.emit_func_output(out)
    return bb.get()


def _convs_shapes(mod):
    shapes = []

    def visit(expr):
        if isinstance(expr, relax.Call) and getattr(expr.op, "name", "") == "relax.nn.conv2d":
            shapes.append(tuple(int(d) for d in expr.args[1].value.shape))

    relax.analysis.post_order_visit(mod["main"], visit)
    return shapes


def _instance_norm(y):
    gamma = relax.const(RNG.uniform(0.5, 2, 8).astype("float32"))
    beta = relax.const(RNG.standard_normal(8).astype("float32"))
    return relax.op.nn.instance_norm(y, gamma, beta, channel_axis=1, axes=[2, 3])


BETWEEN = {
    "relu": [relax.op.nn.relu],
    "norm+relu+reflect pad": [
        _instance_norm,
        relax.op.nn.relu,
        lambda y: relax.op.nn.pad(y, [0, 0, 0, 0, 1, 1, 1, 1], pad_mode="reflect"),
    ],
    "scale+sigmoid+upsample+pool": [
        lambda y: relax.op.multiply(
            y, relax.const(RNG.uniform(0.5, 2, (8, 1, 1)).astype("float32"))
        ),
        relax.op.sigmoid,
        lambda y: relax.op.image.resize2d(y, (12, 14), method="nearest_neighbor"),
        lambda y: relax.op.nn.max_pool2d(y, 2, strides=2),
        lambda y: relax.op.subtract(y, relax.const(np.float32(0.25))),
    ],
}


@pytest.mark.parametrize("between", list(BETWEEN), ids=list(BETWEEN))
def test_the_producer_keeps_only_the_filters_the_consumer_reads(h, well_formed, between):
    before = _convs(BETWEEN[between])
    drop = DropUnreadFilters()
    after = drop(before)
    # the producer computes the 4 read channels; the consumer reads just those
    assert _convs_shapes(after) == [(4, 4, 3, 3), (5, 4, 1, 1)]
    (rec,) = drop.records
    assert rec.rewritten and (rec.channels, rec.read) == (8, 4), rec
    assert rec.through[0] == "add"  # the producer's bias, then the ops in between
    assert (rec.producer_shape, rec.consumer_shape) == ((8, 4, 3, 3), (5, 8, 1, 1))
    assert len(rec.through) == 1 + len(BETWEEN[between])
    # every value in between now has 4 channels
    between_values = [
        b.var
        for b in after["main"].body.blocks[0].bindings
        if isinstance(b.var, relax.DataflowVar) and b.value.op.name != "relax.nn.conv2d"
    ]
    assert len(between_values) == 1 + len(BETWEEN[between])
    assert all(static_shape(v)[1] == 4 for v in between_values)
    x = RNG.standard_normal((1, 4, 6, 7)).astype("float32")
    np.testing.assert_allclose(
        h.run_module(after, x), h.run_module(before, x), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"second_user": True}, "has other users"),
        ({"residual": True}, "has other users"),
        ({"unread": ()}, None),  # every channel read: nothing to drop, no record
    ],
)
def test_values_used_elsewhere_are_left_whole(h, well_formed, kwargs, reason):
    before = _convs([relax.op.nn.relu], **kwargs)
    drop = DropUnreadFilters()
    after = drop(before)
    tvm.ir.assert_structural_equal(after, before)
    if reason is None:
        assert drop.records == []
    else:
        (rec,) = drop.records
        assert not rec.rewritten and reason in rec.reason


def test_an_op_that_mixes_channels_stops_the_chain(well_formed):
    # a channel softmax mixes channels: dropping any would change the others
    before = _convs([lambda y: relax.op.nn.softmax(y, axis=1)])
    drop = DropUnreadFilters()
    tvm.ir.assert_structural_equal(drop(before), before)
    assert "does not act per channel" in drop.records[0].reason


def test_dropping_repeats_up_the_chain(h, well_formed):
    # conv A (4->8) -> conv B (8->6) -> conv C reads 2 of B's 6; B's two kept filters read
    # only 3 of A's channels, so the second round shrinks A too
    wb = _weight(6, 8)
    wb[[0, 1, 3, 4]] = 5.0  # filters C does not read (weights must not matter)
    wb[2][[0, 1, 5, 6, 7]] = 0
    wb[5][[0, 1, 5, 6, 7]] = 0
    wc = _weight(3, 6, 1, unread=(0, 1, 3, 4))
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 4, 5, 5), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            a = bb.emit(relax.op.nn.conv2d(x, relax.const(_weight(8, 4)), padding=[1, 1, 1, 1]))
            a = bb.emit(relax.op.nn.relu(a))
            b = bb.emit(relax.op.nn.conv2d(a, relax.const(wb), padding=[1, 1, 1, 1]))
            c = bb.emit(relax.op.nn.conv2d(relax.op.nn.relu(b), relax.const(wc)))
            out = bb.emit_output(c)
        bb.emit_func_output(out)
    before = bb.get()
    drop = DropUnreadFilters()
    after = drop(before)
    assert _convs_shapes(after) == [(3, 4, 3, 3), (2, 3, 3, 3), (3, 2, 1, 1)]
    assert [r.rewritten for r in drop.records] == [True, True]
    x = RNG.standard_normal((1, 4, 5, 5)).astype("float32")
    np.testing.assert_allclose(
        h.run_module(after, x), h.run_module(before, x), rtol=1e-5, atol=1e-5
    )


def test_max_rounds_must_be_positive():
    with pytest.raises(ValueError, match="max_rounds"):
        DropUnreadFilters(max_rounds=0)


def _pattern_then_1x1(producer_weight, read):
    bb = relax.BlockBuilder()
    k, c = producer_weight.shape[:2]
    x = relax.Var("x", relax.TensorType((1, c, 6, 6), "float32"))
    consumer = _weight(8, k, 1, unread=[i for i in range(k) if i not in read])
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, relax.const(producer_weight), padding=[1, 1, 1, 1]))
            y = bb.emit(relax.op.nn.relu(y))
            out = bb.emit_output(bb.emit(relax.op.nn.conv2d(y, relax.const(consumer))))
        bb.emit_func_output(out)
    return bb.get()


def test_a_block_pattern_producer_keeps_whole_blocks(h, well_formed):
    from tvm_ext.layout import analyze_conv_weight

    w = h.pattern_weight(32, 8, density=0.3, block=16)
    assert analyze_conv_weight(w).kind == "block"
    # three read channels, all made by filters of one block: that block stays, whole
    groups = {}
    for f in range(32):
        groups.setdefault((w[f] != 0).tobytes(), []).append(f)
    assert sorted(len(m) for m in groups.values()) == [16, 16]
    first, second = groups.values()
    before = _pattern_then_1x1(w, read=first[:3])
    drop = DropUnreadFilters()
    after = drop(before)
    # (the 16 filters left read only some of the model's input channels: recorded, kept)
    (rec,) = [r for r in drop.records if r.consumer_shape == (8, 32, 1, 1)]
    assert rec.rewritten and (rec.read, rec.computed) == (3, 16)
    assert all("not computed in this function" in r.reason for r in drop.records if r is not rec)
    (producer_shape, _) = _convs_shapes(after)
    assert producer_shape == (16, 8, 3, 3)
    kept_w = next(
        b.value.args[1].value.numpy()
        for b in after["main"].body.blocks[0].bindings
        if getattr(b.value, "op", None) is not None
        and b.value.op.name == "relax.nn.conv2d"
        and b.value.args[1].value.shape[2] == 3
    )
    layout = analyze_conv_weight(kept_w)
    assert layout.kind == "block" and layout.block == 16
    x = RNG.standard_normal((1, 8, 6, 6)).astype("float32")
    np.testing.assert_allclose(
        h.run_module(after, x), h.run_module(before, x), rtol=1e-5, atol=1e-5
    )
    # one read channel in each block: nothing can go
    spread = _pattern_then_1x1(w, read=(first[0], second[0]))
    drop = DropUnreadFilters()
    tvm.ir.assert_structural_equal(drop(spread), spread)
    (rec,) = [r for r in drop.records if r.consumer_shape == (8, 32, 1, 1)]
    assert not rec.rewritten and "every block" in rec.reason and rec.computed == 32
