"""``compile_torch`` verifies what runs by default: per layer (a mismatching conv stays
dense) and the final compiled module end to end against PyTorch; a mismatch raises
:class:`VerificationError` naming the worst output and the compile options that avoid it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import patsparse.compiler.compile as compile_mod
from patsparse.compiler import compile_torch
from patsparse.core.errors import VerificationError
from patsparse.pruning import MagnitudePruner
from patsparse.schemes import PatternConnectivityScheme, PruningPlan


def _cnn(*, pruned: bool = True) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
    ).eval()
    if not pruned:  # dense convs: the blocked kernel, chained layouts between them
        return model
    plan = PruningPlan(default=PatternConnectivityScheme(density=1 / 4), skip_first_conv=False)
    pruner = MagnitudePruner(plan)
    pruner.prepare(model)
    pruner.step()
    pruner.squash_mask()
    return model


class ExportsDifferently(nn.Module):
    """Computes one thing under ``torch.export`` and another eagerly: the compiled module
    differs from PyTorch although every kernel is right."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x)
        return y, (y * 2 if torch.compiler.is_exporting() else y * 3)


X = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))


def test_verified_by_default_per_layer_and_end_to_end():
    model = _cnn()
    compiled = compile_torch(model, X)
    check = compiled.verification
    assert check is not None and check.passed and len(check.outputs) == 1
    assert check.outputs[0].shape == (1, 8, 4, 4)
    layers = [r for r in [*compiled.records, *compiled.blocked_records] if r.rewritten]
    assert layers and all(r.max_abs_error is not None for r in layers)
    # what was verified is what runs
    with torch.no_grad():
        ref = model(X).numpy()
    assert np.abs(compiled(X.numpy()) - ref).max() <= check.outputs[0].bound


def test_mismatch_raises_naming_the_worst_output_and_the_way_out():
    torch.manual_seed(0)
    model = ExportsDifferently().eval()
    x = torch.randn(1, 3, 6, 6)
    with pytest.raises(VerificationError) as info:
        compile_torch(model, x)
    message = str(info.value)
    assert "differs from PyTorch: output 1 (1x5x6x6)" in message
    assert "1 of 2 outputs over" in message
    assert "chained layouts, blocked and depthwise kernels off too" in message
    assert "verify=False (--no-verify)" in info.value.fix
    # the way out: not verified, it compiles (and computes what torch.export saw)
    compiled = compile_torch(model, x, verify=False)
    assert compiled.verification is None
    assert all(r.max_abs_error is None for r in compiled.blocked_records)


def test_mismatch_names_the_pipeline_stage_that_fixes_it(monkeypatch):
    """A failure only with chained layouts is reported as such (the check is faked to fail
    on chained modules; the compiles are real)."""
    real = compile_mod.verify_compiled

    def fails_when_chained(compiled, model, example, **kw):
        check = real(compiled, model, example, **kw)
        if any(r.chained_output for r in compiled.chain_records):
            bad = check.outputs[0].__class__(0, check.outputs[0].shape, 1.0, 1e-4, (0, 0, 0, 0))
            return check.__class__((bad,), check.seconds)
        return check

    monkeypatch.setattr(compile_mod, "verify_compiled", fails_when_chained)
    with pytest.raises(VerificationError) as info:
        compile_torch(_cnn(pruned=False), X)
    assert "it matches when compiled without chained layouts (chain=False)" in str(info.value)
    assert info.value.fix.startswith("compile with chain=False")
