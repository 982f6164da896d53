"""Signals, systemd notification and telling a system shutdown.

Signal handlers only set flags (uvicorn, tuned): the first SIGTERM/SIGINT asks for a graceful stop;
SIGHUP asks for a reload (the serving loop resets what the daemon learned at run time). The main
loop reads the flags; exactly one code path performs shutdown. A second SIGTERM/SIGINT, while that
shutdown (a restore stuck on a slow write) or start-up's unwinding is under way, does not wait:
:class:`SignalRoute` ends the process at once (exit status 128 + the signal's number) with one line
on stderr naming the state file and ``governor restore --state-file FILE``, which puts the board
back; the state file stays for exactly that. :class:`Notifier` speaks the sd_notify datagram
protocol directly (no libsystemd needed) when ``NOTIFY_SOCKET`` is set and is silent otherwise.
:func:`system_shutting_down` tells ``rollback = "not_on_shutdown"`` whether the system is going down.

Start-up is different: first-start profiling pins clocks for minutes and has no loop that reads a
flag, and SIGTERM's default action would end the process with them pinned. So :class:`SignalRoute`
is installed before any work, and until :meth:`SignalRoute.flag_only` the first SIGTERM/SIGINT also
raises :class:`StartupInterrupted` in the main thread, as SIGINT's KeyboardInterrupt does: every
``finally`` on the way out (the profiler's restore, start-up's clean-up) runs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

__all__ = [
    "Flags",
    "Notifier",
    "SignalRoute",
    "StartupInterrupted",
    "forced_exit_line",
    "install_signal_handlers",
    "system_shutting_down",
]


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
        elif self.should_exit:
            self.force_exit = True
        else:
            self.should_exit = True


def install_signal_handlers(flags: Flags, handler: Any = None) -> dict[int, Any]:
    """Route SIGTERM/SIGINT/SIGHUP to ``flags`` (or ``handler``); returns the previous handlers for restoring."""
    previous: dict[int, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        previous[sig] = signal.signal(sig, handler or flags.handle)
    return previous


class StartupInterrupted(BaseException):
    """SIGTERM/SIGINT came before the daemon served. A BaseException, like KeyboardInterrupt, so that
    no ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(f"{self.name} before the daemon was ready")


class SignalRoute:
    """SIGTERM/SIGINT/SIGHUP -> ``flags`` from before the first hardware write to the end (module doc).

    A second SIGTERM/SIGINT ends the process at once (module doc) through ``exit_now``; ``state_file``
    is the baseline file that line names. Outside the main thread (an in-process test's daemon)
    signals cannot be routed and nothing is installed."""

    def __init__(self, flags: Flags, *, state_file: Path | None = None,
                 exit_now: Callable[[int], NoReturn] = os._exit) -> None:
        self.flags = flags
        self.state_file = state_file
        self.exit_now = exit_now
        self.starting = True
        self._previous: dict[int, Any] = {}

    def install(self) -> SignalRoute:
        if threading.current_thread() is threading.main_thread() and not self._previous:
            self._previous = install_signal_handlers(self.flags, self._handle)
        return self

    def flag_only(self) -> None:
        """From now on a signal only sets the flag (the serving loop reads it)."""
        self.starting = False

    def uninstall(self) -> None:
        """Put back the handlers found at :meth:`install` (idempotent)."""
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None = None) -> None:
        first = not self.flags.should_exit
        self.flags.handle(signum, frame)
        if self.flags.force_exit:
            # The user asked twice: no waiting for a restore. os.write, not print: this handler may run
            # in the middle of a print to stderr, and the buffered stream is not reentrant.
            os.write(2, (forced_exit_line(signum, self.state_file) + "\n").encode())
            self.exit_now(128 + signum)
        # Only the first: a second signal must not break into the restore that the first one started.
        if self.starting and first and self.flags.should_exit:
            raise StartupInterrupted(signum)


def forced_exit_line(signum: int, state_file: Path | None) -> str:
    """What a forced exit says: the board may keep what the daemon set, and how to put it back."""
    name = signal.Signals(signum).name
    if state_file is not None and state_file.exists():
        return (f"governor: second {name}: exiting now without restoring the board; its baseline stays in "
                f"{state_file.resolve()}: put it back with `governor restore --state-file {state_file.resolve()}`")
    return f"governor: second {name}: exiting now; no state file of this daemon is left, nothing to restore"


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


def _manager_state() -> str:
    """systemd's manager state (``systemctl is-system-running``), or '' without systemd."""
    try:
        done = subprocess.run(["systemctl", "is-system-running"], capture_output=True, text=True, timeout=5,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def system_shutting_down(manager_state: Callable[[], str] = _manager_state) -> bool:
    """Whether the system is going down (poweroff, reboot, halt, kexec).

    systemd reports ``stopping`` from the moment a shutdown's job is queued until the end, and the
    governor's unit is stopped inside that window. Files such as ``/run/nologin`` or
    ``/run/systemd/shutdown/scheduled`` also appear for a shutdown merely scheduled for later (and
    ``/run/nologin`` during boot), so they are not asked. Without systemd (or when ``systemctl``
    cannot answer) the answer is False: the board is restored, which is never wrong."""
    return manager_state() == "stopping"
