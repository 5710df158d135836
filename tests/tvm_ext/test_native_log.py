from __future__ import annotations

import os

import numpy as np

from tvm_ext.native_log import NOISE, keep_line, without_runtime_noise


def test_noise_lines_are_dropped_and_the_rest_kept(capfd):
    with without_runtime_noise():
        os.write(2, f"[08:37:31] executable.cc:276: {NOISE[0]}\n".encode())
        os.write(2, b"a real warning\n")
        os.write(2, f"[08:37:31] executable.cc:340: {NOISE[1]}\n".encode())
    err = capfd.readouterr().err
    assert err == "a real warning\n"
    assert not keep_line(f"x {NOISE[1]}") and keep_line("Warning: something else")


def test_exporting_and_loading_a_library_prints_no_scope_lines(tmp_path, capfd):
    import torch

    from patsparse.compiler.compile import compile_torch
    from tvm_ext._compat import relax, tensor, tvm
    from tvm_ext.targets import load_library

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    x = torch.randn(1, 3, 6, 6)
    compiled = compile_torch(model, x)
    capfd.readouterr()
    path = compiled.export_library(tmp_path / "m.so")
    vm = relax.VirtualMachine(load_library(path), tvm.cpu())
    out = vm["main"](tensor(x.numpy(), tvm.cpu()))
    out = out if hasattr(out, "numpy") else out[0]
    with torch.no_grad():
        np.testing.assert_allclose(out.numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)
    assert "Scope" not in capfd.readouterr().err
