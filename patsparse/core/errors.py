"""Typed errors raised for bad user input.

Every error names the bad value and says how to fix it. They subclass the built-in
exception a caller would naturally catch (``ValueError``, ``KeyError``) as well as
:class:`PatsparseError`, so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class PatsparseError(Exception):
    """Base class of every error patsparse raises on purpose.

    ``fix``, when the raiser knows it, says what to do in one line (the CLI's ``--json``
    error document carries it; without it the CLI reads the fix off the message).
    """

    def __init__(self, *args: object, fix: str | None = None) -> None:
        super().__init__(*args)
        self.fix = fix


class InvalidRateError(PatsparseError, ValueError):
    """A density/compression rate outside its valid range."""


class UnsupportedLayerError(PatsparseError, ValueError):
    """A scheme was asked to prune a layer whose shape it cannot handle."""


class PatternLibraryError(PatsparseError, ValueError):
    """A pattern library is malformed (wrong shape, duplicates, wrong non-zero count)."""


class UnknownLayerError(PatsparseError, KeyError):
    """A configuration names a layer the model does not have."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class UnknownNameError(PatsparseError, KeyError):
    """An unknown scheme, model, library or dataset name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CheckpointError(PatsparseError, ValueError):
    """A checkpoint file is missing, corrupt, or not a patsparse checkpoint."""


class DataError(PatsparseError, ValueError):
    """A dataset path or format problem."""


class RemoteError(PatsparseError, RuntimeError):
    """Base of the errors about remote devices (RPC tracker, servers, emulated devices)."""


class TrackerUnreachableError(RemoteError, ConnectionError):
    """No RPC tracker answers at the given address."""


class DeviceKeyMissingError(RemoteError, LookupError):
    """The tracker has no (free) server registered under the requested key."""


class DeviceSetupError(RemoteError):
    """An emulated device could not be built or started (missing tools, failed build)."""


class SearchConfigError(PatsparseError, ValueError):
    """A pruning-search setting is invalid (empty search space, bad budget or constraint)."""


class LatencyMeasurementError(PatsparseError, RuntimeError):
    """A candidate model could not be compiled or timed on the target."""


class VerificationError(PatsparseError, RuntimeError):
    """The compiled model's outputs differ from the original model's (a compiler bug: the
    message names the worst output, ``fix`` the way around it)."""
