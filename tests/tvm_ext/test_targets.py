"""Target presets (host, arm64, adreno), overrides, and cross-linked export."""

from __future__ import annotations

import shutil

import pytest

from tvm_ext._compat import te, tvm
from tvm_ext.layout import analyze_conv_weight
from tvm_ext.schedules.dispatch import schedule_pattern_primfunc
from tvm_ext.targets import (
    PRESETS,
    TargetOptions,
    export_library,
    is_cross,
    is_gpu,
    make_target,
    vector_lanes,
)
from tvm_ext.te.conv_spec import ConvGeometry, Epilogue
from tvm_ext.te.pattern_conv import pattern_conv2d_te


def test_presets_and_overrides():
    host = make_target("host")
    assert host.kind.name == "llvm" and not is_cross(host) and not is_gpu(host)
    arm = dict(make_target("arm64").export())
    assert arm["mtriple"] == "aarch64-linux-gnu" and "+neon" in arm["mattr"]
    assert arm["num-cores"] == PRESETS["arm64"].num_cores
    phone = dict(
        make_target(
            "arm64", mcpu="cortex-a76", mtriple="aarch64-linux-android", num_cores=8
        ).export()
    )
    assert (phone["mcpu"], phone["mtriple"], phone["num-cores"]) == (
        "cortex-a76",
        "aarch64-linux-android",
        8,
    )
    assert is_cross(make_target("arm64"))
    # TVM fills this machine's triple into a plain llvm target: that still runs here
    assert not is_cross(tvm.target.Target("llvm"))
    adreno = make_target("adreno")
    assert adreno.kind.name == "opencl" and is_gpu(adreno) and is_cross(adreno)
    assert "adreno" in [str(k) for k in adreno.keys]
    assert int(adreno.attrs["max_num_threads"]) == 256
    assert dict(adreno.host.export())["mtriple"] == "aarch64-linux-gnu"
    assert vector_lanes(make_target("arm64")) == 4 and vector_lanes(adreno) == 4


def test_options_validate_and_round_trip():
    opts = TargetOptions(preset="arm64", mcpu="cortex-a55", cc="/ndk/clang++")
    assert TargetOptions.from_json(opts.to_json()) == opts
    assert (
        opts.normalized().mtriple == "aarch64-linux-gnu" and opts.normalized().cc == "/ndk/clang++"
    )
    with pytest.raises(ValueError, match="unknown target preset 'phone'"):
        TargetOptions(preset="phone")
    with pytest.raises(ValueError, match="num_cores"):
        TargetOptions(preset="arm64", num_cores=0)


def test_deploy_resolves_presets():
    from patsparse.compiler.targets import resolve_target
    from patsparse.core.errors import PatsparseError
    from tvm_ext.targets import PRESET_NAMES as TARGETS

    assert set(TARGETS) == {"host", "arm64", "adreno"}
    assert dict(resolve_target("arm64", mcpu="cortex-a55").export())["mcpu"] == "cortex-a55"
    with pytest.raises(PatsparseError, match="use one of host, arm64, adreno"):
        resolve_target("riscv")


def _sparse_conv(h, block=None):
    w = h.pattern_weight(16, 8, density=0.25, block=block, seed=1)
    geo = ConvGeometry((1, 8, 8, 16), (1, 1), (1, 1, 1, 1))
    return te.create_prim_func(
        pattern_conv2d_te(geo, analyze_conv_weight(w, block=block), Epilogue(relu=True))
    )


def test_arm64_schedule_uses_neon_lanes_and_compiles_to_fmla(h):
    target = make_target("arm64")
    func = schedule_pattern_primfunc(_sparse_conv(h), target=target)
    script = func.script()
    assert "T.vectorized(4)" in script and "T.vectorized(16)" not in script
    host_script = schedule_pattern_primfunc(_sparse_conv(h), target=make_target("host")).script()
    assert "T.vectorized(4)" not in host_script  # the host keeps its wider vectors
    ex = tvm.compile(tvm.IRModule({"main": func}), target=target)
    asm = ex.mod.inspect_source("s")
    assert "fmla" in asm and ".4s" in asm  # NEON fused multiply-add on 4 fp32 lanes


@pytest.mark.skipif(
    shutil.which("aarch64-linux-gnu-g++") is None,
    reason="needs g++-aarch64-linux-gnu (.ci/run installs it)",
)
def test_export_cross_links_an_aarch64_library(h, tmp_path):
    target = make_target("arm64")
    func = schedule_pattern_primfunc(_sparse_conv(h, block=4), target=target)
    ex = tvm.compile(tvm.IRModule({"main": func}), target=target)
    lib = export_library(ex, tmp_path / "conv.so", target).read_bytes()
    assert lib[:4] == b"\x7fELF" and int.from_bytes(lib[18:20], "little") == 183  # EM_AARCH64
