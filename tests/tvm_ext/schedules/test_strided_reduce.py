"""The ``strided_reduce`` leftover rule: means and norms over NCHW's channel axis, the pixels
in vectors; convs are not taken."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tvm_ext._compat import (
    Schedule,
    cpu_pipeline,
    from_exported_program,
    host_target,
    relax,
    tensor,
    tirx,
    tvm,
)
from tvm_ext.passes.schedule_leftovers import ScheduleLeftovers
from tvm_ext.pipeline import backend_passes
from tvm_ext.schedules.strided_reduce import schedule_strided_reduce


class LayerNorm2d(nn.Module):
    """A channel layer norm written by hand (``x.mean(1, keepdim=True)``), as in ConvNeXt
    ports and restoration nets."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.rand(channels) + 0.5)
        self.bias = nn.Parameter(torch.rand(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        v = (x - u).pow(2).mean(1, keepdim=True)
        y = (x - u) / torch.sqrt(v + 1e-6)
        return self.weight[:, None, None] * y + self.bias[:, None, None]


def _compile(model, x):
    mod = from_exported_program(torch.export.export(model.eval(), (x,)), keep_params_as_input=False)
    target = host_target()
    leftovers = ScheduleLeftovers(target=target)
    ex = tvm.compile(mod, target=target, relax_pipeline=backend_passes(target, leftovers=leftovers))
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tensor(x.numpy()))[0].numpy()
    return out, {r.name: r.schedule for r in leftovers.records}


def test_hand_written_channel_layer_norm_matches_pytorch():
    torch.manual_seed(0)
    model, x = LayerNorm2d(8), torch.randn(1, 8, 6, 32) * 2 + 1
    out, rules = _compile(model, x)
    reductions = [n for n in rules if "mean" in n]
    assert reductions and all(rules[n] == "strided_reduce" for n in reductions), rules
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-4, atol=1e-4)


def _fused(mod):
    target = host_target()
    with target:
        seq = [*cpu_pipeline.library_dispatch_passes(target), *cpu_pipeline.legalize_passes(target)]
        out = tvm.transform.Sequential(seq)(mod)
    return [f for _, f in out.functions_items() if isinstance(f, tirx.PrimFunc)]


def test_the_channel_loop_runs_outside_a_vector_of_pixels():
    bb = relax.BlockBuilder()
    xv = relax.Var("x", relax.TensorType((1, 8, 4, 32), "float32"))
    with bb.function("main", [xv]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.mean(xv, axis=[1], keepdims=True))
        bb.emit_func_output(out)
    (func,) = _fused(bb.get())
    sch = Schedule(func.with_attr("global_symbol", "main"))
    assert schedule_strided_reduce(sch, 16)
    text = sch.mod["main"].script()
    assert "T.parallel(" in text
    # the update: the reduction loop, then 16 pixels in a vector
    update = text[text.index("_update") - 400 :]
    assert "T.vectorized(T.int64(16))" in update
    x = np.random.default_rng(0).standard_normal((1, 8, 4, 32)).astype("float32")
    ex = tvm.compile(sch.mod, host_target())
    args = [tensor(x), tensor(np.zeros((1, 1, 4, 32), "float32"))]
    ex["main"](*args)
    np.testing.assert_allclose(args[1].numpy(), x.mean(1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_convs_are_not_taken(h):
    rng = np.random.default_rng(0)
    conv = h.conv_module((1, 8, 10, 32), rng.standard_normal((8, 8, 3, 3)).astype("float32"))
    for func in _fused(conv):
        assert not schedule_strided_reduce(Schedule(func.with_attr("global_symbol", "main")), 16)
