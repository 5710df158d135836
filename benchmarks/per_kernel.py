"""Per-kernel patterns on single layers: flat stages vs per-pattern stages vs the blocked
kernel vs PyTorch dense, and the cost figure the pipelines pick with.

    TVM_NUM_THREADS=2 python benchmarks/per_kernel.py [--layers 64x56x8,128x28x8] [--runs 30]

Each layer (``C x HW x rate``: C -> C channels, 3x3, stride 1, padding 1, bias + ReLU, NCHW
in and out) is pruned with ``pattern+connectivity`` at ``rate`` (the papers' per-kernel
scheme, kernels kept by magnitude over the layer, so filters keep unequal counts) and
compiled three ways from the same weights: the flat stages (what per-kernel layers compile
to), the per-pattern stages (before them; still used where the input is chained) and the
blocked kernel over channel unions (``BlockedConv2D``, what the pipelines fall back to).
All are checked against PyTorch and timed interleaved; PyTorch's dense conv on a dense weight
(same thread count) is timed in blocks before and after them. Median (min) of ``--runs``
calls, ms. Efficiency = speed-up over PyTorch dense / FLOP reduction. ``cost`` = flat time /
blocked time x blocked multiply-adds / flat multiply-adds (padding included): what
``tvm_ext.pipeline.PER_KERNEL_COST`` estimates.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import torch

from patsparse.bench.allocator import steady_allocator
from patsparse.schemes import make_scheme
from tvm_ext._compat import host_target, te, tensor, tvm
from tvm_ext.layout import SparseConvLayout, analyze_blocked_weight, analyze_conv_weight
from tvm_ext.schedules.dispatch import schedule_pattern_primfunc
from tvm_ext.te import flat_plan, pattern_conv
from tvm_ext.te.conv_spec import ConvGeometry, Epilogue

THREADS = int(os.environ.setdefault("TVM_NUM_THREADS", "2"))


def build(
    geo: ConvGeometry, lay: SparseConvLayout, *, flat: bool
) -> tuple[Callable[..., object], list[np.ndarray]]:
    """The compiled layer (bias + ReLU) and its constant arrays."""
    saved = pattern_conv.uses_flat
    if not flat:
        pattern_conv.uses_flat = lambda *_: False  # type: ignore[assignment]
    try:
        tens = pattern_conv.pattern_conv2d_te(geo, lay, Epilogue(bias=True, relu=True))
        consts = pattern_conv.layout_arguments(lay, geo)
    finally:
        pattern_conv.uses_flat = saved  # type: ignore[assignment]
    func = te.create_prim_func(tens).with_attr("global_symbol", "main")
    func = schedule_pattern_primfunc(func, target=host_target())
    lib = tvm.compile(tvm.IRModule({"main": func}), target=host_target())
    return lib["main"], consts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", default="64x56x8,128x28x8,256x14x8,512x7x8,64x56x4,128x28x4")
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    print(steady_allocator())  # PyTorch at its steady speed: no page faults per call
    torch.set_num_threads(THREADS)
    dev = tvm.cpu()
    print(f"TVM_NUM_THREADS={THREADS}, torch threads {THREADS}; median (min) of {args.runs}, ms")
    print(
        "| layer | rate | PyTorch dense | per-pattern stages | flat stages | blocked | "
        "flat vs per-pattern | efficiency flat / per-pattern | cost |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for spec in args.layers.split(","):
        c_s, hw_s, rate_s = spec.split("x")
        c, hw, rate = int(c_s), int(hw_s), float(rate_s)
        gen = torch.Generator().manual_seed(1)
        w = make_scheme("pattern+connectivity", density=1 / rate).project(
            torch.randn(c, c, 3, 3, generator=gen)
        )
        lay = analyze_conv_weight(w.numpy(), prefer_blocks=False)
        blk = analyze_blocked_weight(w.numpy(), block=16)
        assert isinstance(lay, SparseConvLayout) and isinstance(blk, SparseConvLayout)
        geo = ConvGeometry((1, c, hw, hw), (1, 1), (1, 1, 1, 1))
        x = torch.randn(1, c, hw, hw, generator=gen)
        bias = torch.randn(c, generator=gen)
        dense = torch.randn(c, c, 3, 3, generator=gen)
        ref = torch.relu(torch.nn.functional.conv2d(x, w, bias, padding=1)).numpy()
        xs, bs = tensor(x.numpy(), dev), tensor(bias.numpy(), dev)
        runs: dict[str, Callable[[], object]] = {
            "torch": lambda x=x, d=dense, b=bias: torch.nn.functional.conv2d(x, d, b, padding=1)
        }
        for name, layout, flat in (
            ("per-pattern", lay, False),
            ("flat", lay, True),
            ("blocked", blk, False),
        ):
            f, consts = build(geo, layout, flat=flat)
            out = tensor(np.zeros(ref.shape, np.float32), dev)
            call = [xs, *[tensor(np.ascontiguousarray(a), dev) for a in consts], bs, out]
            f(*call)
            np.testing.assert_allclose(out.numpy(), ref, rtol=1e-3, atol=1e-3)
            runs[name] = lambda f=f, call=call: f(*call)
        # PyTorch's OpenMP threads spin after a call and steal the cores from the TVM kernel
        # that follows, so PyTorch runs in blocks of its own before and after the TVM kernels,
        # which are interleaved with each other
        for _ in range(5):  # warm-up (the TVM kernels ran once for the check)
            runs["torch"]()
        times: dict[str, list[float]] = {n: [] for n in runs}
        tvm_runs = [n for n in runs if n != "torch"]
        for names in (["torch"], tvm_runs, ["torch"]):
            for _ in range(args.runs // 2 if names == ["torch"] else args.runs):
                for name in names:
                    t0 = time.perf_counter()
                    runs[name]()
                    times[name].append((time.perf_counter() - t0) * 1e3)
        med = {n: float(np.median(t)) for n, t in times.items()}
        cell = {n: f"{med[n]:.3f} ({min(times[n]):.3f})" for n in runs}
        eff = {n: med["torch"] / med[n] / rate for n in ("flat", "per-pattern")}
        flat_macs = flat_plan.flat_buckets(lay).macs_per_pixel()
        cost = med["flat"] / med["blocked"] * blk.macs_per_pixel() / flat_macs
        print(
            f"| {c}->{c} @ {hw}x{hw} | {rate:g}x | {cell['torch']} | {cell['per-pattern']} | "
            f"{cell['flat']} | {cell['blocked']} | {med['per-pattern'] / med['flat']:.2f}x | "
            f"{eff['flat']:.2f} / {eff['per-pattern']:.2f} | {cost:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
