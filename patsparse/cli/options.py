"""Argument helpers shared by the subcommands: ``--json``, the scheme options, the device
options, and defaults read off the config dataclasses (one source for each default)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from patsparse.schemes import Scheme

#: the scheme ``prune`` and ``demo`` apply unless told otherwise
DEFAULT_SCHEME = "pattern+connectivity"
#: compression of ``prune``/``demo`` (and of ``--layer NAME=SCHEME`` without a rate)
DEFAULT_COMPRESSION = 6.0
#: compression of a zoo model that ``compile``/``tune`` prune one-shot
ZOO_COMPRESSION = 8.0
#: the compilation target of ``compile``/``tune``
DEFAULT_TARGET = "host"
#: where ``rpc query`` and ``devices up`` look for a tracker
DEFAULT_TRACKER = "127.0.0.1:9190"


def default_of(config: type, name: str) -> Any:
    """The default of field ``name`` of the dataclass ``config`` (flags take their defaults
    from the configs, so no default is written twice). A ``default_factory`` is called:
    read such defaults when the command runs, not while building the parser."""
    for f in dataclasses.fields(config):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    raise KeyError(f"{config.__name__} has no field {name!r} with a default")


def given(**options: Any) -> dict[str, Any]:
    """The options that were given (not ``None``): flags left at ``None`` keep the config's
    default (for configs too costly to import while building the parser)."""
    return {k: v for k, v in options.items() if v is not None}


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def add_scheme_args(
    p: argparse.ArgumentParser,
    *,
    compression: float | None,
    help_compression: str,
    scheme: str = DEFAULT_SCHEME,
) -> None:
    """``--scheme/--compression/--library/--block-size``, shared by prune, compile and tune."""
    from patsparse.schemes import scheme_names
    from patsparse.schemes.options import DEFAULT_LIBRARY

    p.add_argument("--scheme", default=scheme, choices=scheme_names())
    p.add_argument("--compression", type=float, default=compression, help=help_compression)
    p.add_argument("--library", default=DEFAULT_LIBRARY, help="pattern library name")
    p.add_argument("--block-size", type=int, default=None, help="filters per block")


def scheme_from_args(
    name: str, compression: float | None, library: str, block_size: int | None
) -> Scheme:
    """The scheme the scheme options name (a compression for a fixed-rate scheme is ignored:
    the flag's default applies to whichever scheme was chosen)."""
    from patsparse.schemes import scheme_from_options

    return scheme_from_options(
        name,
        compression,
        library=library,
        block_size=block_size,
        default_compression=DEFAULT_COMPRESSION,
        fixed_rate="ignore",
    )


def scheme_of(args: argparse.Namespace) -> Scheme:
    """The scheme of a command's :func:`add_scheme_args` options."""
    return scheme_from_args(args.scheme, args.compression, args.library, args.block_size)


def add_verify(p: argparse.ArgumentParser) -> None:
    """``--no-verify``: skip the checks of the compiled model against PyTorch (per layer and
    end to end; ``compile_torch(verify=...)``, which costs about 60 % more compile time)."""
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="skip checking the compiled model against PyTorch (per layer and end to end)",
    )


def add_device_args(p: argparse.ArgumentParser) -> None:
    """``--tracker HOST:PORT --key KEY``: run / measure on that device over RPC."""
    p.add_argument("--tracker", default=None, help="RPC tracker HOST:PORT of the device")
    p.add_argument("--key", default=None, help="device key at the tracker (patsparse rpc query)")
