"""The passes on a module from TVM's ONNX frontend: a pruned PyTorch model written by
``torch.onnx.export``, read back by ``tvm.relax.frontend.onnx`` (through
``tvm_ext._compat.from_onnx``) and compiled by ``tvm_ext.pipeline`` exactly as a module from
``torch.export`` is: the same convs rewritten, the same kernels, PyTorch's output."""

from __future__ import annotations

import numpy as np

# the dev extra installs the onnx extra (onnx for the importer, onnxscript for
# torch.onnx.export): without it these tests fail rather than skip
import onnx  # noqa: F401
import onnxscript  # noqa: F401
import pytest
import torch
from torch import nn

from patsparse.compiler import compile_torch
from patsparse.core.errors import PatsparseError
from patsparse.pruning import MagnitudePruner
from patsparse.schemes import (
    BlockPatternScheme,
    PatternConnectivityScheme,
    PruningPlan,
    Scheme,
)
from tvm_ext._compat import from_onnx, relax, tensor, tirx, tvm
from tvm_ext.pipeline import compile_module, pattern_sparse_pipeline
from tvm_ext.targets import make_target


class _ResidualNet(nn.Module):
    """conv-BN-ReLU, a residual block of two 3x3 convs, a strided 3x3 conv, pooling and a
    linear head: what ONNX spells as Conv (BN folded by the exporter), Add, Relu,
    GlobalAveragePool, Flatten and Gemm."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.a = nn.Conv2d(16, 16, 3, padding=1)
        self.b = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.down = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        y = torch.relu(y + self.b(torch.relu(self.a(y))))
        y = torch.relu(self.down(y))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


def _pruned(scheme: Scheme) -> nn.Module:
    torch.manual_seed(0)
    model = _ResidualNet().eval()
    bn = model.stem[1]
    with torch.no_grad():  # a BN that does something: folding must keep the zeros zero
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
    pruner = MagnitudePruner(PruningPlan(default=scheme, skip_first_conv=False))
    pruner.prepare(model)
    pruner.step()
    pruner.squash_mask()
    return model


def _onnx_module(model: nn.Module, x: torch.Tensor, path, **options):
    torch.onnx.export(
        model, (x,), str(path), input_names=["x"], output_names=["y"], external_data=False
    )
    return from_onnx(path, **options)


def _summary(records) -> list[tuple]:
    return [(r.rewritten, r.kind, r.fused, r.function, r.storage_bytes) for r in records]


def test_onnx_module_is_rewritten_as_the_torch_export_one(tmp_path):
    model = _pruned(PatternConnectivityScheme(density=1 / 4))
    x = torch.randn(1, 8, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x).numpy()
    mod = _onnx_module(model, x, tmp_path / "model.onnx")
    target = make_target("host")
    from_onnx_model = compile_module(mod, target=target, verify=True)
    from_torch = compile_torch(model, x, target=target)
    # every 3x3 conv rewritten into a pattern-sparse kernel, checked against the dense conv
    rewritten = [r for r in from_onnx_model.records if r.rewritten]
    assert len(rewritten) == 4 and {r.kind for r in rewritten} == {"kernel"}
    assert all(r.function.startswith("pattern_sparse_conv2d_") for r in rewritten)
    assert all(r.max_abs_error is not None and r.max_abs_error < 1e-4 for r in rewritten)
    # the ONNX graph gets exactly the rewrite torch.export's gets: same kernels, fusions, bytes
    assert _summary(from_onnx_model.records) == _summary(from_torch.records)
    chains = [[c.to_dict() for c in m.chain_records] for m in (from_onnx_model, from_torch)]
    assert chains[0] == chains[1]
    np.testing.assert_allclose(from_onnx_model(x.numpy()), ref, rtol=1e-4, atol=1e-4)


def test_block_pattern_onnx_module_is_lowered_to_our_kernels_only(tmp_path):
    """``pattern_sparse_pipeline`` applied to the imported module: the dense convs are gone
    (every conv function is ours: the block-pattern kernels, and the linear head on the
    blocked kernel), and the pipeline as ``relax_pipeline`` of an ordinary ``tvm.compile``
    gives PyTorch's output."""
    from tvm_ext.pipeline import default_sparse_pass

    model = _pruned(BlockPatternScheme(density=1 / 4, block_size=16))
    x = torch.randn(1, 8, 16, 16)
    mod = _onnx_module(model, x, tmp_path / "model.onnx")
    target = make_target("host")
    with target:
        lowered = pattern_sparse_pipeline(target)(mod)
    convs = sorted(
        gv.name_hint
        for gv, f in lowered.functions_items()
        if isinstance(f, tirx.PrimFunc) and "conv2d" in gv.name_hint
    )
    # (chained: reading or writing the blocked layout of the conv next to it)
    assert convs[0].startswith("blocked_conv2d_0") and len(convs) == 5, convs
    assert all(n.startswith(f"pattern_sparse_conv2d_{i}") for i, n in enumerate(convs[1:]))
    sparse = default_sparse_pass(target=target)
    ex = tvm.compile(mod, target, relax_pipeline=pattern_sparse_pipeline(target, sparse=sparse))
    assert [(r.rewritten, r.kind) for r in sparse.records] == [(True, "block")] * 4
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tensor(x.numpy()))
    with torch.no_grad():
        np.testing.assert_allclose(out.numpy(), model(x).numpy(), rtol=1e-4, atol=1e-4)


def test_weights_kept_as_inputs_are_left_dense_until_bound(tmp_path):
    """With ``keep_params_in_input=True`` the weights are function parameters, not constants:
    the pass cannot read their sparsity and leaves the convs to TVM. Binding them as
    constants (``relax.frontend.detach_params`` + ``BindParams``) lets it rewrite them."""
    from tvm_ext.pipeline import default_sparse_pass, rewrite_passes

    model = _pruned(PatternConnectivityScheme(density=1 / 4))
    x = torch.randn(1, 8, 16, 16)
    mod = _onnx_module(model, x, tmp_path / "model.onnx", keep_params_in_input=True)

    def rewritten(m) -> list[bool]:
        sparse = default_sparse_pass()
        tvm.transform.Sequential(rewrite_passes(sparse=sparse))(m)
        return [r.rewritten for r in sparse.records]

    assert rewritten(mod) == [False] * 4
    mod, params = relax.frontend.detach_params(mod)
    weights = mod["main"].params[int(mod["main"].attrs["num_input"]) :]
    bound = relax.transform.BindParams("main", dict(zip(weights, params["main"], strict=True)))(mod)
    assert rewritten(bound) == [True] * 4


def test_from_onnx_without_onnx_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    with pytest.raises(PatsparseError, match=r"patsparse\[onnx\]"):
        from_onnx("model.onnx")
