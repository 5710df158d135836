"""GPU (Adreno OpenCL) default schedule: threads bound, OpenCL C generated here; the kernels
run on PoCL when it is installed."""

from __future__ import annotations

import numpy as np
import pytest

from tvm_ext._compat import te
from tvm_ext.layout import analyze_conv_weight
from tvm_ext.rpc.opencl import kernel_bundle
from tvm_ext.schedules.dispatch import schedule_pattern_primfunc
from tvm_ext.targets import make_target
from tvm_ext.te.conv_spec import ConvGeometry, Epilogue
from tvm_ext.te.flat_plan import flat_buckets
from tvm_ext.te.pattern_conv import layout_arguments, pattern_conv2d_te


def _case(h, block, stride=(1, 1), padding=(1, 1, 1, 1)):
    w = h.pattern_weight(16, 8, density=0.25, block=block, seed=5)
    layout = analyze_conv_weight(w, block=block)
    geo = ConvGeometry((1, 8, 9, 12), stride, padding)
    epi = Epilogue(bias=True, residual=True, relu=True)
    func = te.create_prim_func(pattern_conv2d_te(geo, layout, epi))
    return w, layout, geo, func


@pytest.mark.parametrize("block", [None, 4, 8])
def test_opencl_source_for_sparse_conv(h, block):
    target = make_target("adreno")
    _, layout, _, func = _case(h, block)
    scheduled = schedule_pattern_primfunc(func, target=target)
    assert "threadIdx.x" in scheduled.script() and "blockIdx.x" in scheduled.script()
    bundle, built = kernel_bundle(scheduled, target)
    # per-kernel layers at stride 1: one flat stage per bucket of filters
    n_conv = 1 if block else len(flat_buckets(layout).values)
    assert len(bundle.kernels) == n_conv + 2  # pad, conv stage(s), epilogue
    assert bundle.source.count("__kernel void") >= len(bundle.kernels)
    assert all(
        k.local_size[0] <= 256 and k.global_size[0] % k.local_size[0] == 0 for k in bundle.kernels
    )
    names = {p[0] for p in bundle.params} | {t[0] for t in bundle.temporaries}
    assert all(a in names for k in bundle.kernels for a in k.args)
    assert [p[0] for p in bundle.params][-1] == "ps_epilogue"
    assert "opencl" in [m.kind for m in built.mod.imports]


@pytest.mark.parametrize("block", [None, 8])
def test_opencl_kernels_match_the_dense_conv_on_pocl(h, block):
    pytest.importorskip("pyopencl", reason="pyopencl + pocl-opencl-icd (.ci/run installs them)")
    from tvm_ext.rpc.devices import missing_for
    from tvm_ext.rpc.opencl import execute

    if missing_for("adreno"):
        pytest.skip(f"needs {missing_for('adreno')} (.ci/run installs them)")
    target = make_target("adreno")
    w, layout, geo, func = _case(h, block, stride=(2, 1), padding=(0, 1, 2, 0))
    bundle, _ = kernel_bundle(schedule_pattern_primfunc(func, target=target), target)
    rng = np.random.default_rng(0)
    oh, ow = geo.out_hw
    x = rng.standard_normal(geo.in_shape).astype("float32")
    bias = rng.standard_normal(16).astype("float32")
    res = rng.standard_normal((1, 16, oh, ow)).astype("float32")
    args = [x, *layout_arguments(layout, geo), bias, res, np.zeros((1, 16, oh, ow), "float32")]
    out, _ = execute(bundle, args)
    ref = h.torch_reference(
        x, w, stride=(2, 1), padding=(0, 1, 2, 0), bias=bias, residual=res, relu=True
    )
    np.testing.assert_allclose(out[-1], ref, rtol=1e-4, atol=1e-4)
