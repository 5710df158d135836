"""Equal-length columns vs one padded column per pattern, on single chained block layers.

    TVM_NUM_THREADS=2 python benchmarks/columns.py [--layers 64x224x12,64x56x8] [--runs 40]

Each layer (``C x HW x rate``: C -> C channels, 3x3, stride 1, bias + ReLU, chained input and
output, block-pattern G=16 at ``rate`` over the dense conv) is compiled twice from the same
weights: with :func:`tvm_ext.te.block_plan.block_columns` as shipped, and with every pattern
in one column padded to the longest (``MAX_COLUMNS = 0``, the layout before columns). Both
read the same input and write the same output buffer (so both see the same caches), are
checked against each other, and are timed interleaved. Median (min) of ``--runs`` calls, ms.
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


def build(c: int, hw: int, lay: SparseConvLayout, *, columns: bool):  # type: ignore[no-untyped-def]
    """The compiled layer and its constant arrays (values, channels)."""
    geo = ConvGeometry(
        (1, c, hw, hw), (1, 1), (1, 1, 1, 1), in_layout=BlockedActivation(c // 16, 16, 1)
    )
    saved = block_plan.MAX_COLUMNS
    block_plan.MAX_COLUMNS = saved if columns else 0
    try:
        tens = pattern_conv.pattern_conv2d_te(
            geo, lay, Epilogue(bias=True, relu=True, out_border=1)
        )
        consts = block_plan.merged_block_arrays(lay)
    finally:
        block_plan.MAX_COLUMNS = saved
    func = te.create_prim_func(tens).with_attr("global_symbol", "main")
    func = schedule_pattern_primfunc(func, target=host_target())
    lib = tvm.compile(tvm.IRModule({"main": func}), target=host_target())
    shapes = [tuple(int(s) for s in t.shape) for t in tens]
    return lib["main"], consts, shapes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", default="64x224x12,64x56x8,64x56x5.8,128x28x8,128x112x12")
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    dev = tvm.cpu()
    print(f"TVM_NUM_THREADS={THREADS}; median (min) of {args.runs} interleaved calls, ms")
    print("| layer | rate | slots: padded / columns | padded | columns | speed-up |")
    print("|---|---|---|---|---|---|")
    for spec in args.layers.split(","):
        c_s, hw_s, rate_s = spec.split("x")
        c, hw, rate = int(c_s), int(hw_s), float(rate_s)
        w = torch.randn(c, c, 3, 3, generator=torch.Generator().manual_seed(1))
        w = BlockPatternScheme(density=1 / rate, block_size=16).project(w).numpy()
        lay = analyze_conv_weight(w, block=16)
        assert isinstance(lay, SparseConvLayout)
        rng = np.random.default_rng(0)
        funcs, slots, shared = {}, {}, None
        for name, columns in (("padded", False), ("columns", True)):
            f, (vals, chans), shapes = build(c, hw, lay, columns=columns)
            if shared is None:
                x = rng.standard_normal(shapes[0]).astype("float32")
                bias = rng.standard_normal(shapes[3]).astype("float32")
                shared = [
                    tensor(x, dev),
                    tensor(bias, dev),
                    tensor(np.zeros(shapes[-1], "float32"), dev),
                ]
            call = [shared[0], tensor(vals, dev), tensor(chans, dev), shared[1], shared[2]]
            funcs[name] = (f, call)
            slots[name] = vals.shape[1] * vals.shape[2]
        outs = {}
        for name, (f, call) in funcs.items():
            f(*call)
            outs[name] = call[-1].numpy().copy()
        np.testing.assert_allclose(outs["columns"], outs["padded"], rtol=1e-4, atol=1e-4)
        times: dict[str, list[float]] = {n: [] for n in funcs}
        for _ in range(args.runs):
            for name, (f, call) in funcs.items():
                t0 = time.perf_counter()
                f(*call)
                times[name].append((time.perf_counter() - t0) * 1e3)
        med = {n: float(np.median(t)) for n, t in times.items()}
        cell = {n: f"{med[n]:.3f} ({min(times[n]):.3f})" for n in funcs}
        print(
            f"| {c}->{c} @ {hw}x{hw} | {rate:g}x | {slots['padded']} / {slots['columns']} | "
            f"{cell['padded']} | {cell['columns']} | {med['padded'] / med['columns']:.2f}x |"
        )


if __name__ == "__main__":
    main()
