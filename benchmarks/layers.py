"""Per-layer speed: patsparse sparse (default schedule, and MetaSchedule-tuned) vs PyTorch dense.

    TVM_NUM_THREADS=2 python benchmarks/layers.py [--trials 24] [--layers 128x28,256x14]

Each layer is a 3x3 conv (stride 1, pad 1, + ReLU) pruned at 8x, batch 1, fp32, 2 threads for
TVM and PyTorch, all measured in the same run. Median of repeats, min-max printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import numpy as np
import torch
from _timing import median_ms

from patsparse.compiler.compile import compile_torch, import_torch
from patsparse.schemes import BlockPatternScheme, PatternConnectivityScheme
from tvm_ext._compat import host_target, tensor, tvm
from tvm_ext.pipeline import lower_for_tuning
from tvm_ext.tuning.tune import tune_module

THREADS = int(os.environ.setdefault("TVM_NUM_THREADS", "2"))


class Layer(torch.nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--layers", default="128x28,256x14")
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    target = host_target()
    for spec in args.layers.split(","):
        c, hw = (int(v) for v in spec.split("x"))
        for scheme in (
            PatternConnectivityScheme(density=1 / 8),
            BlockPatternScheme(density=1 / 8, block_size=16),
        ):
            torch.manual_seed(0)
            dense = Layer(c).eval()
            sparse = Layer(c).eval()
            with torch.no_grad():
                sparse.conv.weight.copy_(scheme.project(dense.conv.weight))
                sparse.conv.bias.copy_(dense.conv.bias)
            x = torch.randn(1, c, hw, hw)
            xt = tensor(x.numpy(), tvm.cpu())
            with torch.no_grad():
                torch_ms = median_ms(lambda d=dense, x=x: d(x), repeat=20)
            default = compile_torch(sparse, x)
            default_ms = median_ms(lambda m=default, xt=xt: m.vm["main"](xt), repeat=20)
            work = tempfile.mkdtemp(prefix="patsparse-layer-")
            start = time.perf_counter()
            tune_module(
                lower_for_tuning(import_torch(sparse, x), target),
                target,
                work,
                trials_per_task=args.trials,
            )
            tune_s = time.perf_counter() - start
            tuned = compile_torch(sparse, x, logs=work)
            tuned_ms = median_ms(lambda m=tuned, xt=xt: m.vm["main"](xt), repeat=20)
            err = float(np.abs(tuned(x.numpy()) - sparse(x).detach().numpy()).max())
            shutil.rmtree(work, ignore_errors=True)
            flops = 2 * c * c * 9 * hw * hw
            print(
                json.dumps(
                    {
                        "layer": f"{c}->{c} @ {hw}x{hw}",
                        "scheme": scheme.name,
                        "threads": THREADS,
                        "trials": args.trials,
                        "tune_seconds": round(tune_s),
                        "pytorch_dense_ms": [round(v, 3) for v in torch_ms],
                        "default_ms": [round(v, 3) for v in default_ms],
                        "tuned_ms": [round(v, 3) for v in tuned_ms],
                        "speedup_tuned_vs_pytorch": round(torch_ms[0] / tuned_ms[0], 2),
                        "flop_reduction": 8.0,
                        "efficiency": round(torch_ms[0] / tuned_ms[0] / 8.0, 2),
                        "pytorch_gflops": round(flops / torch_ms[0] / 1e6, 1),
                        "max_abs_error": err,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
