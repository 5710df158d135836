"""Weight storage of pattern-pruned models: dense vs CSR vs patsparse's compact format.

    python benchmarks/storage.py

3x3 convs pattern+connectivity-pruned (designed-8 library) at the papers' rates; counts the
3x3 conv weights only (what the pattern-sparse kernel stores). CSR: fp32 values + int32
column index per weight + row pointers over the (K, C*9) matrix. Ours: fp32 values, one
uint16 channel index per kept kernel, per-filter pattern offsets and the filter order.
"""

from __future__ import annotations

import json

import torch

from patsparse.core.formats import PatternSparseWeight, csr_nbytes, dense_nbytes
from patsparse.models import build_model
from patsparse.schemes import PatternConnectivityScheme

MODELS = [
    ("vgg16-imagenet", 12.0),
    ("resnet18-imagenet", 8.0),
    ("resnet50-imagenet", 5.8),
    ("resnet18-cifar", 8.0),
]


def main() -> None:
    rows = []
    for name, rate in MODELS:
        torch.manual_seed(0)
        model = build_model(name)
        scheme = PatternConnectivityScheme(density=1 / rate)
        total = {"dense": 0, "csr": 0, "ours": 0, "layers": 0}
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) and m.groups == 1:
                w = scheme.project(m.weight.detach()).numpy()
                total["dense"] += dense_nbytes(w)
                total["csr"] += csr_nbytes(w)
                total["ours"] += PatternSparseWeight.from_dense(w).nbytes()
                total["layers"] += 1
        row = {
            "model": name,
            "compression": rate,
            **total,
            "csr_over_ours": round(total["csr"] / total["ours"], 2),
            "dense_over_ours": round(total["dense"] / total["ours"], 2),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
