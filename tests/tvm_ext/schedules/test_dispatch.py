"""Schedule dispatch: a failing fused CPU loop nest falls back to the plain one, and a failing
schedule leaves the layer unscheduled, never broken."""

from __future__ import annotations

import numpy as np
import pytest

import tvm_ext.schedules.cpu as cpu
import tvm_ext.schedules.dispatch as dispatch
from tvm_ext._compat import host_target, te, tensor, tvm
from tvm_ext.layout import analyze_conv_weight
from tvm_ext.te.conv_spec import ConvGeometry, Epilogue
from tvm_ext.te.pattern_conv import layout_arguments, pattern_conv2d_te


def _layer(h):
    w = h.pattern_weight(32, 8, density=0.2, block=16, seed=5)
    lay = analyze_conv_weight(w, block=16)
    geo = ConvGeometry((1, 8, 56, 56), (1, 1), (1, 1, 1, 1))
    return w, lay, geo, te.create_prim_func(pattern_conv2d_te(geo, lay, Epilogue(relu=True)))


def _run(func, lay, geo, x):
    ex = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), host_target())
    out = tensor(np.zeros((1, 32, 56, 56), "float32"), tvm.cpu())
    args = [tensor(np.ascontiguousarray(a), tvm.cpu()) for a in [x, *layout_arguments(lay, geo)]]
    ex.mod["main"](*args, out)
    return out.numpy()


def test_fused_schedule_failure_falls_back_to_the_plain_one(h, monkeypatch):
    w, lay, geo, func = _layer(h)
    x = np.random.default_rng(0).standard_normal(geo.in_shape).astype("float32")
    ref = h.torch_reference(x, w, stride=(1, 1), padding=(1, 1, 1, 1), relu=True)
    before = func.script()
    fused = dispatch.schedule_pattern_primfunc(func)
    assert func.script() == before  # the caller's function is not scheduled in place
    assert fused is not None and "ps_conv_all" in fused.script()

    def broken(_sch):
        raise RuntimeError("simulated schedule error")

    monkeypatch.setattr(cpu, "_schedule_block_rows_in_epilogue", broken)
    plain = dispatch.schedule_pattern_primfunc(func)
    assert plain is not None and int(plain.attrs[dispatch.SCHEDULED_ATTR]) == 1
    assert plain.script() != fused.script()
    np.testing.assert_allclose(_run(plain, lay, geo, x), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_run(fused, lay, geo, x), ref, rtol=1e-5, atol=1e-5)

    monkeypatch.setattr(cpu, "schedule_pattern_conv", lambda *a, **k: broken(None))
    # unscheduled, still correct, and said: never silently slow
    named = func.with_attr("global_symbol", "pattern_sparse_conv2d_7")
    with pytest.warns(dispatch.ScheduleFallbackWarning) as caught:
        assert dispatch.schedule_pattern_primfunc(named).same_as(named)
    (message,) = [str(w.message) for w in caught]
    assert "pattern_sparse_conv2d_7" in message and "simulated schedule error" in message
    assert "ps_conv" in message and "several times slower" in message
