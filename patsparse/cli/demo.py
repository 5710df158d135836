"""``patsparse demo``: the main job: prune a CNN on real digits with ADMM, compile it with
TVM, run it; then one real-time application (the shipped super-resolution model, pruned and
compiled) on a held-out photo, its picture saved."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from patsparse.cli.options import DEFAULT_COMPRESSION, add_json, add_verify
from patsparse.cli.prune import defaults as prune_defaults
from patsparse.cli.prune import print_prune, prune_job


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the main job: prune a CNN on real digits with ADMM, compile it with TVM, run",
        description="Train a small CNN on scikit-learn's digits, prune it to pattern+"
        "connectivity sparsity with ADMM, retrain, save runs/demo.pt, then import it into "
        "TVM, rewrite its convs into pattern-sparse kernels, verify them and run the test set. "
        "Last, run the shipped pruned super-resolution model, compiled, on a held-out photo: "
        "the picture (input | bicubic | ours) goes next to the checkpoint, with its PSNR/SSIM "
        "against bicubic and its speed-up over PyTorch running the dense model.",
    )
    p.add_argument("--compression", type=float, default=DEFAULT_COMPRESSION)
    p.add_argument("--out", default=None, help="checkpoint path (default runs/demo.pt)")
    add_verify(p)
    add_json(p)
    p.set_defaults(run=run)


def _demo_tvm(checkpoint: str, *, verify: bool = True) -> dict[str, Any]:
    """Import the pruned checkpoint into TVM, rewrite, verify (unless told not to), run the
    digits test set."""
    from patsparse.compiler.compile import compile_model, compiled_accuracy
    from patsparse.data import load_digits_split, make_loaders
    from patsparse.model_spec import load_model_spec

    model, arch, _ = load_model_spec(checkpoint)
    result = compile_model(model, arch, verify=verify)
    _, test = make_loaders(*load_digits_split(seed=0), seed=0)
    s = result.summary
    return {
        "rewritten_convs": s["rewritten"],
        "blocked_convs": len(s["blocked"]),
        "convs": s["convs"],
        "max_abs_error_vs_pytorch": s["max_abs_error_vs_pytorch"],
        "max_layer_error": max(
            (r["max_abs_error"] or 0.0 for r in [*s["layers"], *s["blocked"]] if r["rewritten"]),
            default=0.0,
        ),
        "accuracy": round(compiled_accuracy(result.compiled, test), 3),
        "storage_bytes_rewritten_layers": s["storage_bytes_rewritten_layers"],
        "compile_seconds": s["compile_seconds"],
        "verified": s["verification"] is not None,
    }


def run(args: argparse.Namespace) -> None:
    from patsparse.workflow import default_out_dir, run_prune

    ns = prune_defaults()
    ns.compression = args.compression
    ns.out = args.out or str(default_out_dir() / "demo.pt")
    summary = run_prune(prune_job(ns), progress=True)
    summary["tvm"] = _demo_tvm(ns.out, verify=not args.no_verify)
    from patsparse.apps.showcase import format_showcase, showcase

    summary["app"] = showcase(Path(ns.out).parent)
    app_text = format_showcase(summary["app"])
    print_prune(summary, args.json)
    if not args.json:
        print(app_text)
