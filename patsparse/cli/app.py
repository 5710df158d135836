"""``patsparse app {train,prune,run,bench} APP``: the real-time applications (super
resolution, colorization, style transfer) trained on real photos, pruned, compiled, run on
pictures and measured (:mod:`patsparse.apps`)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from patsparse.apps.registry import APP_NAMES
from patsparse.cli.options import DEFAULT_TRACKER, add_json, given, print_json


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "app",
        help="the real-time applications: train, prune, run on pictures, Table 1",
        description="Applications of the real-time demo paper, trained on real photos "
        "(scikit-image + matplotlib, or --data-root), pruned, compiled with patsparse. "
        "See docs/apps.md.",
    )
    actions = p.add_subparsers(dest="action", required=True)

    t = actions.add_parser("train", help="train an app's dense model on photos")
    _app_arg(t)
    _data_root(t)
    t.add_argument("--steps", type=int, default=None, help="training steps (app default)")
    t.add_argument("--lr", type=float, default=None, help="Adam learning rate (app default)")
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--patch", type=int, default=None, help="crop size in pixels")
    t.add_argument("--pairs", type=int, default=None, help="training crops drawn")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--out", default=None, help="checkpoint path (default runs/APP-dense.pt)")
    add_json(t)
    t.set_defaults(run=run_train)

    r = actions.add_parser("prune", help="prune an app's trained model (ADMM or magnitude)")
    _app_arg(r)
    _data_root(r)
    r.add_argument("--dense", default=None, help="dense checkpoint (default: the shipped one)")
    r.add_argument("--method", choices=("admm", "magnitude"), default=None)
    r.add_argument("--scheme", default=None, help="pruning scheme (default: the app's first)")
    r.add_argument("--compression", type=float, default=None)
    r.add_argument(
        "--thin-compression",
        type=float,
        default=None,
        help="column-prune the image-out convs (fewer than 16 output channels) at this rate "
        "(default 1: dense)",
    )
    r.add_argument("--admm-epochs", type=int, default=None)
    r.add_argument("--retrain-epochs", type=int, default=None)
    r.add_argument("--pairs", type=int, default=None, help="crops per epoch")
    r.add_argument(
        "--compare", action="store_true", help="also prune with the other method and compare"
    )
    r.add_argument("--out", default=None, help="checkpoint path (default runs/APP-pruned.pt)")
    add_json(r)
    r.set_defaults(run=run_prune)

    u = actions.add_parser("run", help="run an app on a picture or a folder (compiled model)")
    _app_arg(u)
    u.add_argument("source", help="an image file or a folder of images")
    u.add_argument("--out", default="runs/app", help="output picture path or folder")
    u.add_argument(
        "--checkpoint", default=None, help="pruned checkpoint (default: the shipped one)"
    )
    add_json(u)
    u.set_defaults(run=run_run)

    b = actions.add_parser(
        "bench", help="Table 1: PyTorch dense, TVM dense, pruned, patsparse; or a device check"
    )
    _app_arg(b)
    _data_root(b)
    b.add_argument("--dense", default=None, help="dense checkpoint (default: shipped)")
    b.add_argument("--pruned", default=None, help="pruned checkpoint (default: shipped)")
    b.add_argument("--sizes", default=None, help="input sizes, e.g. 256,512")
    b.add_argument("--runs", type=int, default=None, help="timed runs per engine")
    b.add_argument("--threads", type=int, default=None)
    b.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default=None,
        help="wall time (default), or this process's CPU time (with --threads 1 on a busy machine)",
    )
    b.add_argument("--out", default=None, help="also write the JSON here")
    b.add_argument(
        "--tracker",
        default=None,
        help=f"run the pruned model on a device behind this tracker (e.g. {DEFAULT_TRACKER}) "
        "instead of the table: its error vs PyTorch and its time there",
    )
    b.add_argument("--key", default="arm64-qemu", help="device key (with --tracker)")
    b.add_argument("--target", default="arm64", help="device target (with --tracker)")
    b.add_argument("--size", type=int, default=64, help="input size on the device")
    add_json(b)
    b.set_defaults(run=run_bench)


def _app_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("app", choices=APP_NAMES, help="the application")


def _data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-root", default=None, help="a folder of your own photos (default: built-in)"
    )


def _setup(args: argparse.Namespace) -> Any:
    from patsparse.apps import get_app

    return get_app(args.app)


def _photos(app: Any, data_root: str | None) -> Any:
    from patsparse.apps.photos import photo_set

    return photo_set(data_root, color_only=app.color_only)


def _fmt(q: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in q.items())


def run_train(args: argparse.Namespace) -> int:
    from patsparse.apps.checkpoints import save_app_checkpoint
    from patsparse.apps.train import train_app

    app = _setup(args)
    cfg = dataclasses.replace(
        app.train_defaults,
        **given(
            steps=args.steps,
            lr=args.lr,
            batch_size=args.batch_size,
            patch=args.patch,
            pairs=args.pairs,
            seed=args.seed,
        ),
    )
    photos = _photos(app, args.data_root)
    _say(
        f"training {app.name} for {cfg.steps} steps on {len(photos.train)} photos ({photos.source})"
    )
    model, log = train_app(app, photos, config=cfg, progress=not args.json)
    out = Path(args.out or f"runs/{app.name}-dense.pt")
    save_app_checkpoint(out, app, "dense", model, metrics={"train": log.to_dict()})
    res = {**log.to_dict(), "checkpoint": str(out)}
    if args.json:
        print_json(res)
    else:
        print(f"{app.title}: trained in {log.seconds:.0f} s; held out: {_fmt(log.quality)}")
        print(f"baseline: {_fmt(log.baseline)}; saved {out}")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    from patsparse.apps.checkpoints import load_app_checkpoint, save_app_checkpoint
    from patsparse.apps.prune import AppPruneConfig, compare_methods, prune_app

    app = _setup(args)
    cfg = AppPruneConfig(
        **given(
            method=args.method,
            scheme=args.scheme,
            compression=args.compression,
            thin_compression=args.thin_compression,
            admm_epochs=args.admm_epochs,
            retrain_epochs=args.retrain_epochs,
            pairs=args.pairs,
        )
    )
    dense = load_app_checkpoint(app, "dense", args.dense)
    photos = _photos(app, args.data_root)
    _say(f"pruning {app.name} ({cfg.method}, {cfg.scheme or app.schemes[0]} at {cfg.compression}x)")
    res = prune_app(app, dense.model, photos, config=cfg, progress=not args.json)
    out = Path(args.out or f"runs/{app.name}-pruned.pt")
    dense_quality = app.quality(dense.model, photos.held_out)
    meta = {
        "prune": {
            "config": cfg.to_dict(),
            "seconds": res.seconds,
            "layers": res.layers,
            "history": res.history,
        },
        "quality": res.quality,
        "dense_quality": dense_quality,
        "baseline": app.baseline(photos.held_out),
    }
    if args.compare:  # stored in the checkpoint with the rest
        meta["compare"] = compare_methods(app, dense.model, photos, config=cfg)
    schemes = {n: d.scheme for n, d in res.decisions.items()}
    save_app_checkpoint(
        out, app, "pruned", res.model, masks=res.masks, schemes=schemes, plan=res.plan, metrics=meta
    )
    result: dict[str, Any] = {**meta, "checkpoint": str(out)}
    if args.json:
        print_json(result)
        return 0
    for row in res.layers:
        print(
            f"{row['layer']:<16} {'x'.join(map(str, row['shape'])):<12} {row['scheme']:<22} "
            f"{row['kept']:>6}/{row['weights']:<6} {row['compression']:>6}x"
        )
    print(
        f"pruned in {res.seconds:.0f} s; held out: {_fmt(res.quality)}; "
        f"dense: {_fmt(dense_quality)}"
    )
    for method, c in result.get("compare", {}).items():
        print(f"{method:>9}: {_fmt(c['quality'])} ({c['seconds']} s)")
    print(f"saved {out}")
    return 0


def run_run(args: argparse.Namespace) -> int:
    from patsparse.apps.checkpoints import load_app_checkpoint
    from patsparse.apps.run import CompiledApp, run_app

    app = _setup(args)
    ckpt = load_app_checkpoint(app, "pruned", args.checkpoint)
    records = run_app(CompiledApp(app, ckpt.model), args.source, args.out)
    if args.json:
        print_json({"app": app.name, "pictures": [r.to_dict() for r in records]})
        return 0
    for r in records:
        print(
            f"{r.source} {r.in_size[0]}x{r.in_size[1]} -> {r.output} {r.out_size[0]}x"
            f"{r.out_size[1]} (compile {r.compile_seconds:.1f} s, run {r.run_ms:.1f} ms)"
        )
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from patsparse.apps.checkpoints import load_app_checkpoint

    app = _setup(args)
    pruned = load_app_checkpoint(app, "pruned", args.pruned)
    if args.tracker:
        from patsparse.apps.device import device_check

        res = device_check(
            app,
            pruned.model,
            tracker=args.tracker,
            key=args.key,
            size=args.size,
            target=args.target,
            threads=args.threads,
        )
        if args.json:
            print_json(res)
        else:
            print(
                f"{app.name} on {args.key} ({args.target}, input {res['input_shape']}): max abs "
                f"error vs PyTorch {res['max_abs_error_vs_pytorch']:.2e}, "
                f"{res['device_ms']['median']:.1f} ms (emulated: says nothing about a phone)"
            )
        return 0

    from patsparse.apps.table import TableConfig, app_table, format_table, to_json

    dense = load_app_checkpoint(app, "dense", args.dense)
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else None
    cfg = TableConfig(**given(sizes=sizes, runs=args.runs, threads=args.threads, clock=args.clock))
    res = app_table(
        app, dense.model, pruned.model, _photos(app, args.data_root), config=cfg, log=_say
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(to_json(res))
    if args.json:
        print_json(res)
    else:
        print(format_table(res))
    return 0
