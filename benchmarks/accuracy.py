"""Accuracy benchmark on scikit-learn digits (real data): the numbers in BENCHMARKS.md.

    python benchmarks/accuracy.py [--seeds 3] [--json]

For each compression: ADMM vs one-shot magnitude pruning (same post-pruning fine-tune
budget, and same total epoch budget), per-kernel patterns vs block-shared patterns, and a
pattern-library extraction 126 -> 32 -> 12 -> 8 -> 4. Mean and spread over seeds.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch

from patsparse.data import load_digits_split, make_loaders
from patsparse.models import build_model
from patsparse.pruning import PruneConfig, prune
from patsparse.pruning.extraction import ExtractionConfig, extract_library
from patsparse.schemes import BlockPatternScheme, PatternConnectivityScheme, PruningPlan
from patsparse.train import accuracy, fit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    train, test = make_loaders(*load_digits_split(seed=0), seed=0)
    torch.manual_seed(0)
    dense = build_model("digits-cnn")
    fit(dense, train, epochs=15, lr=0.05)
    dense_acc = accuracy(dense, test)
    rows = []

    def run(label, scheme, cfg):  # type: ignore[no-untyped-def]
        accs = []
        for seed in range(1, args.seeds + 1):
            torch.manual_seed(seed)
            m = copy.deepcopy(dense)
            prune(m, PruningPlan(default=scheme), train, config=cfg)
            accs.append(accuracy(m, test))
        row = {
            "setting": label,
            "scheme": scheme.describe(),
            "mean": round(statistics.mean(accs), 2),
            "min": round(min(accs), 2),
            "max": round(max(accs), 2),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    start = time.perf_counter()
    for comp in (6, 8, 12, 20):
        pc = PatternConnectivityScheme(density=1 / comp)
        run(f"{comp}x admm 10+0", pc, PruneConfig(method="admm", admm_epochs=10, retrain_epochs=0))
        run(f"{comp}x magnitude 0", pc, PruneConfig(method="magnitude", retrain_epochs=0))
        run(f"{comp}x admm 10+2", pc, PruneConfig(method="admm", admm_epochs=10, retrain_epochs=2))
        run(f"{comp}x magnitude 2", pc, PruneConfig(method="magnitude", retrain_epochs=2))
        run(
            f"{comp}x admm 10+10", pc, PruneConfig(method="admm", admm_epochs=10, retrain_epochs=10)
        )
        run(f"{comp}x magnitude 20", pc, PruneConfig(method="magnitude", retrain_epochs=20))
        for g in (8, 16):
            run(
                f"{comp}x block-pattern G={g} admm 10+10",
                BlockPatternScheme(density=1 / comp, block_size=g),
                PruneConfig(method="admm", admm_epochs=10, retrain_epochs=10),
            )
    torch.manual_seed(0)
    ext = extract_library(copy.deepcopy(dense), train, config=ExtractionConfig(epochs_per_step=3))
    out = {
        "dense_accuracy": round(dense_acc, 2),
        "rows": rows,
        "extraction": ext.to_dict(),
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(out) if args.json else json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
