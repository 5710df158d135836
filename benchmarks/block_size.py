"""Blocks of 16 vs 32 filters on single chained block-pattern layers (the default schedule).

    TVM_NUM_THREADS=2 python benchmarks/block_size.py [--layers 256x512x28x12] [--runs 30]

Each layer (``CIN x COUT x HW x rate``: 3x3, stride 1, bias + ReLU, chained input and output)
is pruned from the same dense weights by ``BlockPatternScheme`` with blocks of 16 and of 32
filters, compiled with the default CPU schedule, checked against PyTorch's conv on the pruned
weights, and timed interleaved. A block of 32 filters is two AVX-512 vectors: each input
broadcast feeds two FMAs (``tvm_ext.schedules.cpu.BLOCK_ACCUMULATORS``). Median (min) of
``--runs`` calls, ms, and useful GFLOP/s (kept multiply-adds).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from patsparse.schemes import BlockPatternScheme
from tvm_ext._compat import host_target, te, tensor, tvm
from tvm_ext.layout import SparseConvLayout, analyze_conv_weight
from tvm_ext.schedules.dispatch import schedule_pattern_primfunc
from tvm_ext.te import block_plan, pattern_conv
from tvm_ext.te.conv_spec import BlockedActivation, ConvGeometry, Epilogue

THREADS = int(os.environ.setdefault("TVM_NUM_THREADS", "2"))
LANES = 16  # the chained input's lanes


def build(cin: int, hw: int, lay: SparseConvLayout):  # type: ignore[no-untyped-def]
    """The compiled layer, its constant arrays (values, channels) and argument shapes."""
    geo = ConvGeometry(
        (1, cin, hw, hw), (1, 1), (1, 1, 1, 1), in_layout=BlockedActivation(cin // LANES, LANES, 1)
    )
    tens = pattern_conv.pattern_conv2d_te(geo, lay, Epilogue(bias=True, relu=True, out_border=1))
    func = te.create_prim_func(tens).with_attr("global_symbol", "main")
    func = schedule_pattern_primfunc(func, target=host_target())
    lib = tvm.compile(tvm.IRModule({"main": func}), target=host_target())
    shapes = [tuple(int(s) for s in t.shape) for t in tens]
    return lib["main"], block_plan.merged_block_arrays(lay), shapes


def chained_input(x: np.ndarray) -> np.ndarray:
    """NCHW -> rows of 16 channel lanes with a zero border of 1 (the chained layout)."""
    n, c, h, w = x.shape
    out = np.zeros((n, c // LANES, h + 2, w + 2, LANES), "float32")
    out[:, :, 1:-1, 1:-1, :] = x.reshape(n, c // LANES, LANES, h, w).transpose(0, 1, 3, 4, 2)
    return out


def from_chained(out: np.ndarray, lay: SparseConvLayout) -> np.ndarray:
    """The chained output (rows of the block's lanes, border 1) back to NCHW filter order."""
    n, rows, hp, wp, g = out.shape
    flat = out[:, :, 1:-1, 1:-1, :].transpose(0, 1, 4, 2, 3).reshape(n, rows * g, hp - 2, wp - 2)
    return flat[:, lay.inverse]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--layers", default="64x128x112x12,128x128x112x12,256x512x28x12,512x512x14x12,64x64x56x8"
    )
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    dev = tvm.cpu()
    print(f"TVM_NUM_THREADS={THREADS}; median (min) of {args.runs} interleaved calls, ms (GFLOP/s)")
    print("| layer | rate | blocks of 16 | blocks of 32 | speed-up |")
    print("|---|---|---|---|---|")
    for spec in args.layers.split(","):
        cin_s, cout_s, hw_s, rate_s = spec.split("x")
        cin, cout, hw, rate = int(cin_s), int(cout_s), int(hw_s), float(rate_s)
        dense = torch.randn(cout, cin, 3, 3, generator=torch.Generator().manual_seed(1))
        x = np.random.default_rng(0).standard_normal((1, cin, hw, hw)).astype("float32")
        bias = np.random.default_rng(1).standard_normal(cout).astype("float32")
        runs = {}
        for g in (16, 32):
            w = BlockPatternScheme(density=1 / rate, block_size=g).project(dense)
            lay = analyze_conv_weight(w.numpy(), block=g)
            assert isinstance(lay, SparseConvLayout) and lay.kind == "block"
            f, (vals, chans), shapes = build(cin, hw, lay)
            call = [
                tensor(chained_input(x), dev),
                tensor(vals, dev),
                tensor(chans, dev),
                tensor(bias[lay.inverse.argsort()].reshape(shapes[3]), dev),
                tensor(np.zeros(shapes[-1], "float32"), dev),
            ]
            f(*call)
            ref = torch.relu(
                torch.nn.functional.conv2d(
                    torch.from_numpy(x), w, torch.from_numpy(bias), padding=1
                )
            ).numpy()
            np.testing.assert_allclose(
                from_chained(call[-1].numpy(), lay), ref, rtol=1e-4, atol=1e-4
            )
            runs[g] = (f, call, float(np.count_nonzero(w.numpy())) * hw * hw)
        times: dict[int, list[float]] = {g: [] for g in runs}
        for _ in range(args.runs):
            for g, (f, call, _) in runs.items():
                t0 = time.perf_counter()
                f(*call)
                times[g].append((time.perf_counter() - t0) * 1e3)
        med = {g: float(np.median(t)) for g, t in times.items()}
        cell = {
            g: f"{med[g]:.3f} ({min(times[g]):.3f}) {2 * runs[g][2] / med[g] / 1e6:.0f} GF/s"
            for g in runs
        }
        print(
            f"| {cin}->{cout} @ {hw}x{hw} | {rate:g}x | {cell[16]} | {cell[32]} | "
            f"{med[16] / med[32]:.2f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
