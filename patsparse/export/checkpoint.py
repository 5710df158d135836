"""Save and load pruned models with their masks and scheme metadata.

A checkpoint is a plain dict of tensors, strings and numbers, so it loads with
``torch.load(weights_only=True)`` (no pickled code). Zoo models are rebuilt by name; any
other model is loaded into an instance the caller passes.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from patsparse._version import __version__
from patsparse.core.errors import CheckpointError
from patsparse.pruning.masks import attach_mask
from patsparse.schemes.base import Scheme, scheme_from_dict
from patsparse.schemes.plan import PruningPlan

FORMAT = "patsparse.checkpoint"
FORMAT_VERSION = 1


@dataclass
class PrunedModel:
    """A loaded checkpoint: the model (weights pruned), masks and what produced them."""

    model: nn.Module
    masks: dict[str, torch.Tensor]
    schemes: dict[str, Scheme | None]
    plan: PruningPlan | None
    arch: str | None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


def save_pruned(
    path: str | os.PathLike[str],
    model: nn.Module,
    masks: dict[str, torch.Tensor],
    *,
    schemes: dict[str, Scheme | None] | None = None,
    plan: PruningPlan | None = None,
    arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (a crash never leaves a half-written file at ``path``)."""
    path = Path(path)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "patsparse_version": __version__,
        "arch": arch or "",
        "arch_kwargs_json": json.dumps(arch_kwargs or {}, sort_keys=True),
        "state_dict": state,
        "masks": {k: v.detach().to(torch.bool).clone() for k, v in masks.items()},
        "schemes_json": json.dumps(
            {n: (s.to_dict() if s else None) for n, s in (schemes or {}).items()}, sort_keys=True
        ),
        "plan_json": plan.to_json() if plan else "",
        "metrics_json": json.dumps(metrics or {}, sort_keys=True),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def _read(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise CheckpointError(
            f"{str(path)!r} is a directory, not a checkpoint; give the checkpoint file (e.g. "
            f"the .pt written by 'patsparse prune --out')",
            fix="give the path of the checkpoint file, not of its directory",
        )
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist; check the path")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt or not a torch file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); re-create it with "
            f"'patsparse prune --out'"
        ) from exc
    except Exception as exc:  # pickle's UnpicklingError and friends: not a checkpoint we wrote
        raise CheckpointError(
            f"checkpoint {str(path)!r} could not be read safely ({type(exc).__name__}); only "
            f"files written by patsparse.save_pruned load with weights_only=True"
        ) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is a torch file but not a patsparse checkpoint (no format tag); "
            f"save with patsparse.export.save_pruned"
        )
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has checkpoint format {data.get('format_version')}, newer than "
            f"this patsparse ({FORMAT_VERSION}); upgrade patsparse"
        )
    missing = {"state_dict", "masks", "schemes_json"} - set(data)
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks {sorted(missing)}: corrupt")
    return data


def load_pruned(
    path: str | os.PathLike[str],
    *,
    model: nn.Module | None = None,
    attach_masks: bool = False,
) -> PrunedModel:
    """Load a checkpoint; ``model`` is required for architectures outside the zoo.

    With ``attach_masks`` the masks are re-attached as parametrizations (for retraining).
    """
    from patsparse.models import MODEL_NAMES, build_model  # late: models import torch-heavy code

    path = Path(path)
    data = _read(path)
    arch = str(data.get("arch") or "") or None
    try:
        arch_kwargs = json.loads(data.get("arch_kwargs_json") or "{}")
        schemes_raw = json.loads(data["schemes_json"])
        plan = PruningPlan.from_json(data["plan_json"]) if data.get("plan_json") else None
        metrics = json.loads(data.get("metrics_json") or "{}")
    except (json.JSONDecodeError, TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} has corrupt metadata: {exc}") from exc
    if model is None:
        # the fix names the call: a saved architecture is rebuilt by name from the zoo only
        explicit = f"patsparse.export.load_pruned({str(path)!r}, model=MyNet())"
        if arch is None:
            raise CheckpointError(
                f"checkpoint {str(path)!r} holds a model outside the zoo; pass model= an "
                f"instance of its architecture: {explicit}",
                fix=f"load it from Python with its model: {explicit}",
            )
        if arch not in MODEL_NAMES:
            raise CheckpointError(
                f"checkpoint {str(path)!r} names its architecture {arch!r}, which is no zoo "
                f"model (zoo: {', '.join(MODEL_NAMES)}); the name comes from the checkpoint, "
                f"so load it from Python with an instance of that model: {explicit}",
                fix=f"load it from Python with its model: {explicit}",
            )
        model = build_model(arch, **arch_kwargs)
    try:
        model.load_state_dict(data["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not fit the model ({str(exc).splitlines()[0]}); "
            f"pass the architecture it was saved from"
        ) from exc
    masks = dict(data["masks"])
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        module = modules.get(name)
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.shape != mask.shape:
            raise CheckpointError(f"checkpoint {str(path)!r}: mask {name!r} fits no weight")
        if bool((weight.detach()[~mask] != 0).any()):
            raise CheckpointError(
                f"checkpoint {str(path)!r}: layer {name!r} has non-zero weights outside its "
                f"mask; the file is corrupt"
            )
        if attach_masks:
            attach_mask(module, mask)  # type: ignore[arg-type]
    schemes = {n: (scheme_from_dict(s) if s else None) for n, s in schemes_raw.items()}
    model.eval()
    return PrunedModel(
        model=model,
        masks=masks,
        schemes=schemes,
        plan=plan,
        arch=arch,
        arch_kwargs=arch_kwargs,
        metrics=metrics,
    )
