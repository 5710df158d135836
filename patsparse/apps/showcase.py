"""One application run on a held-out photo, as ``patsparse demo`` ends: the shipped pruned
model compiled by patsparse, its picture saved next to the trivial baseline's, its quality
against that baseline and its speed against PyTorch running the dense model."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from patsparse.apps.checkpoints import load_app_checkpoint
from patsparse.apps.photos import HELD_OUT, center_crop, load_photo, write_image
from patsparse.apps.registry import get_app
from patsparse.apps.run import CompiledApp
from patsparse.bench.allocator import steady_allocator
from patsparse.bench.spread import summary_ms
from patsparse.bench.torch_timing import interleaved


@dataclass(frozen=True)
class ShowcaseConfig:
    """Which app, on which held-out photo, at which size, timed how often."""

    app: str = "sr"
    photo: str = "grace_hopper"
    size: int = 256
    runs: int = 7

    def __post_init__(self) -> None:
        if self.photo not in HELD_OUT:
            raise ValueError(
                f"the showcase photo must be held out from training ({', '.join(HELD_OUT)}); "
                f"got {self.photo!r}"
            )
        if self.size < 16 or self.runs < 1:
            raise ValueError(f"size must be >= 16 and runs >= 1, got {self.size}, {self.runs}")


def showcase(out_dir: str | os.PathLike[str], *, config: ShowcaseConfig | None = None) -> dict:
    """Run ``config.app``'s shipped pruned model, compiled, on a ``size`` crop of a held-out
    photo; write ``<app>_<photo>.png`` (source | baseline | ours side by side) under
    ``out_dir``; return quality (ours and the baseline's), latency and the picture's path."""
    cfg = config or ShowcaseConfig()
    app = get_app(cfg.app)
    dense = load_app_checkpoint(app, "dense").model
    pruned = load_app_checkpoint(app, "pruned").model
    original = center_crop(load_photo(cfg.photo), cfg.size)
    source = app.source(original)  # super resolution: the photo shrunk by its scale
    runner = CompiledApp(app, pruned)
    x = app.to_input(source)
    compiled = runner.engine(x)
    ours = runner(source)
    baseline = app.baseline_picture(source)
    xn = np.ascontiguousarray(x.numpy())
    steady_allocator()  # PyTorch at its steady speed, not page-faulting each call
    with torch.no_grad():
        times = interleaved(
            {"pytorch_dense": functools.partial(dense, x), "patsparse": lambda: compiled(xn)},
            cfg.runs,
        )
    torch_ms, ours_ms = (summary_ms(times[k])["median"] for k in ("pytorch_dense", "patsparse"))
    shown = [_fit(source, ours.shape[:2]), baseline, ours]
    path = write_image(Path(out_dir) / f"{app.name}_{cfg.photo}.png", np.concatenate(shown, 1))
    return {
        "app": app.name,
        "photo": cfg.photo,
        "input_shape": list(x.shape),
        "quality": app.score(ours, original),
        "baseline_quality": app.score(baseline, original),
        "headline": app.metrics[0].key,
        "better": app.metrics[0].better,
        "pytorch_dense_ms": torch_ms,
        "patsparse_pruned_ms": ours_ms,
        "speedup": round(torch_ms / ours_ms, 2),
        "compile_seconds": round(runner.compile_seconds[tuple(x.shape)], 1),
        "picture": str(path),
        "panels": "input | baseline | patsparse (pruned, compiled)",
    }


def _fit(img: np.ndarray, hw: tuple[int, ...]) -> np.ndarray:
    """``img`` repeated (nearest) to ``hw`` when it is an integer factor smaller."""
    fy, fx = hw[0] // img.shape[0], hw[1] // img.shape[1]
    big = np.repeat(np.repeat(img, fy, axis=0), fx, axis=1) if fy > 1 or fx > 1 else img
    return big[: hw[0], : hw[1]]


def format_showcase(result: dict[str, Any]) -> str:
    """Two lines: quality vs the baseline, speed vs PyTorch, where the picture is."""
    key = result["headline"]
    q, b = result["quality"], result["baseline_quality"]
    rest = ", ".join(f"{k} {v:.4g} (baseline {b[k]:.4g})" for k, v in q.items() if k != key)
    return (
        f"{result['app']} on held-out photo {result['photo']!r}: {key} {q[key]:.4g} vs the "
        f"baseline's {b[key]:.4g} ({result['better']} is better){', ' + rest if rest else ''}\n"
        f"pruned + patsparse {result['patsparse_pruned_ms']:.2f} ms vs PyTorch dense "
        f"{result['pytorch_dense_ms']:.2f} ms: {result['speedup']}x; picture "
        f"({result['panels']}): {result['picture']}"
    )
