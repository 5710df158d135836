"""VectorMath: exp / sigmoid / tanh / erf / GELU as vectorisable polynomial arithmetic
(structure: no libm call left; numerics vs PyTorch over the whole float range; what it
leaves alone)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tvm_ext._compat import from_exported_program, host_target, relax, tensor, tvm
from tvm_ext.passes.vector_math import VectorMath
from tvm_ext.pipeline import backend_passes


class Act(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


OPS = {
    "exp": (torch.exp, "exp"),
    "tanh": (torch.tanh, "tanh"),
    "erf": (torch.erf, "erf"),
    "sigmoid": (torch.sigmoid, "sigmoid"),
    "silu": (nn.functional.silu, "sigmoid"),
    "gelu": (nn.functional.gelu, "nn.gelu"),
    "gelu tanh": (lambda x: nn.functional.gelu(x, approximate="tanh"), "nn.gelu_tanh"),
}


def _import(fn, x):
    return from_exported_program(torch.export.export(Act(fn), (x,)), keep_params_as_input=False)


def _input() -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.randn(1, 8, 16, 32) * 4
    x.view(-1)[:6] = torch.tensor([0.0, -100.0, 100.0, -88.0, 80.0, 1e-6])  # the extremes
    return x


@pytest.mark.parametrize("name", OPS)
def test_rewrites_to_vector_arithmetic_that_matches_pytorch(name):
    fn, op = OPS[name]
    x = _input()
    mod = _import(fn, x)
    rewrite = VectorMath()
    out_mod = rewrite(mod)
    assert rewrite.rewritten == {op: 1}
    assert f"R.{op}(" not in out_mod["main"].script()
    target = host_target()
    with target:
        lowered = backend_passes(target)(mod)
    for _, func in lowered.functions_items():
        if isinstance(func, tvm.tirx.PrimFunc):
            text = func.script()
            assert not any(f"T.{f}(" in text for f in ("exp", "tanh", "erf", "sigmoid")), text
    ex = tvm.compile(mod, target=target, relax_pipeline=backend_passes(target))
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tensor(x.numpy()))[0].numpy()
    with torch.no_grad():
        ref = fn(x.double()).numpy()
    finite = np.abs(ref) < 3.4e38  # exp(100) overflows float32
    scale = np.maximum(np.abs(ref[finite]), 1.0)
    assert np.all(np.abs(out[finite] - ref[finite]) / scale < 2e-6), name
    assert np.all(out[~finite] > 1e38)  # saturates at float32's largest power instead of inf


def test_leaves_other_dtypes_and_ops():
    x = _input().double()
    mod = _import(lambda t: torch.tanh(t) + torch.log(t.abs() + 1), x)
    rewrite = VectorMath()
    out = rewrite(mod)
    assert rewrite.rewritten == {}
    assert "R.tanh(" in out["main"].script() and "R.log(" in out["main"].script()
