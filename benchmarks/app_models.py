"""App-like models a user brings (issue "every layer"): end to end vs PyTorch dense, and
the ops still slower than PyTorch.

For each model of :mod:`patsparse.models.app_like` at full width: PyTorch dense, and the
model pruned at 8x on its 3x3 convs (block-pattern, then per-kernel pattern+connectivity;
other convs block-pruned at the same rate, the first conv dense) compiled by patsparse, each
timed end to end in one process, engines taking turns in a rotating order, each timed call
right after an untimed one of its own (:func:`patsparse.bench.torch_timing.interleaved`:
PyTorch's OpenMP threads still spin for a while after its call and slow whichever engine
runs next by several ms); median and min-max of ``--runs``.
Then the per-op profile of the block-pattern build lists every op slower than PyTorch's.

    TVM_NUM_THREADS=2 python benchmarks/app_models.py --runs 25
"""

from __future__ import annotations

import argparse
import copy
import functools
import os

os.environ.setdefault("TVM_NUM_THREADS", "2")

import numpy as np
import torch

from patsparse.bench.allocator import steady_allocator
from patsparse.bench.core_link import far_apart_line, round_trips
from patsparse.bench.torch_timing import interleaved
from patsparse.compiler import compile_torch
from patsparse.compiler.op_profile import profile_ops, slow_op_warnings
from patsparse.models.app_like import APP_LIKE
from patsparse.pruning.pruners import MagnitudePruner
from patsparse.schemes import BlockScheme, PruningPlan, scheme_from_options

#: model -> (width, input height/width)
SIZES = {"colorization": (64, 224), "style": (32, 256), "sr": (32, 128)}


def pruned(model: torch.nn.Module, scheme: str, rate: float) -> torch.nn.Module:
    plan = PruningPlan(
        default=scheme_from_options(scheme, rate, fixed_rate="ignore"),
        fallback=BlockScheme(density=1 / rate),
        skip_last_linear=False,
    )
    out = copy.deepcopy(model)
    pruner = MagnitudePruner(plan)
    pruner.prepare(out)
    pruner.step()
    pruner.squash_mask()
    return out.eval()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--rate", type=float, default=8.0)
    ap.add_argument("--models", default=",".join(SIZES))
    args = ap.parse_args()
    print(steady_allocator())  # PyTorch at its steady speed: no page faults per call
    threads = int(os.environ["TVM_NUM_THREADS"])
    torch.set_num_threads(threads)
    print(f"{threads} threads, batch 1 fp32, {args.rate}x on 3x3 convs, median (min-max) ms")
    for name in args.models.split(","):
        cls, channels = APP_LIKE[name]
        width, size = SIZES[name]
        torch.manual_seed(0)
        dense = cls(width).eval()
        x = torch.randn(1, channels, size, size)
        engines = {}
        for scheme in ("block-pattern", "pattern+connectivity"):
            model = pruned(dense, scheme, args.rate)
            compiled = compile_torch(model, x)
            with torch.no_grad():
                err = float(np.abs(compiled(x.numpy()) - model(x).numpy()).max())
            engines[scheme] = (model, compiled, err)
        xn = x.numpy()
        calls = {"pytorch dense": functools.partial(dense, x)}
        for scheme, (_, compiled, _) in engines.items():
            calls[f"patsparse {scheme}"] = functools.partial(compiled, xn)
        with torch.no_grad(), round_trips() as link:  # how far apart the host had the CPUs
            times = interleaved(calls, args.runs)
        base = float(np.median(times["pytorch dense"]))
        print(f"\n{name} (width {width}, {channels}x{size}x{size})")
        for k, ts in times.items():
            med = float(np.median(ts))
            print(f"  {k:<36}{med:9.3f} ({min(ts):.3f}-{max(ts):.3f})  {base / med:6.2f}x")
        for scheme, (_, _, err) in engines.items():
            print(f"  max abs error vs PyTorch ({scheme}): {err:.1e}")
        shown = ", ".join("-" if ns is None else f"{ns:.0f}" for ns in link)
        print(f"  cache-line round trip between the CPUs before / after: {shown} ns")
        if far_apart_line(link):
            print(f"  {far_apart_line(link)}")
        model, compiled, _ = engines["block-pattern"]
        slow = slow_op_warnings(profile_ops(compiled, model, x, repeat=args.runs))
        print(f"  ops slower than PyTorch's (block-pattern): {len(slow)}")
        for line in slow:
            print(f"    {line}")


if __name__ == "__main__":
    main()
