"""The emulated arm64 phone's file system: a minimal Debian arm64 root with Python and the
aarch64 apache-tvm wheel (runtime only), built once and cached.

Built without running any emulated code: ``mmdebstrap --variant=extract`` unpacks the arm64
Debian packages (Python 3.11, libstdc++), and pip on this machine installs the aarch64 wheels
into ``<root>/opt/tvm-site`` with ``--platform``. The compiler library is removed (the server
only loads modules). The root is cached in ``~/.cache/patsparse/arm64-root-<versions>``
(``PATSPARSE_CACHE`` overrides the cache directory); a marker file written last says it is
complete, so an interrupted build is redone.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from patsparse.core.errors import DeviceSetupError

#: what the arm64 root holds besides Python (all from Debian bookworm)
DEBIAN_PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6", "libgcc-s1")
#: aarch64 wheels installed next to apache-tvm (the server's imports)
EXTRA_WHEELS = ("numpy", "ml_dtypes", "typing_extensions", "cloudpickle", "psutil")
COMPLETE_MARKER = ".patsparse-complete"
#: host tools the emulated arm64 device needs (Debian package in brackets)
HOST_TOOLS = {
    "qemu-aarch64-static": "qemu-user-static",
    "mmdebstrap": "mmdebstrap",
    "aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu",
}


def cache_dir() -> Path:
    """``$PATSPARSE_CACHE`` or ``~/.cache/patsparse``."""
    return Path(os.environ.get("PATSPARSE_CACHE", Path.home() / ".cache" / "patsparse"))


def missing_tools(tools: dict[str, str] | None = None) -> list[str]:
    """Debian packages whose program is not on PATH (empty when everything is there)."""
    tools = HOST_TOOLS if tools is None else tools
    return sorted({pkg for exe, pkg in tools.items() if shutil.which(exe) is None})


@dataclass(frozen=True)
class Arm64Root:
    """Where the root lives and what goes into it."""

    path: Path
    tvm_version: str
    ffi_version: str
    suite: str = "bookworm"

    @classmethod
    def default(cls) -> Arm64Root:
        """The cached root for the TVM versions installed on this machine."""
        tvm_version = importlib.metadata.version("apache-tvm")
        ffi_version = importlib.metadata.version("apache-tvm-ffi")
        return cls(
            cache_dir() / f"arm64-root-tvm{tvm_version}-ffi{ffi_version}", tvm_version, ffi_version
        )

    @property
    def python(self) -> Path:
        return self.path / "usr" / "bin" / "python3.11"

    @property
    def site(self) -> Path:
        return self.path / "opt" / "tvm-site"

    @property
    def complete(self) -> bool:
        return (self.path / COMPLETE_MARKER).is_file()

    def ensure(self, *, log: bool = False) -> Arm64Root:
        """Build the root unless a complete one is cached; returns ``self``.

        Processes that start devices at once (test workers, two users' ``patsparse
        devices up``) build it one at a time: the build holds an exclusive lock on
        ``<root>.lock``, and a process that waited for it finds the root complete."""
        if self.complete:
            return self
        missing = missing_tools({"mmdebstrap": "mmdebstrap"})
        if missing:
            raise DeviceSetupError(
                f"building the arm64 root needs {', '.join(missing)}: "
                f"apt-get install {' '.join(missing)}"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if not self.complete:
                self._build(log=log)
        return self

    def _build(self, *, log: bool) -> None:
        tmp = self.path.with_name(self.path.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        sources = Path("/etc/apt/sources.list.d/debian.sources")
        mirror = [str(sources)] if sources.is_file() else []  # the host's mirrors, if any
        out = None if log else subprocess.DEVNULL
        _run(
            [
                "mmdebstrap",
                "--quiet",
                "--arch=arm64",
                "--variant=extract",
                f"--include={','.join(DEBIAN_PACKAGES)}",
                self.suite,
                str(tmp),
                *mirror,
            ],
            "mmdebstrap (arm64 root)",
            out,
        )
        site = tmp / "opt" / "tvm-site"
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                str(site),
                "--platform",
                "manylinux_2_28_aarch64",
                "--platform",
                "manylinux2014_aarch64",
                "--platform",
                "manylinux_2_17_aarch64",
                "--only-binary=:all:",
                "--python-version",
                "3.11",
                "--implementation",
                "cp",
                "--abi",
                "cp311",
                "--abi",
                "abi3",
                "--abi",
                "none",
                f"apache-tvm=={self.tvm_version}",
                f"apache-tvm-ffi=={self.ffi_version}",
                *EXTRA_WHEELS,
            ],
            "pip install of the aarch64 wheels",
            out,
        )
        # The server only loads modules: drop the compiler (~230 MB) and the CUDA sidecar.
        for lib in ("libtvm_compiler.so", "libtvm_runtime_cuda.so"):
            (site / "tvm" / "lib" / lib).unlink(missing_ok=True)
        (tmp / COMPLETE_MARKER).write_text(f"{self.tvm_version} {self.ffi_version}\n")
        shutil.rmtree(self.path, ignore_errors=True)
        tmp.rename(self.path)


def _run(cmd: list[str], what: str, out: int | None) -> None:
    proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise DeviceSetupError(f"{what} failed ({proc.returncode}): {proc.stderr[-2000:]}")
