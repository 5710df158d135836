"""Run an application on image files with its compiled (pruned) model and write PNGs.

Each input size is its own compiled model (TVM compiles for static shapes):
:class:`CompiledApp` compiles on the first photo of a shape and reuses it for the next ones.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from patsparse.apps.base import App
from patsparse.apps.photos import IMAGE_SUFFIXES, image_files, read_image, write_image
from patsparse.compiler.compile import compile_torch
from patsparse.core.errors import DataError


class CompiledApp:
    """``app`` on ``model`` through patsparse's compiler, one compiled model per input shape."""

    def __init__(self, app: App, model: nn.Module, *, target: Any = None) -> None:
        self.app = app
        self.model = model.eval()
        self.target = target
        self.compiled: dict[tuple[int, ...], Any] = {}  # tvm_ext.pipeline.CompiledModel
        self.compile_seconds: dict[tuple[int, ...], float] = {}

    def engine(self, x: torch.Tensor) -> Any:
        """The compiled model for ``x``'s shape (compiled now if it is a new shape)."""
        shape = tuple(int(d) for d in x.shape)
        if shape not in self.compiled:
            start = time.perf_counter()
            self.compiled[shape] = compile_torch(self.model, x, target=self.target)
            self.compile_seconds[shape] = time.perf_counter() - start
        return self.compiled[shape]

    def output(self, photo: np.ndarray) -> torch.Tensor:
        """The compiled model's raw output for ``photo``."""
        x = self.app.to_input(photo)
        out = self.engine(x)(np.ascontiguousarray(x.numpy()))
        return torch.from_numpy(np.asarray(out))

    def __call__(self, photo: np.ndarray) -> np.ndarray:
        """The app's picture of ``photo``, computed by the compiled model."""
        return self.app.to_picture(self.output(photo), photo)


@dataclass(frozen=True)
class RunRecord:
    """One picture written: from where, to where, its sizes, compile and run time."""

    source: str
    output: str
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    compile_seconds: float
    run_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "output": self.output,
            "in_size": list(self.in_size),
            "out_size": list(self.out_size),
            "compile_seconds": round(self.compile_seconds, 2),
            "run_ms": round(self.run_ms, 2),
        }


def output_paths(app: App, source: Path, out: Path) -> list[tuple[Path, Path]]:
    """(input, output) pairs: a file to ``out`` (a picture path, or a folder to put
    ``<stem>_<app>.png`` in), a folder's images to the same relative paths under ``out``."""
    if source.is_dir():
        if out.suffix.lower() in IMAGE_SUFFIXES:
            raise DataError(
                f"{str(source)!r} is a folder, so --out must be a folder, got {str(out)!r}",
                fix="give --out a folder name",
            )
        return [(f, out / f.relative_to(source).with_suffix(".png")) for f in image_files(source)]
    if not source.is_file():
        raise DataError(f"{str(source)!r} does not exist", fix="give an image file or a folder")
    if out.suffix.lower() in IMAGE_SUFFIXES:
        return [(source, out)]
    return [(source, out / f"{source.stem}_{app.name}.png")]


def run_app(
    runner: CompiledApp,
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
) -> list[RunRecord]:
    """Run ``runner`` on the image ``source`` (or every image in the folder ``source``) and
    write the pictures under ``out`` (see :func:`output_paths`)."""
    records = []
    for src, dst in output_paths(runner.app, Path(source), Path(out)):
        photo = read_image(src)
        x = runner.app.to_input(photo)
        compiled_before = set(runner.compiled)
        runner.engine(x)
        shape = tuple(int(d) for d in x.shape)
        compile_s = runner.compile_seconds[shape] if shape not in compiled_before else 0.0
        start = time.perf_counter()
        picture = runner(photo)
        run_ms = (time.perf_counter() - start) * 1e3
        write_image(dst, picture)
        records.append(
            RunRecord(
                str(src),
                str(dst),
                (photo.shape[0], photo.shape[1]),
                (picture.shape[0], picture.shape[1]),
                compile_s,
                run_ms,
            )
        )
    return records
