"""Load TVM without loading torch, where the process has not loaded torch yet.

Imported first by :mod:`tvm_ext._compat`, so every TVM import of ``tvm_ext`` goes through it.
"""

from __future__ import annotations

import sys


def _import_tvm_without_torch() -> None:
    """Import TVM without loading torch where the process has not loaded it yet.

    ``tvm_ffi``'s ``__init__`` imports torch first whenever it is installed (a workaround for
    a symbol clash seen on Windows only), so a TVM user taking ``tvm_ext`` alone would pay
    for torch (seconds, ~1 GB) without using it. While TVM loads, torch is made unimportable
    (``sys.modules["torch"] = None``: ``import torch`` raises ImportError, which tvm_ffi
    catches); a process that imported torch before is left as it is. What tvm_ffi then does
    without torch: it does not recognise ``torch.dtype`` objects as dtypes (``tvm_ext``
    passes numpy arrays and dtype strings)."""
    if "torch" in sys.modules:
        import tvm

        return
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        import tvm  # noqa: F401
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]


_import_tvm_without_torch()
