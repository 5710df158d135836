"""Peak memory of each ``patsparse bench`` engine, each loaded and run once in a fresh
process (``peak_mb``), and above that process's imports (``model_mb``).

The probe is a small script run with this interpreter: ``torch`` loads a pickled module,
``tvm`` a compiled engine's exported library.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from patsparse.core.errors import PatsparseError

_MEMORY_SCRIPT = r"""
import json, resource, sys, numpy as np


def peak_mb():
    # VmHWM is this process's own peak (ru_maxrss survives execve: it starts at the parent's)
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


kind, path, shape, threads = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
x = np.random.default_rng(0).standard_normal(shape).astype("float32")
if kind == "torch":
    import torch
    torch.set_num_threads(threads)
    base = peak_mb()
    model = torch.load(path, weights_only=False).eval()
    with torch.no_grad():
        model(torch.from_numpy(x))
else:
    import tvm
    from tvm import relax
    base = peak_mb()
    vm = relax.VirtualMachine(tvm.runtime.load_module(path), tvm.cpu())
    vm["main"](tvm.runtime.tensor(x, tvm.cpu()))
print(json.dumps({"peak_mb": peak_mb(), "model_mb": peak_mb() - base}))
"""


def peak_memory(kind: str, path: Path, shape: tuple[int, ...], threads: int) -> dict[str, float]:
    """Peak RSS of a fresh process that loads and runs the model once (``model_mb``: above
    the process after its imports)."""
    env = dict(os.environ, TVM_NUM_THREADS=str(threads))
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _MEMORY_SCRIPT,
            kind,
            str(path),
            json.dumps(list(shape)),
            str(threads),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    if out.returncode != 0:
        raise PatsparseError(f"memory probe ({kind}) failed: {out.stderr.strip()[-400:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return {k: round(float(v), 1) for k, v in data.items()}


def engines_peak_memory(
    dense: nn.Module, engines: dict[str, Any], shape: tuple[int, ...], threads: int
) -> dict[str, Any]:
    """:func:`peak_memory` of the dense PyTorch model and of every compiled engine (exported
    to a library first), by engine name."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="patsparse-bench-") as tmp:
        path = Path(tmp) / "dense.pt"
        torch.save(dense, path)
        out["pytorch_dense"] = peak_memory("torch", path, shape, threads)
        for name, comp in engines.items():
            lib = comp.export_library(Path(tmp) / f"{name}.so")
            out[name] = peak_memory("tvm", lib, shape, threads)
    return out
