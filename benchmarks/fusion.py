"""Pads and nearest upsamplings fused into the following conv, vs the same ops unfused and
PyTorch.

    TVM_NUM_THREADS=2 python benchmarks/fusion.py [--runs 25] [--cases head,res,up,upreflect]

Layers of the Johnson-like style model at full size (``patsparse.models.app_like.StyleLike``,
width 32, 256x256 input), each as a small model, batch 1, fp32:

- ``head``: ReflectionPad2d(4) + a dense 9x9 3->32 conv at 256x256 (blocked kernel);
- ``res``: ReflectionPad2d(1) + a 64->64 3x3 conv at 128x128, block-pattern 8x;
- ``up``: Upsample(x2, nearest) + a 64->32 3x3 conv (padding 1) to 256x256, block-pattern 8x;
- ``upreflect``: Upsample(x2) + ReflectionPad2d(1) + the same conv (Johnson's
  upsample-conv layer);
- ``res-kernel``: ``res`` pruned to per-kernel patterns + connectivity 8x (flat kernel);
- ``taps``: a 64->64 9x9 conv at 64x64 (padding 4), ``block``-pruned 8x (16-filter blocks
  keep the same (channel, tap) columns): ``unfused`` computes every kept kernel whole,
  ``fused`` skips the taps zero across a block (``skip_zero_taps``).

Engines: ``fused`` (the pipeline's default: the pad / upsample read by the conv kernel's
``ps_pad`` stage), ``unfused`` (``fuse_input=False``: the pad / upsample stay separate
functions, scheduled by ScheduleLeftovers) and PyTorch running the same (pruned) weights
densely. Each TVM build is checked against PyTorch. PyTorch runs in blocks before and after
the TVM calls (its OpenMP threads spin after a call), the TVM engines interleaved; median
(min) of ``--runs`` calls in ms and PyTorch / it (> 1: faster than PyTorch).
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
from collections.abc import Callable

import numpy as np
import torch
from _timing import torch_around
from torch import nn

from patsparse.compiler import import_torch
from patsparse.pruning import MagnitudePruner
from patsparse.schemes import (
    BlockPatternScheme,
    BlockScheme,
    PatternConnectivityScheme,
    PruningPlan,
    Scheme,
)
from tvm_ext._compat import host_target, relax, tensor, tvm
from tvm_ext.passes import BlockedConv2D
from tvm_ext.pipeline import default_sparse_pass, pattern_sparse_pipeline

THREADS = int(os.environ.setdefault("TVM_NUM_THREADS", "2"))


def case(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    """The model (pruned where the case says) and its input shape."""
    torch.manual_seed(0)
    if name == "taps":
        model: nn.Module = nn.Sequential(nn.Conv2d(64, 64, 9, padding=4), nn.ReLU())
        scheme: Scheme = BlockScheme(density=1 / 8, block_rows=16)
        pruner = MagnitudePruner(PruningPlan(default=scheme, skip_first_conv=False))
        pruner.prepare(model)
        pruner.step()
        pruner.squash_mask()
        return model.eval(), (1, 64, 64, 64)
    if name == "head":
        return nn.Sequential(nn.ReflectionPad2d(4), nn.Conv2d(3, 32, 9)), (1, 3, 256, 256)
    if name in ("res", "res-kernel"):
        model = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(64, 64, 3), nn.ReLU())
        shape = (1, 64, 128, 128)
    elif name == "up":
        model = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(64, 32, 3, 1, 1), nn.ReLU())
        shape = (1, 64, 128, 128)
    elif name == "upreflect":
        model = nn.Sequential(
            nn.Upsample(scale_factor=2), nn.ReflectionPad2d(1), nn.Conv2d(64, 32, 3), nn.ReLU()
        )
        shape = (1, 64, 128, 128)
    else:
        raise SystemExit(f"unknown case {name!r}: head, res, res-kernel, up, upreflect, taps")
    scheme = (
        PatternConnectivityScheme(density=1 / 8)
        if name == "res-kernel"
        else BlockPatternScheme(density=1 / 8)
    )
    pruner = MagnitudePruner(PruningPlan(default=scheme, skip_first_conv=False))
    pruner.prepare(model)
    pruner.step()
    pruner.squash_mask()
    return model.eval(), shape


def build(model: nn.Module, x: torch.Tensor, *, fuse: bool) -> tuple[Callable[[], object], str]:
    """The model through patsparse's pipeline, checked against PyTorch; a call of its VM and
    what its rewritten convs fused."""
    target = host_target()
    sparse = default_sparse_pass(fuse_input=fuse)
    blocked = BlockedConv2D(fuse_input=fuse, skip_zero_taps=fuse)
    pipeline = pattern_sparse_pipeline(target, sparse=sparse, blocked=blocked)
    ex = tvm.compile(import_torch(copy.deepcopy(model), x), target, relax_pipeline=pipeline)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    xt = tensor(x.numpy(), tvm.cpu())
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(vm["main"](xt)[0].numpy(), ref, rtol=1e-3, atol=1e-3)
    fused = [" ".join(r.fused) for r in (*sparse.records, *blocked.records) if r.rewritten]
    return (lambda: vm["main"](xt)), "; ".join(fused) or "nothing rewritten"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--cases", default="head,res,res-kernel,up,upreflect,taps")
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    print(f"TVM_NUM_THREADS={THREADS}, batch 1 fp32, median (min) of {args.runs} calls, ms")
    print("| case | PyTorch | unfused | fused | PyTorch / unfused | PyTorch / fused | fused |")
    print("|---|---|---|---|---|---|---|")
    for name in args.cases.split(","):
        model, shape = case(name)
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
        runs: dict[str, Callable[[], object]] = {}
        with torch.no_grad():
            runs["torch"] = functools.partial(model, x)
            runs["unfused"], _ = build(model, x, fuse=False)
            runs["fused"], what = build(model, x, fuse=True)
            times = torch_around(runs, args.runs)
        med = {n: float(np.median(t)) for n, t in times.items()}
        low = {n: min(t) for n, t in times.items()}
        cells = " | ".join(f"{med[n]:.2f} ({low[n]:.2f})" for n in ("torch", "unfused", "fused"))
        ratios = " | ".join(
            f"{med['torch'] / med[n]:.2f}x ({low['torch'] / low[n]:.2f}x)"
            for n in ("unfused", "fused")
        )
        print(f"| {name} | {cells} | {ratios} | {what} |", flush=True)


if __name__ == "__main__":
    main()
