"""NPS search benchmark on real data: the numbers in BENCHMARKS.md.

    python benchmarks/search.py [--task digits|sr] [--budget 30] [--latency-fraction 0.5]
                                [--threads 1] [--storage sqlite:///runs/bench_search.db] [--json]

``--task digits``: the digits CNN on scikit-learn digits (8x8), accuracy. ``--task sr``: the
x2 super-resolution net on scikit-image photo patches (test photos held out), PSNR, latency
measured upscaling a ``--input-size`` (128) image.

1. Pre-train the model (digits 15 epochs SGD, SR 8 epochs Adam); hold out 15 % of the train
   split for validation.
2. Search per-layer schemes and rates (default space: 8 schemes x 5 rates) under a latency
   constraint of ``--latency-fraction`` (50 %) of the *measured* dense compiled latency
   (phase 2, RL + TPE).
3. Phase 3 on the chosen configuration (magnitude vs ADMM, 8 + 8 epochs, best on val).
4. Baseline: uniform pattern+connectivity on the same layers at 2.25x (pattern only), 3x,
   4x, 6x, 8x (SR: 2.25x, 4x, 8x, and uniform block-pattern 4x, 8x for reference), through
   the same phase 3.
5. Measure every final model (and the dense one) in interleaved rounds, median of rounds,
   and compare: the search result must meet the constraint and be at least as accurate (test
   split) as every uniform model that meets the constraint and is not faster than it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from patsparse.compiler.latency import LocalLatency
from patsparse.models import build_model
from patsparse.search import (
    FastEvalConfig,
    SearchConfig,
    SearchSpace,
    SpaceConfig,
    TimingConfig,
    run_search,
    split_train_val,
)
from patsparse.search.phase3 import Phase3Config, choose_algorithm
from patsparse.search.report import format_search, plot_pareto
from patsparse.workflow import DataSpec, make_data

UNIFORM = {
    "digits": ("pattern", "pattern+connectivity@3", "pattern+connectivity@4",
               "pattern+connectivity@6", "pattern+connectivity@8"),
    "sr": ("pattern", "pattern+connectivity@4", "pattern+connectivity@8",
           "block-pattern@3", "block-pattern@4", "block-pattern@6", "block-pattern@8"),
}  # fmt: skip
MODELS = {"digits": ("digits-cnn", "digits", 15), "sr": ("sr-net", "sr", 8)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="digits", choices=tuple(MODELS))
    ap.add_argument("--input-size", type=int, default=128, help="SR latency input (LR side)")
    ap.add_argument("--budget", type=int, default=30)
    ap.add_argument("--latency-fraction", type=float, default=0.5, help="of the dense latency")
    ap.add_argument("--storage", default="sqlite:///runs/bench_search.db")
    ap.add_argument("--study-name", default=None, help="default: nps-bench-seed<S>-f<F>")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="TVM_NUM_THREADS for timing")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved final measurements")
    ap.add_argument("--epochs", type=int, default=None, help="phase-3 ADMM and retrain epochs")
    ap.add_argument("--plot", default=None, help="default: runs/bench_search_f<F>.png")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    start = time.perf_counter()
    torch.set_num_threads(1)
    Path("runs").mkdir(exist_ok=True)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    arch, data, dense_epochs = MODELS[args.task]
    spec = DataSpec(data)
    task = spec.task
    train_full, test = make_data(spec, seed=0)
    train, val = split_train_val(train_full, seed=0)
    torch.manual_seed(args.seed)
    dense = build_model(arch)
    task.fit(dense, train, epochs=dense_epochs)
    dense_acc = task.evaluate(dense.eval(), test)
    say(f"dense test {task.metric_name} {task.format(dense_acc)}")

    measurer = LocalLatency(timing=TimingConfig(repeat=15, threads=args.threads))
    side = 8 if args.task == "digits" else args.input_size
    x = torch.zeros(1, 1, side, side)
    space = SearchSpace.from_model(dense, SpaceConfig())
    config = SearchConfig(
        latency_fraction=args.latency_fraction,
        budget=args.budget,
        seed=args.seed,
        storage=args.storage,
        study_name=args.study_name
        or f"nps-bench-{args.task}-seed{args.seed}-f{args.latency_fraction:g}",
        fast_eval=FastEvalConfig(retrain_epochs=2),
    )
    t0 = time.perf_counter()
    result = run_search(
        dense, space, train, val, measurer, x, config=config, progress=say, task=task
    )
    search_s = time.perf_counter() - t0
    say(format_search(result))
    tag = f"{args.task}_f{args.latency_fraction:g}"
    plot_pareto(result, args.plot or f"runs/bench_search_{tag}.png")
    if result.best is None:
        print(json.dumps({"status": result.status, "message": result.message}))
        return

    epochs = args.epochs if args.epochs is not None else (8 if args.task == "digits" else 4)
    phase3 = Phase3Config(admm_epochs=epochs, retrain_epochs=epochs)
    candidates: dict[str, dict[str, str]] = {"search": result.best.config}
    for label in UNIFORM[args.task]:
        candidates[f"uniform {label}"] = space.uniform(label)
    finals: dict[str, dict] = {}
    t0 = time.perf_counter()
    for name, cfg in candidates.items():
        chosen = choose_algorithm(
            dense, space.plan(cfg), train, val, config=phase3, seed=0, task=task
        )
        finals[name] = {
            "config": cfg,
            "model": chosen.model.eval(),
            "method": chosen.method,
            "val_accuracy": chosen.val_accuracy,
            "test_accuracy": task.evaluate(chosen.model, test),
        }
        say(f"{name}: {chosen.method} test {task.format(finals[name]['test_accuracy'])}")
    phase3_s = time.perf_counter() - t0

    # Latency of every final model (and the dense one), interleaved rounds against drift.
    dense_model = dense.eval()
    rounds: dict[str, list[float]] = {name: [] for name in [*finals, "dense"]}
    for _ in range(args.rounds):
        for name in rounds:
            model = dense_model if name == "dense" else finals[name]["model"]
            rounds[name].append(measurer.measure(model, x).median_ms)
    lat = {name: statistics.median(v) for name, v in rounds.items()}
    constraint = args.latency_fraction * lat["dense"]  # re-measured alongside the finals
    s_lat, s_acc = lat["search"], finals["search"]["test_accuracy"]
    # The baseline is uniform pruning under the same constraint: uniform models that meet it
    # and are not faster than the search's model must not be more accurate.
    pc = [n for n in finals if n != "search" and "block-pattern" not in n]  # the baseline
    slower_or_equal = [n for n in pc if s_lat <= lat[n] <= constraint]
    beats = all(s_acc >= finals[n]["test_accuracy"] for n in slower_or_equal)
    slower_any = [n for n in pc if lat[n] >= s_lat]
    beats_any = all(s_acc >= finals[n]["test_accuracy"] for n in slower_any)
    rows = [
        {
            "model": name,
            "config": finals[name]["config"],
            "method": finals[name]["method"],
            "test_accuracy": round(finals[name]["test_accuracy"], 2),
            "latency_ms": round(lat[name], 4),
            "latency_rounds_ms": [round(v, 4) for v in rounds[name]],
            "meets_constraint": lat[name] <= constraint,
        }
        for name in finals
    ]
    out = {
        "command": " ".join(["python", *sys.argv]),
        "task": args.task,
        "metric": task.metric_name,
        "latency_input": list(x.shape),
        "tvm_threads": args.threads,
        "cpu_count": os.cpu_count(),
        "dense_test_accuracy": round(dense_acc, 2),
        "dense_latency_ms": round(lat["dense"], 4),
        "dense_latency_during_search_ms": result.dense_ms,
        "constraint_during_search_ms": result.constraint_ms,
        "constraint_final_ms": round(constraint, 4),
        "search": {
            "trials": len(result.trials),
            "status": result.status,
            "best_trial": result.best.to_dict(),
            "pareto": [t.to_dict() for t in result.pareto],
            "cache_hits": result.cache_hits,
            "cache_misses": result.cache_misses,
            "seconds": round(search_s, 1),
        },
        "rows": rows,
        "search_meets_constraint": s_lat <= constraint,
        "search_meets_search_time_constraint": s_lat <= result.constraint_ms,
        "uniform_feasible_not_faster_than_search": slower_or_equal,
        "search_at_least_as_accurate": beats,
        "uniform_not_faster_incl_over_constraint": slower_any,
        "search_at_least_as_accurate_incl_over_constraint": beats_any,
        "phase3_seconds": round(phase3_s, 1),
        "seconds": round(time.perf_counter() - start, 1),
    }
    Path(f"runs/bench_search_{tag}.json").write_text(json.dumps(out, indent=2))
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"dense: {lat['dense']:.4f} ms, {task.format(dense_acc)}; constraint {constraint:.4f} ms")
    print(f"| model | per-layer choice ({', '.join(space.layers)}) | phase 3 | test "
          f"{task.metric_name} | latency |")  # fmt: skip
    print("|---|---|---|---|---|")
    for r in rows:
        cfg = ", ".join(r["config"].values())
        ok = "" if r["meets_constraint"] else " (over)"
        print(
            f"| {r['model']} | {cfg} | {r['method']} | {task.format(r['test_accuracy'])} | "
            f"{r['latency_ms']:.4f} ms{ok} |"
        )
    print(
        f"search meets the constraint: {out['search_meets_constraint']}; at least as accurate "
        f"as every uniform p+c model that meets the constraint and is not faster than it "
        f"({slower_or_equal}): {beats}; counting models over the constraint too "
        f"({slower_any}): {beats_any}; {out['seconds']} s"
    )


if __name__ == "__main__":
    main()
