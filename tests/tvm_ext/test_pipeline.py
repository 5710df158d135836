"""Whole models: prune in PyTorch, import, rewrite every eligible conv, match PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patsparse.compiler.compile import compile_torch
from patsparse.models import build_model, default_input_shape
from patsparse.pruning import MagnitudePruner
from patsparse.schemes import BlockPatternScheme, PatternConnectivityScheme, PruningPlan
from tvm_ext._compat import tensor, tvm
from tvm_ext.pipeline import load_compiled


def _pruned(name, scheme, seed=0):
    torch.manual_seed(seed)
    model = build_model(name).eval()
    pruner = MagnitudePruner(PruningPlan(default=scheme, skip_first_conv=False))
    pruner.prepare(model)
    pruner.step()
    pruner.squash_mask()
    # non-trivial BatchNorm statistics, so folding is really exercised
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model


def _eligible(model):
    """Every 3x3, groups=1 conv was pattern-pruned, so each one must be rewritten."""
    return sum(
        1
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) and m.groups == 1
    )


@pytest.mark.parametrize(
    ("name", "scheme"),
    [
        ("resnet18-cifar", PatternConnectivityScheme(density=1 / 8)),
        ("vgg16-cifar", PatternConnectivityScheme(density=1 / 12)),
        ("resnet18-cifar", BlockPatternScheme(density=1 / 8, block_size=16)),
        ("resnet18-imagenet", PatternConnectivityScheme(density=1 / 8)),
    ],
    ids=["resnet18-cifar", "vgg16-cifar", "resnet18-cifar-block", "resnet18-imagenet"],
)
def test_whole_model_matches_pytorch(name, scheme):
    model = _pruned(name, scheme)
    x = torch.randn(default_input_shape(name))
    with torch.no_grad():
        ref = model(x).numpy()
    compiled = compile_torch(model, x, verify=False)  # compared with PyTorch below
    rewritten = [r for r in compiled.records if r.rewritten]
    # per-kernel layers estimated slower than the blocked kernel run on it instead
    to_blocked = {
        r.index
        for r in compiled.records
        if not r.rewritten and "estimated slower than the blocked kernel" in r.reason
    }
    blocked_3x3 = [
        r for r in compiled.blocked_records if r.rewritten and r.weight_shape[2:] == (3, 3)
    ]
    assert len(rewritten) + len(to_blocked) == _eligible(model)
    assert len(blocked_3x3) >= len(to_blocked)
    for r in compiled.records:
        if not r.rewritten and r.index not in to_blocked:
            assert r.weight_shape[2:] != (3, 3) or "not 3x3" in r.reason or "1x1" in r.reason
    if isinstance(scheme, BlockPatternScheme):
        assert {r.kind for r in rewritten} == {"block"} and not to_blocked
    np.testing.assert_allclose(compiled(x.numpy()), ref, rtol=1e-4, atol=1e-4)


def test_export_library_and_reload(tmp_path):
    model = _pruned("digits-cnn", PatternConnectivityScheme(density=1 / 6))
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        ref = model(x).numpy()
    compiled = compile_torch(model, x, verify=True)
    verified = [r for r in [*compiled.records, *compiled.blocked_records] if r.rewritten]
    assert len(verified) >= 3  # the three convs, pattern or blocked
    assert all(r.max_abs_error is not None and r.max_abs_error < 1e-4 for r in verified)
    path = compiled.export_library(tmp_path / "digits.so")
    vm = load_compiled(path)
    out = vm["main"](tensor(x.numpy(), tvm.cpu()))
    out = out[0] if not hasattr(out, "numpy") else out
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-4)
