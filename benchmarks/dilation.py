"""A dilated conv (the dilation-2 layers of colorization / segmentation models) vs PyTorch.

    TVM_NUM_THREADS=2 python benchmarks/dilation.py [--channels 128] [--hw 56] [--dilation 2]

One ``C -> C`` 3x3 conv with dilation ``d`` and "same" padding ``d`` (stride 1, bias, batch 1,
fp32, NCHW), compiled with ``compile_torch`` three ways:

- ``dense``: the dense weight on the blocked kernel (``BlockedConv2D``);
- ``block-pattern 8x``: pruned with ``MagnitudePruner`` + ``BlockPatternScheme(density=1/8)``,
  on the block-pattern kernel (``PatternSparseConv2D``);
- ``dense, blocked=False``: the dense weight left to TVM's lowering, as every dilated conv
  was before the passes took dilation (plain loops then, 480 ms; now the pipeline's
  ``ScheduleLeftovers`` gives it a generic tiled schedule).

Each is checked against PyTorch on the same weight. PyTorch's dense conv runs in blocks before
and after the TVM kernels (its OpenMP threads spin after a call and steal the cores from the
call that follows), the TVM kernels interleaved with each other; median (min) of ``--runs``
calls in ms, and PyTorch dense / each (> 1: faster than PyTorch).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

import numpy as np
import torch
from _timing import torch_around
from torch import nn

from patsparse.compiler import compile_torch
from patsparse.pruning import MagnitudePruner
from patsparse.schemes import BlockPatternScheme, PruningPlan
from tvm_ext._compat import tensor, tvm

THREADS = int(os.environ.setdefault("TVM_NUM_THREADS", "2"))


def dilated_conv(channels: int, dilation: int, *, seed: int = 0) -> nn.Module:
    """The layer under test, as a one-conv model."""
    torch.manual_seed(seed)
    conv = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation)
    return nn.Sequential(conv).eval()


def block_pattern_pruned(model: nn.Module, density: float) -> nn.Module:
    """``model`` pruned in place to block-shared patterns at ``density``."""
    plan = PruningPlan(default=BlockPatternScheme(density=density), skip_first_conv=False)
    pruner = MagnitudePruner(plan)
    pruner.prepare(model)
    pruner.step()
    pruner.squash_mask()
    return model


def compiled_call(
    model: nn.Module, x: torch.Tensor, *, blocked: bool = True
) -> Callable[[], object]:
    """The model compiled for this CPU, checked against PyTorch; a call of its VM on ``x``."""
    compiled = compile_torch(model, x, blocked=blocked)
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(compiled(x.numpy()), ref, rtol=1e-3, atol=1e-3)
    kinds = [r.kind for r in (*compiled.records, *compiled.blocked_records) if r.rewritten]
    print(f"  compiled in {compiled.compile_seconds:.1f} s, rewritten: {kinds or 'none'}")
    vm, xt = compiled.vm, tensor(x.numpy(), tvm.cpu())
    return lambda: vm["main"](xt)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--channels", type=int, default=128)
    ap.add_argument("--hw", type=int, default=56)
    ap.add_argument("--dilation", type=int, default=2)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    c, hw, d = args.channels, args.hw, args.dilation
    x = torch.randn(1, c, hw, hw, generator=torch.Generator().manual_seed(1))
    dense = dilated_conv(c, d)
    sparse = block_pattern_pruned(dilated_conv(c, d), 1 / 8)
    print(f"{c}->{c} 3x3 dilation {d} at {hw}x{hw}, TVM_NUM_THREADS={THREADS}")
    runs: dict[str, Callable[[], object]] = {}
    with torch.no_grad():
        runs["torch"] = lambda: dense(x)
        for name, model, blocked in (
            ("dense", dense, True),
            ("block-pattern 8x", sparse, True),
            ("dense, blocked=False", dense, False),
        ):
            print(name)
            runs[name] = compiled_call(model, x, blocked=blocked)
        times = torch_around(runs, args.runs)
    med = {n: float(np.median(t)) for n, t in times.items()}
    low = {n: min(t) for n, t in times.items()}
    # on a shared box PyTorch's two OpenMP threads lose whole barriers to other processes
    # (4 ms calls turn into 30-40 ms), TVM's pool much less: the minimum is the fair figure
    print(f"median (min) of {args.runs} calls, ms; PyTorch dense / it, by median and by min")
    print("| | ms | PyTorch dense / it (median) | (min) |")
    print("|---|---|---|---|")
    for n in runs:
        ratios = f"{med['torch'] / med[n]:.2f}x | {low['torch'] / low[n]:.2f}x"
        print(f"| {n} | {med[n]:.2f} ({low[n]:.2f}) | {ratios} |")


if __name__ == "__main__":
    main()
