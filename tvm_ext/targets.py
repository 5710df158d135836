"""Target presets: ``host``, ``arm64`` (phone CPU, NEON) and ``adreno`` (phone GPU, OpenCL).

Each preset is a :class:`TargetOptions` away from a TVM target and from the compiler that
links libraries for it:

- ``host``: llvm for this CPU (``mcpu`` from LLVM's host detection); linked with the host g++.
- ``arm64``: llvm, ``mtriple=aarch64-linux-gnu``, ``+neon``; cross-linked with
  ``aarch64-linux-gnu-g++`` (Debian ``g++-aarch64-linux-gnu``). For Android set
  ``mtriple="aarch64-linux-android"`` and the linker to the NDK's clang++
  (``$NDK/toolchains/llvm/prebuilt/linux-x86_64/bin/aarch64-linux-android33-clang++``):
  ``PATSPARSE_CROSS_CC`` (read by :func:`export_library` and by the tuning builder's worker
  processes) or ``export_library(..., cc_path=TargetOptions(...).normalized().cc)``.
- ``adreno``: the ``qcom/adreno-opencl`` tag (256 threads a work-group, 16 KB local memory)
  with the arm64 preset as host; the library holds the OpenCL kernels next to the aarch64
  host code.

Every option is overridable (``mcpu``, ``mtriple``, ``num_cores``, ``cc``); the defaults live
in :data:`PRESETS` only.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tvm_ext._compat import Target, cc, cpu_threads, host_target, host_triple, tvm
from tvm_ext.native_log import without_runtime_noise

PRESET_NAMES = ("host", "arm64", "adreno")
ADRENO_TAG = "qcom/adreno-opencl"


@dataclass(frozen=True)
class TargetOptions:
    """One target preset and its overrides (``None``: the preset's default)."""

    preset: str = "host"
    mcpu: str | None = None
    mtriple: str | None = None
    num_cores: int | None = None
    #: C++ compiler that links exported libraries (cross compiler / NDK clang++)
    cc: str | None = None
    version: int = 1

    def __post_init__(self) -> None:
        self._sanity_check()

    def _sanity_check(self) -> None:
        if self.preset not in PRESET_NAMES:
            raise ValueError(
                f"unknown target preset {self.preset!r}; use one of {', '.join(PRESET_NAMES)}"
            )
        if self.num_cores is not None and self.num_cores < 1:
            raise ValueError(f"num_cores must be >= 1, got {self.num_cores}")

    def normalized(self) -> TargetOptions:
        """Defaults filled in from :data:`PRESETS` (env ``PATSPARSE_CROSS_CC`` for ``cc``)."""
        base = PRESETS[self.preset]
        cross = os.environ.get("PATSPARSE_CROSS_CC") if self.preset != "host" else None
        return replace(
            self,
            mcpu=self.mcpu or base.mcpu,
            mtriple=self.mtriple or base.mtriple,
            num_cores=self.num_cores or base.num_cores,
            cc=self.cc or cross or base.cc,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TargetOptions:
        return cls(**json.loads(text))


#: the single source of defaults (``num_cores`` of the phone presets: a big-core cluster)
PRESETS: dict[str, TargetOptions] = {
    "host": TargetOptions(preset="host"),
    "arm64": TargetOptions(
        preset="arm64", mtriple="aarch64-linux-gnu", num_cores=4, cc="aarch64-linux-gnu-g++"
    ),
    "adreno": TargetOptions(
        preset="adreno", mtriple="aarch64-linux-gnu", num_cores=4, cc="aarch64-linux-gnu-g++"
    ),
}


def _llvm_arm64(opts: TargetOptions) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "kind": "llvm",
        "mtriple": opts.mtriple,
        "mattr": ["+neon"],
        "num-cores": opts.num_cores,
    }
    if opts.mcpu:
        cfg["mcpu"] = opts.mcpu
    return cfg


def make_target(options: TargetOptions | str = "host", **overrides: Any) -> Target:
    """The TVM target of a preset, e.g. ``make_target("arm64", mcpu="cortex-a76")``."""
    opts = TargetOptions(preset=options, **overrides) if isinstance(options, str) else options
    opts = opts.normalized()
    if opts.preset == "host":
        tgt = host_target(num_cores=opts.num_cores or cpu_threads())
        if opts.mcpu:
            tgt = Target({**dict(tgt.export()), "mcpu": opts.mcpu})
        return tgt
    if opts.preset == "arm64":
        return Target(_llvm_arm64(opts))
    return Target(ADRENO_TAG, host=_llvm_arm64(opts))


def is_gpu(target: Target | None) -> bool:
    """True for GPU targets (threads must be bound): OpenCL, CUDA, Vulkan, ..."""
    return target is not None and "gpu" in [str(k) for k in target.keys]


def host_of(target: Target) -> Target:
    """The CPU part of a target (itself for CPU targets)."""
    return target.host if is_gpu(target) and target.host is not None else target


def is_cross(target: Target) -> bool:
    """True when code for ``target`` cannot run on this machine (a GPU, or a triple of another
    architecture; TVM fills in this machine's triple on a plain ``Target("llvm")``)."""
    if is_gpu(target):
        return True
    mtriple = str(dict(target.export()).get("mtriple") or "")
    return bool(mtriple) and mtriple.split("-")[0] != host_triple().split("-")[0]


def vector_lanes(target: Target | None) -> int:
    """fp32 lanes of the target's SIMD registers: 16 (AVX-512), 8 (AVX2), 4 (NEON, other)."""
    if target is None:
        return 16
    cfg = dict(host_of(target).export())
    mtriple = str(cfg.get("mtriple") or "")
    if mtriple.startswith(("aarch64", "arm")):
        return 4
    mcpu = str(cfg.get("mcpu") or "")
    attrs = " ".join(str(a) for a in cfg.get("mattr") or ())
    if "avx512" in attrs or any(
        c in mcpu
        for c in (
            "avx512",
            "skylake-avx512",
            "znver4",
            "znver5",
            "icelake",
            "sapphirerapids",
            "cascadelake",
            "tigerlake",
        )
    ):
        return 16
    if mcpu in ("", "generic"):
        return 16 if mtriple == "" else 4  # host target without mcpu: the default schedule's
    return 8


def linker(target: Target, cc_path: str | None = None) -> Any:
    """``fcompile`` for ``export_library``: the cross compiler for remote targets, else None
    (TVM's default host compiler)."""
    if not is_cross(target) and cc_path is None:
        return None
    compiler = cc_path or os.environ.get("PATSPARSE_CROSS_CC") or PRESETS["arm64"].cc
    return cc.cross_compiler(compiler)


def export_library(
    executable: Any, path: str | Path, target: Target, *, cc_path: str | None = None
) -> Path:
    """Write a compiled module as a shared library the device loads (cross-linked for arm64;
    the OpenCL kernels of an ``adreno`` build travel inside it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fcompile = linker(target, cc_path)
    with without_runtime_noise():
        if fcompile is None:
            executable.export_library(str(path))
        else:
            executable.export_library(str(path), fcompile=fcompile)
    return path


def load_library(path: str | Path) -> Any:
    """A shared library written by :func:`export_library`, loaded in this process."""
    with without_runtime_noise():
        return tvm.runtime.load_module(str(path))
