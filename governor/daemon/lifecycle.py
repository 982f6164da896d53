"""Signals and systemd notification.

Signal handlers only set flags (uvicorn, tuned): the first SIGTERM/SIGINT asks for a graceful stop,
a second SIGINT forces it; SIGHUP asks for a reload. The main loop reads the flags; exactly one
code path performs shutdown. :class:`Notifier` speaks the sd_notify datagram protocol directly
(no libsystemd needed) when ``NOTIFY_SOCKET`` is set and is silent otherwise.
"""

from __future__ import annotations

import os
import signal
import socket
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

__all__ = ["Flags", "Notifier", "install_signal_handlers"]


@dataclass
class Flags:
    should_exit: bool = False
    force_exit: bool = False
    reload: bool = False
    signals: list[int] = field(default_factory=list)

    def handle(self, signum: int, _frame: FrameType | None = None) -> None:
        self.signals.append(signum)
        if signum == signal.SIGHUP:
            self.reload = True
        elif self.should_exit and signum == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


def install_signal_handlers(flags: Flags) -> dict[int, Any]:
    """Route SIGTERM/SIGINT/SIGHUP to ``flags``; returns the previous handlers for restoring."""
    previous: dict[int, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        previous[sig] = signal.signal(sig, flags.handle)
    return previous


class Notifier:
    """sd_notify: READY=1, WATCHDOG=1, STOPPING=1, STATUS=... to $NOTIFY_SOCKET."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ) if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        # Abstract-namespace sockets are written with a leading '@'.
        self._addr = "\0" + addr[1:] if addr.startswith("@") else addr
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        watched = usec.isdigit() and (not pid or pid == str(os.getpid()))
        self.watchdog_interval_s = int(usec) / 1e6 / 2 if watched else 0.0
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._addr)

    def send(self, *lines: str) -> bool:
        if not self._addr:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode(), self._addr)
            return True
        except OSError:
            return False  # systemd gone or socket not ours: never fatal

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
