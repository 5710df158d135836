"""The ``norm`` leftover rule: instance, group and layer norm as torch.export → Relax →
legalisation → fusion make them (affine, ReLU and a residual add fused in), recognised
structurally, scheduled parallel and vectorised, computing what PyTorch computes."""

from __future__ import annotations

import numpy as np
import pytest
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
from tvm_ext.schedules.leftovers import schedule_leftover
from tvm_ext.schedules.norm import schedule_norm


class ChannelsLayerNorm(nn.Module):
    """LayerNorm over the channels of an NCHW map (ConvNeXt style: permute, norm, permute)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class NormBlock(nn.Module):
    """``norm(x)``, then optionally ReLU and ``+ r`` (what follows a conv's norm)."""

    def __init__(self, norm: nn.Module, *, relu: bool, residual: bool) -> None:
        super().__init__()
        self.norm, self.relu, self.residual = norm, relu, residual

    def forward(self, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        y = torch.relu(y) if self.relu else y
        return y + r if self.residual else y


def _randomise_affine(norm: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(3)
    for p in norm.parameters():
        p.data = torch.rand(p.shape, generator=gen) + 0.5
    return norm


NORMS = {
    "instance": lambda c: nn.InstanceNorm2d(c),
    "instance-affine": lambda c: _randomise_affine(nn.InstanceNorm2d(c, affine=True)),
    "group-1": lambda c: _randomise_affine(nn.GroupNorm(1, c)),
    "group-4": lambda c: _randomise_affine(nn.GroupNorm(4, c)),
    "group-C": lambda c: _randomise_affine(nn.GroupNorm(c, c)),
    "layer-channels": lambda c: _randomise_affine(ChannelsLayerNorm(c)),
}


def _block(kind: str, shape, *, relu=True, residual=True):
    torch.manual_seed(0)
    model = NormBlock(NORMS[kind](shape[1]), relu=relu, residual=residual).eval()
    x = torch.randn(*shape) * 3 + 1
    r = torch.randn(*shape)
    mod = from_exported_program(torch.export.export(model, (x, r)), keep_params_as_input=False)
    return model, x, r, mod


def _fused(mod):
    """The module's PrimFuncs after legalisation and fusion (what ScheduleLeftovers sees)."""
    target = host_target()
    with target:
        seq = [
            *cpu_pipeline.library_dispatch_passes(target),
            *cpu_pipeline.legalize_passes(target),
        ]
        out = tvm.transform.Sequential(seq)(mod)
    return {gv.name_hint: f for gv, f in out.functions_items() if isinstance(f, tirx.PrimFunc)}


def _norm_func(mod):
    (name,) = [n for n in _fused(mod) if "norm" in n]
    return _fused(mod)[name]


@pytest.mark.parametrize("kind", sorted(NORMS))
@pytest.mark.parametrize("relu,residual", [(True, True), (False, False)])
def test_norm_functions_take_the_norm_rule_and_match_pytorch(kind, relu, residual):
    model, x, r, mod = _block(kind, (1, 16, 12, 16), relu=relu, residual=residual)
    target = host_target()
    leftovers = ScheduleLeftovers()
    ex = tvm.compile(mod, target=target, relax_pipeline=backend_passes(target, leftovers=leftovers))
    rules = {rec.name: rec.schedule for rec in leftovers.records}
    norms = [name for name in rules if "norm" in name]
    # a permuted channel layer norm becomes a norm over NCHW's strided axis 1 (ChannelNormNCHW)
    expected = "strided_reduce" if kind == "layer-channels" else "norm"
    assert norms and all(rules[n] == expected for n in norms), rules
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tensor(x.numpy()), tensor(r.numpy()))
    with torch.no_grad():
        ref = model(x, r).numpy()
    np.testing.assert_allclose(out[0].numpy(), ref, rtol=1e-4, atol=1e-4)  # a 1-tuple


def _scheduled(func, cores: int):
    sch = Schedule(func.with_attr("global_symbol", "main"))
    assert schedule_norm(sch, 16, cores)
    return sch.mod["main"]


def _run(func, *arrays):
    ex = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), host_target())
    args = [tensor(a) for a in arrays]
    ex["main"](*args)
    return args[-1].numpy()


def _args(func, x, r, model):
    """Arguments in the PrimFunc's order: input, affine parameters (if any), residual, out."""
    params = [np.asarray(p.detach().numpy()).reshape(-1) for p in model.norm.parameters()]
    if isinstance(model.norm, nn.InstanceNorm2d) and not params:  # the importer's ones/zeros
        params = [np.ones(x.shape[1], "float32"), np.zeros(x.shape[1], "float32")]
    arrays = [x.numpy(), *params, r.numpy(), np.zeros(x.shape, "float32")]
    assert len(arrays) == len(func.params)
    return arrays


@pytest.mark.parametrize("kind", ["instance-affine", "group-1", "group-4"])
@pytest.mark.parametrize("cores", [1, 32])
def test_both_plans_are_parallel_vectorised_and_exact(kind, cores):
    """Many groups per core: statistics inside each group's parallel output loop; few: the
    reductions in parallel chunks. Both vectorise the partial sums and the output."""
    model, x, r, mod = _block(kind, (1, 16, 8, 32))
    func = _norm_func(mod)
    scheduled = _scheduled(func, cores)
    text = scheduled.script()
    assert "T.parallel(" in text and "T.vectorized(" in text
    assert "_rf" in text  # partial sums (rfactor)
    with torch.no_grad():
        ref = model(x, r).numpy()
    out = _run(scheduled, *_args(func, x, r, model))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_few_groups_split_the_reduction_into_parallel_chunks():
    *_, mod = _block("group-1", (1, 16, 8, 32))
    text = _scheduled(_norm_func(mod), cores=2).script()
    # the channel loop of the single group split into chunks: a second level of partial sums
    assert "_rf_rf" in text


def test_odd_sizes_keep_a_scalar_reduction_and_stay_exact():
    """A 7x9 map is no whole number of vectors: the statistics stay scalar sums, the output
    still runs in parallel."""
    model, x, r, mod = _block("instance-affine", (1, 8, 7, 9))
    func = _norm_func(mod)
    scheduled = _scheduled(func, cores=2)
    assert "T.parallel(" in scheduled.script()
    with torch.no_grad():
        ref = model(x, r).numpy()
    out = _run(scheduled, *_args(func, x, r, model))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_convs_and_strided_channel_means_are_not_norms(h):
    """A conv with its epilogue (one statistic per output element) and a mean over NCHW
    channels (strided reduction) are left to the other rules."""
    rng = np.random.default_rng(0)
    conv = h.conv_module((1, 8, 10, 10), rng.standard_normal((8, 8, 3, 3)).astype("float32"))
    for func in _fused(conv).values():
        assert not schedule_norm(Schedule(func.with_attr("global_symbol", "main")), 16, 2)
        assert schedule_leftover(func, host_target())[1] != "norm"
    bb = relax.BlockBuilder()
    xv = relax.Var("x", relax.TensorType((1, 8, 6, 6), "float32"))
    with bb.function("main", [xv]):
        with bb.dataflow():
            m = bb.emit(relax.op.mean(xv, axis=[1], keepdims=True))
            out = bb.emit_output(relax.op.subtract(xv, m))
        bb.emit_func_output(out)
    for func in _fused(bb.get()).values():
        assert schedule_leftover(func, host_target())[1] != "norm"


def test_instance_norm_with_batch_two_normalises_each_sample_alone():
    """TVM's instance-norm legalisation reduces over each (sample, channel) map only: with a
    batch of 2 whose samples differ in scale and offset, it matches PyTorch."""
    torch.manual_seed(0)
    model = _randomise_affine(nn.InstanceNorm2d(8, affine=True)).eval()
    x = torch.randn(2, 8, 6, 10) * torch.tensor([1.0, 5.0]).view(2, 1, 1, 1)
    x = x + torch.tensor([0.0, 3.0]).view(2, 1, 1, 1)
    mod = from_exported_program(torch.export.export(model, (x,)), keep_params_as_input=False)
    target = host_target()
    leftovers = ScheduleLeftovers()
    ex = tvm.compile(mod, target=target, relax_pipeline=backend_passes(target, leftovers=leftovers))
    assert "norm" in {rec.schedule for rec in leftovers.records}
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tensor(x.numpy()))[0].numpy()
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-4, atol=1e-4)
