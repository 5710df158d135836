"""TVM-side fixtures: every pass applied under WellFormedInstrument, and module builders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tvm_ext._compat import WellFormedInstrument, relax, tvm


@pytest.fixture
def well_formed():
    """A PassContext that checks well-formedness before and after every pass."""
    with tvm.transform.PassContext(instruments=[WellFormedInstrument()]) as ctx:
        yield ctx


def pattern_weight(k, c, *, density=0.2, block=None, seed=0):
    from patsparse.schemes import BlockPatternScheme, PatternConnectivityScheme

    w = torch.randn(k, c, 3, 3, generator=torch.Generator().manual_seed(seed))
    scheme = (
        BlockPatternScheme(density=density, block_size=block)
        if block
        else PatternConnectivityScheme(density=density)
    )
    return scheme.project(w).numpy()


def conv_module(
    x_shape,
    weight,
    *,
    stride=(1, 1),
    padding=(1, 1, 1, 1),
    dilation=(1, 1),
    groups=1,
    bias=None,
    residual=False,
    relu=False,
    weight_as_input=False,
):
    """``main(x[, w][, r])``: conv2d (+ bias) (+ residual) (+ relu), built with BlockBuilder."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(x_shape, "float32"))
    params = [x]
    w = relax.const(np.asarray(weight, dtype="float32"))
    if weight_as_input:
        w = relax.Var("w", relax.TensorType(weight.shape, "float32"))
        params.append(w)
    k = weight.shape[0]
    h, wd = x_shape[2], x_shape[3]
    oh = (h + padding[0] + padding[2] - dilation[0] * (weight.shape[2] - 1) - 1) // stride[0] + 1
    ow = (wd + padding[1] + padding[3] - dilation[1] * (weight.shape[3] - 1) - 1) // stride[1] + 1
    r = None
    if residual:
        r = relax.Var("r", relax.TensorType((x_shape[0], k, oh, ow), "float32"))
        params.append(r)
    with bb.function("main", params):
        with bb.dataflow():
            conv = relax.op.nn.conv2d(
                x, w, strides=stride, padding=padding, dilation=dilation, groups=groups
            )
            y = bb.emit(conv)
            if bias is not None:
                y = bb.emit(relax.op.add(y, relax.const(bias.reshape(1, k, 1, 1))))
            if r is not None:
                y = bb.emit(relax.op.add(y, r))
            if relu:
                y = bb.emit(relax.op.nn.relu(y))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def run_module(mod, *args):
    from tvm_ext._compat import host_target, tensor

    ex = tvm.compile(mod, target=host_target())
    vm = relax.VirtualMachine(ex, tvm.cpu())
    out = vm["main"](*[tensor(np.ascontiguousarray(a, dtype="float32"), tvm.cpu()) for a in args])
    return out.numpy()


def torch_reference(
    x, weight, *, stride, padding, dilation=(1, 1), bias=None, residual=None, relu=False
):
    pt, pl, pb, pr = padding
    xt = torch.nn.functional.pad(torch.from_numpy(x), (pl, pr, pt, pb))
    y = torch.nn.functional.conv2d(
        xt,
        torch.from_numpy(weight),
        None if bias is None else torch.from_numpy(bias),
        stride=stride,
        dilation=dilation,
    )
    if residual is not None:
        y = y + torch.from_numpy(residual)
    if relu:
        y = torch.relu(y)
    return y.numpy()


def relax_ops(mod):
    """Names of the Relax ops ``main`` calls (a visitor over the whole function)."""
    ops = []

    def visit(expr):
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            ops.append(expr.op.name)

    relax.analysis.post_order_visit(mod["main"], visit)
    return ops


@pytest.fixture(scope="session")
def h():
    """Helpers for building and running small Relax modules (see the functions above)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        pattern_weight=pattern_weight,
        conv_module=conv_module,
        run_module=run_module,
        torch_reference=torch_reference,
        relax_ops=relax_ops,
    )
