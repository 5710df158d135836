"""An application's compiled model on a device behind an RPC tracker (a phone, or the
emulated arm64 device of ``patsparse devices up arm64``): its output against PyTorch's and
its time there. Emulated timings (qemu) say nothing about a phone's speed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from patsparse.apps.base import App
from patsparse.apps.table import summary_ms, timing_input
from patsparse.compiler.compile import compile_torch
from patsparse.compiler.engines import time_on_device
from patsparse.compiler.remote import remote_measure
from patsparse.compiler.targets import resolve_target
from patsparse.core.errors import RemoteError


def device_check(
    app: App,
    model: nn.Module,
    *,
    tracker: str,
    key: str,
    size: int = 64,
    target: str = "arm64",
    repeat: int = 3,
    threads: int | None = None,
) -> dict[str, Any]:
    """Compile ``model`` for ``target`` at a ``size``² input, run and time it on the device
    ``key`` at ``tracker``; the largest difference from PyTorch and the device's times (ms)."""
    tgt = resolve_target(target)
    remote_measure(tgt, tracker, key)  # a clear error now if the device does not serve
    x = timing_input(app, size)
    xn = np.ascontiguousarray(x.numpy())
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    compiled = compile_torch(model, x, target=tgt)
    runs = time_on_device(
        compiled,
        xn,
        name=f"{app.name} (patsparse)",
        tracker=tracker,
        key=key,
        repeat=repeat,
        threads=threads,
        output=True,
    )
    if runs.output is None:
        raise RemoteError(f"the device {key!r} returned no output for {app.name}")
    return {
        "app": app.name,
        "target": target,
        "key": key,
        "input_shape": list(x.shape),
        "max_abs_error_vs_pytorch": float(np.abs(runs.output - ref).max()),
        "device_ms": summary_ms(runs.times_ms),
        "threads": runs.threads,
        "note": "an emulated device's timings say nothing about a phone",
    }
