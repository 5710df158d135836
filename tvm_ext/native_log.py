"""Drop the TVM runtime's known per-function log noise from the process's stderr.

TVM 0.27's VM executable logs ``Warning: Scope Saving:`` for every function it writes
and ``Warning: Scope Loaded:`` for every function it reads (``executable.cc``), through
C++ logging that Python cannot configure: a bench run printed hundreds of such lines. Around
those calls, :func:`without_runtime_noise` sends file descriptor 2 to a temporary file and
then writes back everything except those lines, so real warnings and errors still show.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

#: substrings of the runtime's log lines that carry no information for a user
NOISE: tuple[str, ...] = ("Warning: Scope Saving:", "Warning: Scope Loaded:")


def keep_line(line: str) -> bool:
    """Whether a captured stderr line is worth showing (not one of :data:`NOISE`)."""
    return not any(n in line for n in NOISE)


@contextlib.contextmanager
def without_runtime_noise() -> Iterator[None]:
    """Run the body with native stderr filtered by :func:`keep_line` (a no-op where fd 2
    cannot be redirected)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", errors="replace")
            kept = "".join(ln for ln in text.splitlines(keepends=True) if keep_line(ln))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()
