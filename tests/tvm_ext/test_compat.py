"""The pinned TVM works through our compat layer: build, run, serialise."""

from __future__ import annotations

import numpy as np

from tvm_ext import _compat as C


def test_te_function_compiles_and_runs_on_host():
    n = 37
    a = C.te.placeholder((n,), name="a")
    b = C.te.compute((n,), lambda i: a[i] * 2.0 + 1.0, name="b")
    func = C.te.create_prim_func([a, b])
    ex = C.tvm.compile(func, target=C.host_target())
    dev = C.tvm.cpu()
    x = np.random.default_rng(0).standard_normal(n).astype("float32")
    out = C.tensor(np.zeros(n, "float32"), dev)
    ex.mod["main"](C.tensor(x, dev), out)
    np.testing.assert_allclose(out.numpy(), x * 2 + 1, rtol=1e-6)


def test_ir_serialisation_does_not_crash():
    # apache-tvm-ffi 0.1.15 segfaults here; pyproject pins < 0.1.15.
    a = C.te.placeholder((4,), name="a")
    func = C.te.create_prim_func([a, C.te.compute((4,), lambda i: a[i] + 1.0)])
    text = C.tvm.ir.save_json(func)
    again = C.tvm.ir.load_json(text)
    C.tvm.ir.assert_structural_equal(func, again)


def test_thread_setting(monkeypatch):
    monkeypatch.delenv("TVM_NUM_THREADS", raising=False)
    assert C.set_threads(2) == 2 and C.cpu_threads() == 2
    assert C.TVM_VERSION.startswith(C.SUPPORTED_VERSIONS)


def test_metaschedule_logging_survives_unnamed_handlers(capsys):
    """MetaSchedule's logger setup crashes on an unnamed handler on its logger (pytest >= 9.2
    attaches one to non-propagating loggers); they are set aside during tuning only."""
    import logging

    from tvm_ext._compat import meta_schedule as ms
    from tvm_ext._compat import metaschedule_logging

    ms_logger = logging.getLogger("tvm.s_tir.meta_schedule")
    stray = logging.StreamHandler()  # no name
    ms_logger.addHandler(stray)
    try:
        with metaschedule_logging():
            assert stray not in ms_logger.handlers
            # what tune-context creation calls: fails with an unnamed handler attached
            ms.logging.create_loggers(
                log_dir="/tmp", params=[{"log_dir": "/tmp", "logger_name": "probe"}]
            )
            print("to stderr")
        assert stray in ms_logger.handlers
        captured = capsys.readouterr()
        assert "to stderr" in captured.err and "to stderr" not in captured.out
    finally:
        ms_logger.removeHandler(stray)
