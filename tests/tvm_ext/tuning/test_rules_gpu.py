"""The GPU design space of the pattern-sparse rule (Adreno target), without tuning."""

from __future__ import annotations

import pytest

import tvm_ext.tuning.rules  # noqa: F401  (registers the rules)
from tvm_ext._compat import meta_schedule as ms
from tvm_ext._compat import te, tvm
from tvm_ext.layout import analyze_conv_weight
from tvm_ext.rpc.opencl import kernel_bundle
from tvm_ext.targets import make_target
from tvm_ext.te.conv_spec import ConvGeometry, Epilogue
from tvm_ext.te.pattern_conv import pattern_conv2d_te


@pytest.mark.parametrize("block", [None, 8])
def test_gpu_design_space_binds_threads_and_builds_opencl(h, block):
    target = make_target("adreno")
    w = h.pattern_weight(16, 8, density=1 / 4, block=block, seed=0)
    geo = ConvGeometry((1, 8, 8, 12), (1, 1), (1, 1, 1, 1))
    func = te.create_prim_func(
        pattern_conv2d_te(geo, analyze_conv_weight(w, block=block), Epilogue(relu=True))
    )
    ctx = ms.TuneContext(
        mod=tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
        target=target,
        space_generator=ms.space_generator.PostOrderApply(
            sch_rules="from-target", postprocs="from-target", mutator_probs="from-target"
        ),
        task_name="pattern_conv_gpu",
    )
    spaces = ctx.generate_design_space()
    assert len(spaces) == 1
    kinds = [str(inst.kind.name) for inst in spaces[0].trace.insts]
    assert "SamplePerfectTile" in kinds and "Bind" in kinds and "CacheWrite" in kinds
    sch = spaces[0].copy()
    for postproc in ctx.space_generator.postprocs:  # incl. VerifyGPUCode, RewriteUnboundBlock
        assert postproc.apply(sch), type(postproc).__name__
    bundle, _ = kernel_bundle(sch.mod["main"], target)
    assert bundle.kernels and all(k.local_size[0] <= 256 for k in bundle.kernels)
