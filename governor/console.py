"""How the command-line programs (``governor``, ``governor-client``) end: one-line messages, and quietly
when the reader of their output went away. Standard library only, so both may import it cheaply."""

from __future__ import annotations

import os
import select
import signal
import sys

__all__ = ["one_line", "quiet_broken_pipe", "stdout_gone"]


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
