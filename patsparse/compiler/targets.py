"""Target presets by name, as the CLI and bench take them."""

from __future__ import annotations

from typing import Any

from patsparse.core.errors import PatsparseError
from tvm_ext.targets import PRESET_NAMES, make_target


def resolve_target(target: str, **overrides: Any) -> Any:
    """A TVM target for a preset name (``host``, ``arm64``, ``adreno``; see
    :mod:`tvm_ext.targets`), with overrides such as ``mcpu``, ``mtriple``, ``cc``."""
    if target not in PRESET_NAMES:
        raise PatsparseError(
            f"target {target!r} is not supported yet; use one of {', '.join(PRESET_NAMES)}"
        )
    return make_target(target, **{k: v for k, v in overrides.items() if v is not None})
