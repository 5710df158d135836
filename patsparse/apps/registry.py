"""The applications by CLI name: :data:`APPS` and :func:`get_app`.

Each entry is ``name: "module:Class"``; the module is imported on first use, so adding an
application is one line here (its module defines the :class:`~patsparse.apps.base.App`).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator, Mapping

from patsparse.apps.base import App
from patsparse.core.errors import UnknownNameError

_SPECS: dict[str, str] = {
    "sr": "patsparse.apps.sr:SuperResolution",
    "sr4": "patsparse.apps.sr:SuperResolutionX4",
    "color": "patsparse.apps.color:ColorizationApp",
    "style": "patsparse.apps.style:StyleTransferApp",
}


class _Apps(Mapping[str, App]):
    """name -> App instance, each built on first access."""

    def __init__(self, specs: Mapping[str, str]) -> None:
        self._specs = specs
        self._built: dict[str, App] = {}

    def __getitem__(self, name: str) -> App:
        if name not in self._built:
            module, cls = self._specs[name].split(":")
            self._built[name] = getattr(importlib.import_module(module), cls)()
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)


APPS: Mapping[str, App] = _Apps(_SPECS)
"""Every application by CLI name."""

APP_NAMES: tuple[str, ...] = tuple(_SPECS)


def get_app(name: str) -> App:
    """The application ``name``; :class:`UnknownNameError` (with the closest name) if none."""
    if name not in APPS:
        close = difflib.get_close_matches(str(name), APP_NAMES, n=1)
        raise UnknownNameError(
            f"unknown application {name!r}" + (f"; did you mean {close[0]!r}?" if close else ""),
            fix=f"use one of {', '.join(APP_NAMES)}",
        )
    return APPS[name]
