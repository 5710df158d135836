"""End-to-end latency with the *default* (untuned) schedule vs PyTorch dense, side by side.

    TVM_NUM_THREADS=2 python benchmarks/default_schedule.py

A snapshot of where issue 3's default schedule stands before tuning (issue 4). Batch 1,
fp32, 2 threads for both. Median of repeated runs; the spread is printed.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from _timing import median_ms

from patsparse.compiler.compile import compile_torch
from patsparse.models import build_model, default_input_shape
from patsparse.pruning import MagnitudePruner
from patsparse.schemes import BlockPatternScheme, PatternConnectivityScheme, PruningPlan
from tvm_ext._compat import tensor, tvm

THREADS = int(os.environ.setdefault("TVM_NUM_THREADS", "2"))


def main() -> None:
    torch.set_num_threads(THREADS)
    for name, scheme in [
        ("resnet18-cifar", PatternConnectivityScheme(density=1 / 8)),
        ("resnet18-cifar", BlockPatternScheme(density=1 / 8, block_size=16)),
    ]:
        torch.manual_seed(0)
        model = build_model(name).eval()
        dense = build_model(name).eval()
        dense.load_state_dict(model.state_dict())
        pruner = MagnitudePruner(PruningPlan(default=scheme))
        pruner.prepare(model)
        pruner.step()
        pruner.squash_mask()
        x = torch.randn(default_input_shape(name))
        compiled = compile_torch(model, x)
        xt = tensor(x.numpy(), tvm.cpu())
        vm = compiled.vm
        sparse_ms = median_ms(lambda vm=vm, xt=xt: vm["main"](xt), repeat=15)
        with torch.no_grad():
            torch_ms = median_ms(lambda dense=dense, x=x: dense(x), repeat=15)
        print(
            json.dumps(
                {
                    "model": name,
                    "scheme": scheme.describe(),
                    "threads": THREADS,
                    "pytorch_dense_ms": [round(v, 2) for v in torch_ms],
                    "patsparse_default_schedule_ms": [round(v, 2) for v in sparse_ms],
                    "speedup_vs_pytorch": round(torch_ms[0] / sparse_ms[0], 2),
                    "max_abs_error": float(
                        np.abs(compiled(x.numpy()) - model(x).detach().numpy()).max()
                    ),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
