"""The ``injective`` leftover rule: concat, broadcast, pixel shuffle, resize with their
elementwise neighbours inlined, parallel, in vectors where every read is contiguous or a
broadcast."""

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
from tvm_ext.schedules.common import root_blocks
from tvm_ext.schedules.injective import schedule_injective


class Fn(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _global_branch(x: torch.Tensor) -> torch.Tensor:
    g = x.mean((2, 3), keepdim=True).expand(-1, -1, x.shape[2], x.shape[3])
    return torch.cat([x, g], 1)


MODELS = {
    "concat": (Fn(lambda x: torch.cat([x, x * 2], 1)), (1, 4, 6, 32), True),
    "global-branch": (Fn(_global_branch), (1, 8, 7, 4), True),
    "pixel-shuffle": (nn.PixelShuffle(2), (1, 8, 5, 16), False),
    "nearest": (nn.Upsample(scale_factor=2), (1, 3, 5, 16), False),
    "transpose-add": (Fn(lambda x: x.transpose(2, 3) + 1), (1, 3, 16, 16), False),
}


def _functions(model, x):
    mod = from_exported_program(torch.export.export(model.eval(), (x,)), keep_params_as_input=False)
    target = host_target()
    with target:
        seq = [*cpu_pipeline.library_dispatch_passes(target), *cpu_pipeline.legalize_passes(target)]
        out = tvm.transform.Sequential(seq)(mod)
    return mod, {gv.name_hint: f for gv, f in out.functions_items() if isinstance(f, tirx.PrimFunc)}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_matches_pytorch_and_the_record_names_the_rule(name):
    model, shape, _ = MODELS[name]
    torch.manual_seed(0)
    x = torch.randn(*shape)
    mod, _ = _functions(model, x)
    target = host_target()
    leftovers = ScheduleLeftovers(target=target)
    ex = tvm.compile(mod, target=target, relax_pipeline=backend_passes(target, leftovers=leftovers))
    rules = {r.name: r.schedule for r in leftovers.records}
    assert "injective" in rules.values(), rules
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tensor(x.numpy()))[0].numpy()
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-5, atol=1e-5)


def _schedule(name: str, lanes: int = 16) -> Schedule:
    model, shape, _ = MODELS[name]
    _, funcs = _functions(model, torch.randn(*shape))
    (func,) = [f for n, f in funcs.items() if n != "mean"]
    sch = Schedule(func.with_attr("global_symbol", "main"))
    assert schedule_injective(sch, lanes)
    return sch


def _scheduled(name: str, lanes: int = 16) -> str:
    return _schedule(name, lanes).mod["main"].script()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_parallel_and_vectorised_only_where_reads_are_contiguous(name):
    """Contiguous / broadcast reads: explicit vectors; gathers (shuffle, resize): rows left
    to LLVM. The elementwise producer of a concat is inlined (one block)."""
    sch = _schedule(name, lanes=4)
    text = sch.mod["main"].script()
    assert "T.parallel(" in text
    assert ("T.vectorized(" in text) == MODELS[name][2]
    assert len(root_blocks(sch)) == 1


def test_short_rows_are_fused_into_whole_vectors():
    """A 7x4 map (rows of 4 pixels) with 16 lanes: the two pixel loops fused (28 is no whole
    number of 16-lane vectors either, so nothing vectorised), with 4 lanes rows suffice."""
    assert "T.vectorized(" not in _scheduled("global-branch", lanes=16)
    assert "T.vectorized(T.int64(4))" in _scheduled("global-branch", lanes=4)
