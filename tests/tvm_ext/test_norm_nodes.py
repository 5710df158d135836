"""Norm nodes: which norm calls (and the add / ReLU after them) ChainConvLayouts may fuse,
and their permuted constant arrays."""

from __future__ import annotations

import numpy as np
import pytest

from tvm_ext._compat import relax
from tvm_ext.norm_nodes import find_norm_node

C = 8


def _function(body, shape=(1, C, 6, 5)):
    """``main(x, r)``; ``body(bb, x, r)`` emits the bindings and returns the output."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    r = relax.Var("r", relax.TensorType(shape, "float32"))
    with bb.function("main", [x, r]):
        with bb.dataflow():
            out = bb.emit_output(body(bb, x, r))
        bb.emit_func_output(out)
    return bb.get()["main"]


def _nodes(func):
    values = dict(relax.analysis.get_var2val(func).items())
    users = {}
    for var, value in values.items():
        used = [value] if isinstance(value, relax.Var) else relax.analysis.free_vars(value)
        for u in used:
            users.setdefault(u, []).append(var)
    outputs = set(relax.analysis.free_vars(func.body.body))
    found = [find_norm_node(v, values, users, outputs) for v in values]
    return [n for n in found if n is not None]


def _instance(bb, y, *, beta=0.5, center=True, axes=(2, 3)):
    gamma = relax.const(np.linspace(0.5, 2, C, dtype="float32"))
    b = relax.const(np.full(C, beta, "float32"))
    return bb.emit(relax.op.nn.instance_norm(y, gamma, b, 1, list(axes), center=center))


def test_norm_then_relu():
    func = _function(lambda bb, x, r: bb.emit(relax.op.nn.relu(_instance(bb, x))))
    (node,) = _nodes(func)
    assert node.fused == ("instance_norm", "relu") and node.relu and node.residual is None
    assert node.group_size == 1 and node.shape == (1, C, 6, 5)
    np.testing.assert_allclose(node.beta, 0.5)


@pytest.mark.parametrize("relu_first", [False, True])
def test_residual_add_and_relu_either_order(relu_first):
    def body(bb, x, r):
        gamma, beta = relax.const(np.ones(C, "float32")), relax.const(np.zeros(C, "float32"))
        y = bb.emit(relax.op.nn.group_norm(x, gamma, beta, 2, 1, [2, 3]))
        if relu_first:
            return bb.emit(relax.op.add(r, bb.emit(relax.op.nn.relu(y))))
        return bb.emit(relax.op.nn.relu(bb.emit(relax.op.add(y, r))))

    (node,) = _nodes(_function(body))
    assert node.group_size == 4 and node.relu_first == relu_first
    assert node.residual.name == "r"
    assert node.add.same_as(node.bound[2] if relu_first else node.bound[1])
    assert len(node.bound) == 3


def test_a_value_that_leaves_the_function_ends_the_node():
    def body(bb, x, r):
        y = _instance(bb, x)
        return bb.emit(relax.Tuple([y, bb.emit(relax.op.nn.relu(y))]))

    (node,) = _nodes(_function(body))
    assert len(node.bound) == 1 and not node.relu


@pytest.mark.parametrize(
    "why",
    ["batch pooled", "ambiguous beta"],
)
def test_norms_not_taken(why):
    if why == "batch pooled":  # axes (0, 2, 3) over two maps: not a per-map norm
        func = _function(lambda bb, x, r: _instance(bb, x, axes=(0, 2, 3)), shape=(2, C, 6, 5))
    else:  # center=False with a non-zero beta: TVM would add it anyway
        func = _function(lambda bb, x, r: _instance(bb, x, center=False))
    assert _nodes(func) == []


def test_batch_axes_of_one_map_are_an_instance_norm():
    func = _function(lambda bb, x, r: _instance(bb, x, axes=(0, 2, 3)))
    assert len(_nodes(func)) == 1


def test_kernel_arrays_follow_the_positions():
    def body(bb, x, r):
        gamma = relax.const(np.arange(1, C + 1, dtype="float32"))
        beta = relax.const(np.arange(C, dtype="float32") / 10)
        return bb.emit(relax.op.nn.group_norm(x, gamma, beta, 2, 1, [2, 3]))

    (node,) = _nodes(_function(body))
    positions = np.array([9, 2, 15, 0, 4, 11, 6, 13])  # channel -> position of 16
    gamma, beta, members = node.kernel_arrays(positions, 16)
    assert gamma[9] == 1 and gamma[13] == 8 and gamma[1] == 0
    assert beta[15] == pytest.approx(0.2) and beta[3] == 0
    # channel 5 (position 11) is in the second group: channels 4..7
    assert sorted(members[11]) == sorted(positions[4:])
    assert (members[1] == 1).all()  # a position no channel maps to: a group of itself


def test_a_gamma_known_only_at_run_time_is_not_taken():
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, C, 6, 5), "float32"))
    g = relax.Var("g", relax.TensorType((C,), "float32"))
    with bb.function("main", [x, g]):
        with bb.dataflow():
            beta = relax.const(np.zeros(C, "float32"))
            out = bb.emit_output(bb.emit(relax.op.nn.instance_norm(x, g, beta, 1, [2, 3])))
        bb.emit_func_output(out)
    assert _nodes(bb.get()["main"]) == []
