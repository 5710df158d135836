from __future__ import annotations

import numpy as np
import pytest
import torch

from tvm_ext._compat import from_exported_program, host_target, relax, tensor, tirx, tvm
from tvm_ext.passes.schedule_leftovers import ScheduleLeftovers
from tvm_ext.pipeline import backend_passes
from tvm_ext.schedules.leftovers import IS_SCHEDULED, is_scheduled, schedule_leftover


def _leftover_module():
    """Ops none of our kernels take: a grouped conv + bias + ReLU, a group norm, a mean,
    a bilinear resize, an elementwise tanh."""
    rng = np.random.default_rng(0)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 8, 12, 12), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            w = relax.const(rng.standard_normal((8, 4, 3, 3)).astype("float32"))
            b = relax.const(rng.standard_normal((1, 8, 1, 1)).astype("float32"))
            y = bb.emit(relax.op.nn.conv2d(x, w, padding=(1, 1), groups=2))
            y = bb.emit(relax.op.nn.relu(relax.op.add(y, b)))
            gamma = relax.const(np.ones(8, "float32"))
            beta = relax.const(np.zeros(8, "float32"))
            y = bb.emit(relax.op.nn.group_norm(y, gamma, beta, 4, 1, [2, 3]))
            m = bb.emit(relax.op.mean(y, axis=[2, 3], keepdims=True))
            y = bb.emit(relax.op.add(y, m))
            y = bb.emit(relax.op.image.resize2d(y, (24, 24), method="linear"))
            out = bb.emit_output(relax.op.tanh(y))
        bb.emit_func_output(out)
    return bb.get()


def _primfuncs(mod):
    return {gv.name_hint: f for gv, f in mod.functions_items() if isinstance(f, tirx.PrimFunc)}


def _lowered(mod, leftovers):
    target = host_target()
    with target:
        return backend_passes(target, leftovers=leftovers)(mod)


def test_every_function_is_scheduled_and_recorded():
    leftovers = ScheduleLeftovers()
    out = _lowered(_leftover_module(), leftovers)
    funcs = _primfuncs(out)
    assert funcs and all(is_scheduled(f) for f in funcs.values())
    assert leftovers.unscheduled == []
    assert {r.name for r in leftovers.records} == set(funcs)
    rules = {r.schedule for r in leftovers.records}
    assert "conv" in rules and "injective" in rules  # the grouped conv, the resize + tanh
    by_name = {r.name: r.schedule for r in leftovers.records}
    assert [by_name[n] for n in by_name if "group_norm" in n] == ["norm"]  # the record names it


def test_without_the_pass_the_same_functions_are_plain_loops():
    """What the pass changes: TVM's default CPU pipeline leaves these unscheduled."""
    target = host_target()
    with target:
        plain = relax.get_default_pipeline(target)(_leftover_module())
    assert not any(is_scheduled(f) for f in _primfuncs(plain).values())


def test_scheduled_module_computes_the_same():
    target = host_target()
    x = np.random.default_rng(1).standard_normal((1, 8, 12, 12)).astype("float32")
    outs = []
    for pipeline in (
        relax.get_default_pipeline(target),
        backend_passes(target, leftovers=ScheduleLeftovers()),
    ):
        ex = tvm.compile(_leftover_module(), target=target, relax_pipeline=pipeline)
        vm = relax.VirtualMachine(ex, tvm.cpu())
        outs.append(vm["main"](tensor(x, tvm.cpu())).numpy())
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-5, atol=1e-5)


def test_scheduled_functions_are_left_alone():
    funcs = _primfuncs(_lowered(_leftover_module(), ScheduleLeftovers()))
    func = next(iter(funcs.values()))
    assert int(func.attrs[IS_SCHEDULED]) == 1
    again, rule = schedule_leftover(func, host_target())
    assert rule is None and again.same_as(func)


@pytest.mark.parametrize("shape", [(1, 6, 9, 9), (1, 16, 7, 32)])
def test_conv_rule_on_a_dense_conv_with_odd_sizes(h, shape):
    """A conv the blocked kernel does not take (passed through the default legalisation):
    the conv rule tiles it, and the result matches the numpy reference."""
    from tvm_ext.reference import conv2d_nchw

    rng = np.random.default_rng(2)
    w = rng.standard_normal((5, shape[1], 3, 3)).astype("float32")
    mod = h.conv_module(shape, w, relu=True)
    target = host_target()
    leftovers = ScheduleLeftovers()
    ex = tvm.compile(mod, target=target, relax_pipeline=backend_passes(target, leftovers=leftovers))
    assert [r.schedule for r in leftovers.records] == ["conv"]
    x = rng.standard_normal(shape).astype("float32")
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tensor(x, tvm.cpu())).numpy()
    ref = np.maximum(conv2d_nchw(x, w, padding=(1, 1, 1, 1)), 0)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


class _ResidualRelu(torch.nn.Module):
    def forward(self, x):
        return x + torch.relu(x)


@pytest.mark.parametrize(
    "layers,shape",
    [
        ((torch.nn.Conv2d(8, 8, 3, padding=1, groups=2), torch.nn.Hardswish()), (1, 8, 12, 12)),
        ((torch.nn.Conv2d(8, 8, 7, padding=3, groups=2), _ResidualRelu()), (1, 8, 12, 12)),
        ((torch.nn.AvgPool2d(3, stride=2), torch.nn.Hardswish()), (1, 4, 8, 15)),
    ],
)
def test_an_epilogue_reading_the_conv_twice_builds_and_matches(layers, shape):
    """A hard-swish (``x * clip(x + 3)``) or ``x + relu(x)`` after a conv or pool reads its
    result twice: TVM's reverse inlining would leave a block reading a buffer nothing writes
    (the build failed); the conv rule inlines the bias add into both readers instead."""
    model = torch.nn.Sequential(*layers).eval()
    torch.manual_seed(0)
    x = torch.randn(*shape)
    mod = from_exported_program(torch.export.export(model, (x,)), keep_params_as_input=False)
    target = host_target()
    leftovers = ScheduleLeftovers()
    ex = tvm.compile(mod, target=target, relax_pipeline=backend_passes(target, leftovers=leftovers))
    assert [r.schedule for r in leftovers.records] == ["conv"]
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tensor(x.numpy()))[0].numpy()
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-5, atol=1e-5)
