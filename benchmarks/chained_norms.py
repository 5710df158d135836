"""Norms in the layout chain (issue "every layer"): the same pruned model compiled three
ways, timed end to end in one process, engines taking turns
(:func:`patsparse.bench.torch_timing.interleaved`):

- ``norms off``: ``ChainConvLayouts(norms=False)``: every norm reads and writes NCHW (TVM's
  norm, the ``norm`` leftover rule), the convs around it gather and pad;
- ``norms``: the default: chained norms, writing upsampled maps for upsampling convs;
- ``norms, no upsampling``: ``norm_upsample=False``.

Models: the shipped pruned style-transfer app (reflection pads, instance norms, residual
blocks, channel takes, upsampling decoder) and the style-like test model (block-pattern 8x:
group norm with a residual after its ReLU).

    TVM_NUM_THREADS=2 python benchmarks/chained_norms.py --runs 25 --sizes 256,512
"""

from __future__ import annotations

import argparse
import functools
import os

os.environ.setdefault("TVM_NUM_THREADS", "2")

import numpy as np
import torch

import tvm_ext.pipeline as pipeline
from patsparse.apps.checkpoints import load_app_checkpoint
from patsparse.apps.registry import get_app
from patsparse.bench.allocator import steady_allocator
from patsparse.bench.core_link import far_apart_line, round_trips
from patsparse.bench.torch_timing import interleaved
from patsparse.compiler import compile_torch
from patsparse.models.app_like import APP_LIKE
from patsparse.pruning.pruners import MagnitudePruner
from patsparse.schemes import BlockScheme, PruningPlan, scheme_from_options

BUILDS = {
    "norms off": {"norms": False},
    "norms": {},
    "norms, no upsampling": {"norm_upsample": False},
}


def style_like(rate: float) -> torch.nn.Module:
    torch.manual_seed(0)
    model = APP_LIKE["style"][0](32).eval()
    plan = PruningPlan(
        default=scheme_from_options("block-pattern", rate, fixed_rate="ignore"),
        fallback=BlockScheme(density=1 / rate),
        skip_last_linear=False,
    )
    pruner = MagnitudePruner(plan)
    pruner.prepare(model)
    pruner.step()
    pruner.squash_mask()
    return model.eval()


def compiled_ways(model: torch.nn.Module, x: torch.Tensor) -> dict[str, object]:
    """``model`` compiled once per entry of :data:`BUILDS` (the chain pass's options)."""
    chain = pipeline.ChainConvLayouts
    out = {}
    try:
        for name, options in BUILDS.items():
            pipeline.ChainConvLayouts = functools.partial(chain, **options)  # type: ignore[misc]
            out[name] = compile_torch(model, x)
    finally:
        pipeline.ChainConvLayouts = chain  # type: ignore[misc]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--sizes", default="256,512")
    args = ap.parse_args()
    print(steady_allocator())
    threads = int(os.environ["TVM_NUM_THREADS"])
    torch.set_num_threads(threads)
    models = {
        "style app (pruned)": load_app_checkpoint(get_app("style"), "pruned").model.eval(),
        "style-like @8x": style_like(8.0),
    }
    print(f"{threads} threads, batch 1 fp32, median (min-max) ms")
    for name, model in models.items():
        for size in (int(s) for s in args.sizes.split(",")):
            x = torch.rand(1, 3, size, size)
            builds = compiled_ways(model, x)
            xn = x.numpy()
            with torch.no_grad():
                ref = model(x).numpy()
            errs = {k: float(np.abs(c(xn) - ref).max()) for k, c in builds.items()}  # type: ignore[operator]
            calls = {k: functools.partial(c, xn) for k, c in builds.items()}  # type: ignore[arg-type]
            with round_trips() as link:
                times = interleaved(calls, args.runs)
            base = float(np.median(times["norms off"]))
            print(f"\n{name}, 3x{size}x{size}")
            for k, ts in times.items():
                med = float(np.median(ts))
                print(
                    f"  {k:<24}{med:9.3f} ({min(ts):.3f}-{max(ts):.3f})  "
                    f"{base / med:5.2f}x  max err {errs[k]:.1e}"
                )
            shown = ", ".join("-" if ns is None else f"{ns:.0f}" for ns in link)
            print(f"  cache-line round trip between the CPUs before / after: {shown} ns")
            if far_apart_line(link):
                print(f"  {far_apart_line(link)}")


if __name__ == "__main__":
    main()
