"""Roofline of the per-layer results of ``patsparse bench --json``: is a sparse layer bound by
compute or by moving its activations?

Measures this machine's copy bandwidth (read + write, torch with ``--threads`` threads) for a
buffer the size of a layer's activations (L3-resident here: 32 MB L3) and for one far larger
(DRAM), takes the compute peak as the fastest PyTorch dense layer of the run (oneDNN runs
near peak), and per 3x3 layer prints::

    sparse FLOPs / peak          the compute floor
    activation bytes / bandwidth the memory floor (input read once, output written once)
    measured patsparse time, and the fraction of the higher floor it reaches

Usage (after ``patsparse bench MODEL --threads 2 --json > runs/bench.json``)::

    python benchmarks/roofline.py runs/bench.json --threads 2
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

import torch


def copy_bandwidth(nbytes: int, *, repeat: int = 15) -> float:
    """GB/s of ``dst.copy_(src)`` over ``nbytes`` per buffer (counts the read and the write)."""
    n = nbytes // 4
    src = torch.rand(n)
    dst = torch.empty(n)
    dst.copy_(src)  # touch the pages
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - t0)
    return 2 * n * 4 / statistics.median(times) / 1e9


SHAPE = re.compile(r"(\d+)->(\d+) @ (\d+)x(\d+)( /(\d+))?")


def layer_floor(shape: str, reduction: float) -> tuple[float, float]:
    """(sparse GFLOP, activation MB) of a 3x3 conv described as ``"Cin->Cout @ HxW [/s]"``."""
    m = SHAPE.fullmatch(shape.strip())
    if m is None:
        raise ValueError(f"unrecognised layer shape {shape!r}")
    cin, cout, h, w = (int(m.group(i)) for i in range(1, 5))
    stride = int(m.group(6) or 1)
    ho, wo = h // stride, w // stride
    dense_flops = 2 * cin * cout * 9 * ho * wo
    act_bytes = 4 * (cin * h * w + cout * ho * wo)
    return dense_flops / reduction / 1e9, act_bytes / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench_json", help="output of patsparse bench --json")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the copy")
    ap.add_argument("--l3-mb", type=float, default=13.0, help="activation-sized buffer (MB)")
    ap.add_argument("--dram-mb", type=float, default=512.0, help="DRAM-sized buffer (MB)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bw_l3 = copy_bandwidth(int(args.l3_mb * 1e6))
    bw_dram = copy_bandwidth(int(args.dram_mb * 1e6))
    print(
        f"copy bandwidth ({args.threads} threads): {bw_l3:.1f} GB/s at {args.l3_mb:g} MB, "
        f"{bw_dram:.1f} GB/s at {args.dram_mb:g} MB"
    )
    data = json.loads(Path(args.bench_json).read_text())
    for model in data if isinstance(data, list) else [data]:
        layers = [la for la in model["layers"] if la.get("efficiency") is not None]
        peak = max(la["pytorch_gflops"] for la in model["layers"] if la.get("pytorch_gflops"))
        print(f"\n{model['model']} ({model['threads']} threads), compute peak {peak:.0f} GFLOP/s")
        print(
            f"{'layer':<22}{'x':>5}{'GFLOP':>8}{'act MB':>8}{'compute ms':>11}"
            f"{'L3 ms':>8}{'DRAM ms':>8}{'ours ms':>9}{'of floor':>9}{'eff':>6}"
        )
        for la in layers:
            gflop, mb = layer_floor(la["shape"], la["flop_reduction"])
            t_c = gflop / peak * 1e3
            t_l3 = mb / 1e3 / bw_l3 * 1e3
            t_dram = mb / 1e3 / bw_dram * 1e3
            ours = la["patsparse_ms"]["median"]
            floor = max(t_c, t_l3)
            print(
                f"{la['shape']:<22}{la['flop_reduction']:>5.1f}{gflop:>8.3f}{mb:>8.1f}"
                f"{t_c:>11.3f}{t_l3:>8.3f}{t_dram:>8.3f}{ours:>9.3f}{floor / ours:>9.2f}"
                f"{la['efficiency']:>6.2f}"
            )


if __name__ == "__main__":
    main()
