"""Builder and runner settings that work for pattern-sparse kernels on small machines.

- Builder: MetaSchedule's default build function imports ``tvm.s_tir.tensor_intrin`` in every
  fresh worker (~25 s, mostly CUDA intrinsics) and the local builder restarts its pool per
  batch, so every candidate hits the 30 s timeout on a 2-core box. :func:`fast_build`
  builds the same way without that import.
- Runner: MetaSchedule fills integer arguments with random values; sparse kernels gather
  with their index arrays, so random values read out of bounds. :func:`alloc_sparse_arguments`
  draws channel indices inside the input's channel range and permutations for the 1-D
  output-channel maps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tvm_ext._compat import meta_schedule as ms


def fast_build(mod: Any, target: Any, _params: Any) -> Any:
    """``ms.builder.default_build`` without importing the tensor intrinsics."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm_build(mod, target=target)


def alloc_sparse_arguments(device: Any, args_info: Any, alloc_repeat: int) -> list[list[Any]]:
    """Random arguments whose integer arrays are valid indices for our kernels.

    Float tensors: uniform noise. 2-D int tensors (channel indices): values below the
    smallest channel count of the 4-D float tensors. 1-D int tensors (filter maps): a
    permutation of their range. Deterministic per call (seeded).
    """
    import tvm

    rng = np.random.default_rng(0)
    channels = [
        int(shape[1]) for _, dtype, shape in args_info if "float" in dtype and len(shape) == 4
    ]
    bound = max(1, min(channels)) if channels else 1
    out = []
    for _ in range(alloc_repeat):
        args = []
        for _, dtype, shape in args_info:
            if "int" in dtype:
                if len(shape) == 1:
                    arr = rng.permutation(int(shape[0])).astype(dtype)
                else:
                    arr = rng.integers(0, bound, size=shape).astype(dtype)
            else:
                arr = rng.uniform(-1, 1, size=shape).astype(dtype)
            args.append(tvm.runtime.tensor(arr, device))
        out.append(args)
    return out


def make_builder(*, max_workers: int = 2, timeout_sec: float = 120.0) -> Any:
    return ms.builder.LocalBuilder(
        max_workers=max_workers, timeout_sec=timeout_sec, f_build=fast_build
    )


def make_runner(*, number: int = 3, repeat: int = 1, min_repeat_ms: int = 20) -> Any:
    return ms.runner.LocalRunner(
        f_alloc_argument=alloc_sparse_arguments,
        evaluator_config=ms.runner.EvaluatorConfig(
            number=number, repeat=repeat, min_repeat_ms=min_repeat_ms, enable_cpu_cache_flush=False
        ),
    )
