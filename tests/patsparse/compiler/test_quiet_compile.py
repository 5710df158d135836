"""A normal compile prints only patsparse's own output.

Two sources of noise it must not produce:

- torch's ``FutureWarning`` about ``LeafSpec``: ``ExportedProgram.run_decompositions``
  deep-copies its module call graph, and copying the pytree leaves goes through the
  deprecated ``LeafSpec`` constructor (torch 2.13), once per compile;
- TOPI's "Fast mode segfaults when there are out-of-bounds indices" (C++ ``LOG(WARNING)`` to
  stderr, ``include/tvm/topi/transform.h``), logged each time a ``relax.take(mode="fast")``
  is legalised: torch decomposes a reflect/replicate/circular pad into ``arange``/``abs``/
  ``index``, which the Relax frontend imports as such takes; the compaction pass's own
  channel gathers are takes too.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

FAST_TAKE = "Fast mode segfaults"


def _compile_recording(model: nn.Module, x: torch.Tensor, capfd):
    from patsparse.compiler import compile_torch

    capfd.readouterr()  # drop whatever earlier tests left on the file descriptors
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = compile_torch(model, x)
    out, err = capfd.readouterr()
    return compiled, caught, out + err


def _leafspec_warnings(caught) -> list[str]:
    return [
        f"{w.filename}:{w.lineno}: {w.message}"
        for w in caught
        if issubclass(w.category, FutureWarning) and "LeafSpec" in str(w.message)
    ]


def _style_net() -> nn.Module:
    return nn.Sequential(
        nn.ReflectionPad2d(4),
        nn.Conv2d(3, 16, 9),
        nn.ReLU(),
        nn.ReflectionPad2d(1),
        nn.Conv2d(16, 16, 3),
        nn.ReLU(),
    )


def test_reflection_pad_model_compiles_quietly(capfd):
    torch.manual_seed(0)
    model = _style_net().eval()
    x = torch.randn(1, 3, 64, 64)
    compiled, caught, printed = _compile_recording(model, x, capfd)

    assert not _leafspec_warnings(caught)
    assert FAST_TAKE not in printed, printed[:2000]
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(compiled(x.numpy()), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "pad",
    [
        nn.ReflectionPad2d((2, 1, 3, 2)),
        nn.ReplicationPad2d((1, 2, 0, 3)),
        nn.CircularPad2d((2, 2, 1, 1)),
        nn.ZeroPad2d((1, 2, 3, 0)),
        nn.ConstantPad2d((1, 0, 2, 1), 1.5),
    ],
    ids=lambda p: type(p).__name__,
)
def test_every_pad_mode_compiles_quietly_and_matches(pad, capfd):
    torch.manual_seed(0)
    model = nn.Sequential(pad, nn.Conv2d(4, 8, 3), nn.ReLU()).eval()
    x = torch.randn(1, 4, 12, 10)
    compiled, caught, printed = _compile_recording(model, x, capfd)

    assert not _leafspec_warnings(caught)
    assert FAST_TAKE not in printed, printed[:2000]
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(compiled(x.numpy()), ref, rtol=1e-4, atol=1e-4)


def test_channel_pruned_model_compiles_quietly(capfd):
    """Whole-zero filters and input channels: CompactStructuredConv2D's channel gathers."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1)
    ).eval()
    with torch.no_grad():
        model[0].weight[::2] = 0
        model[0].bias[::2] = 0
        model[2].weight[:, ::3] = 0
    x = torch.randn(1, 8, 16, 16)
    compiled, caught, printed = _compile_recording(model, x, capfd)

    assert any(r.rewritten for r in compiled.compact_records)
    assert not _leafspec_warnings(caught)
    assert FAST_TAKE not in printed, printed[:2000]
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(compiled(x.numpy()), ref, rtol=1e-4, atol=1e-4)
