"""The ``patsparse`` command line: :func:`build_parser`, :func:`main` and its error handling.

One module per subcommand (``demo``, ``prune``, ``compile``, ``tune``, ``bench``, ``rpc``,
``devices``, ``search``, ``report``, ``patterns``, ``extract``, ``app``), each with ``add_parser``
(which sets the ``run`` function) and the command itself; shared flags in
:mod:`~patsparse.cli.options`. Commands reach TVM through :mod:`patsparse.compiler`, imported
when they run, so ``patsparse --help`` does not load TVM.

Every subcommand has ``--help``; ``--json`` prints one machine-readable JSON document on
stdout (progress goes to stderr). Typed patsparse errors (and bad arguments) exit with
status 2 and a one-line message on stderr; with ``--json`` every failure also prints
``{"error": {"type": ..., "message": ..., "fix": ...}}`` on stdout.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from patsparse._version import __version__
from patsparse.cli import (
    app,
    bench,
    compile,
    demo,
    devices,
    extract,
    patterns,
    profile,
    prune,
    report,
    rpc,
    search,
    tune,
)
from patsparse.cli.options import print_json
from patsparse.core.errors import PatsparseError

__all__ = ["UsageError", "build_parser", "main"]

#: exit status of a typed error or bad arguments (argparse's own)
ERROR_EXIT = 2
#: exit status of an unexpected exception (with --json; without, Python's traceback)
CRASH_EXIT = 1


class UsageError(PatsparseError, ValueError):
    """Arguments the parser rejects (an unknown option, a bad value, a missing argument)."""

    def __init__(self, message: str, parser: argparse.ArgumentParser) -> None:
        super().__init__(message, fix=f"see '{parser.prog} --help'")
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` (subcommand parsers too) whose errors :func:`main` reports, as
    JSON under ``--json``."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self)


#: the subcommands, in the order ``patsparse --help`` lists them
_SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    demo.add_parser,
    prune.add_parser,
    compile.add_parser,
    profile.add_parser,
    tune.add_parser,
    bench.add_parser,
    rpc.add_parser,
    devices.add_parser,
    search.add_parser,
    report.add_parser,
    patterns.add_parser,
    extract.add_parser,
    app.add_parser,
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="patsparse",
        description="Pattern-based sparsity for CNNs: prune in PyTorch, run fast through TVM.",
    )
    parser.add_argument("--version", action="version", version=f"patsparse {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add_parser in _SUBCOMMANDS:
        add_parser(sub)
    return parser


def _fix(exc: BaseException, command: str) -> str:
    """What to do about ``exc``: its ``fix``, else the last ``; `` clause of the message
    (where patsparse's messages say it), else where to read more."""
    fix = getattr(exc, "fix", None)
    if fix:
        return str(fix)
    if isinstance(exc, PatsparseError):
        message = str(exc)
        if "; " in message:
            return message.rsplit("; ", 1)[1]
        return f"see 'patsparse {command} --help'"
    return (
        "an unexpected error (a bug, or a broken installation): run the command without "
        "--json for the traceback and report it"
    )


def _print_json_error(exc: BaseException, command: str) -> None:
    message = str(exc)
    print_json(
        {"error": {"type": type(exc).__name__, "message": message, "fix": _fix(exc, command)}}
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``patsparse`` command; the exit status (0, 2 for an error, 3 when a search
    finds nothing feasible)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args_list
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except UsageError as exc:
        if as_json:
            command = next((a for a in args_list if not a.startswith("-")), "")
            _print_json_error(exc, command)
        # what argparse prints: the usage of the (sub)command, then the message
        exc.parser.print_usage(sys.stderr)
        print(f"{exc.parser.prog}: error: {exc}", file=sys.stderr)
        return ERROR_EXIT
    as_json = bool(getattr(args, "json", False))
    run: Callable[[argparse.Namespace], Any] = args.run
    try:
        status = run(args)
    except PatsparseError as exc:
        if as_json:
            _print_json_error(exc, args.command)
        print(f"patsparse {args.command}: error: {exc}", file=sys.stderr)
        return ERROR_EXIT
    except Exception as exc:
        if not as_json:
            raise
        _print_json_error(exc, args.command)
        traceback.print_exc(file=sys.stderr)
        return CRASH_EXIT
    return int(status or 0)
