"""How the command-line programs (``governor``, ``governor-client``) end: one-line messages, and quietly
when the reader of their output went away. Standard library only, so both may import it cheaply."""

from __future__ import annotations

import os
import select
import signal
import sys
import traceback
from pathlib import Path

__all__ = ["DEBUG_ENV", "internal_error", "one_line", "quiet_broken_pipe", "stdout_gone"]

DEBUG_ENV = "GOVERNOR_DEBUG"  # set to 1: an unexpected error prints its traceback too


def one_line(text: str) -> str:
    """``text`` on one line: its non-empty lines joined with "; "."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def stdout_gone() -> bool:
    """True when stdout is a pipe or socket whose reader has closed it (`governor status | head -1`)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def quiet_broken_pipe() -> int:
    """The reader went away: stop quietly, as a CLI killed by SIGPIPE does (Python docs, "Note on
    SIGPIPE"). stdout is pointed at /dev/null so that the interpreter's last flush does not fail too.
    Returns the exit status such a CLI has (128 + SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, ValueError, OSError):
        pass
    return 128 + signal.SIGPIPE


def internal_error(prog: str, exc: BaseException, *, debug: bool = False) -> int:
    """A bug, said in one line with where it happened (the traceback too with ``debug`` or $GOVERNOR_DEBUG);
    returns exit status 1."""
    if debug or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        traceback.print_exception(exc, file=sys.stderr)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {_short(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    print(f"{prog}: internal error: {type(exc).__name__}: {one_line(str(exc))}{where}; this is a bug: rerun with "
          f"{DEBUG_ENV}=1 to see the traceback, and report it", file=sys.stderr)
    return 1


def _short(filename: str) -> str:
    """A source path from the package on: governor/cli/serve.py, not the install prefix."""
    parts = Path(filename).parts
    for top in ("governor", "governor_client"):
        if top in parts:
            return "/".join(parts[len(parts) - 1 - parts[::-1].index(top):])
    return Path(filename).name
