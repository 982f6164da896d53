"""Client errors, and the diagnosis that turns "no answer" into what to do about it.

ZeroMQ never fails a connect: it retries in the background, so a missing daemon, a socket file the
user may not open and a hung daemon all look the same (silence). For ``ipc://`` endpoints the socket
file tells them apart, so :func:`check_endpoint` fails fast before the first request and
:func:`unreachable` explains a timeout afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from governor.core.protocol import ProtocolError

__all__ = ["DaemonUnreachable", "GovernorError", "check_endpoint", "ipc_path", "unreachable"]

START_HINT = "start it with `governor serve` (or `systemctl start governor`) or check the endpoint"
GROUP_HINT = (
    "add your user to group `governor` (sudo usermod -aG governor $USER, then log in again) "
    "or run as a member of that group"
)


class GovernorError(Exception):
    """A call failed. ``code`` is a protocol error code (bad_request, unsupported_version, too_large,
    infeasible, unavailable, internal) or a client-side one (unreachable, permission_denied)."""

    def __init__(self, code: str, message: str, *, request_id: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    @classmethod
    def from_protocol(cls, exc: ProtocolError) -> GovernorError:
        return cls(exc.code, exc.message, request_id=exc.request_id)


class DaemonUnreachable(GovernorError):
    """No daemon answered at the endpoint (``unreachable``) or its socket may not be opened
    (``permission_denied``)."""


def ipc_path(endpoint: str) -> str | None:
    """The socket file of an ``ipc://`` endpoint, else None."""
    return endpoint[len("ipc://") :] if endpoint.startswith("ipc://") else None


def check_endpoint(
    endpoint: str,
    *,
    exists: Callable[[str], bool] = os.path.exists,
    access: Callable[[str, int], bool] = os.access,
) -> None:
    """Fail fast when an ipc socket file is missing or not readable and writable by this user."""
    path = ipc_path(endpoint)
    if path is None:
        return
    if not exists(path):
        raise DaemonUnreachable(
            "unreachable", f"no governor daemon at {endpoint}: the socket file {path} does not exist; {START_HINT}"
        )
    if not access(path, os.R_OK | os.W_OK):
        raise DaemonUnreachable("permission_denied", f"permission denied on the governor socket {path}: {GROUP_HINT}")


def unreachable(
    endpoint: str,
    timeout_ms: float,
    attempts: int,
    *,
    exists: Callable[[str], bool] = os.path.exists,
    access: Callable[[str, int], bool] = os.access,
) -> DaemonUnreachable:
    """The error for a request that got no reply after ``attempts`` tries of ``timeout_ms`` each."""
    try:
        check_endpoint(endpoint, exists=exists, access=access)
    except DaemonUnreachable as exc:
        return exc
    waited = f"{attempts} attempt{'s' if attempts > 1 else ''} of {timeout_ms:g} ms"
    stale = " (the socket file may be stale from a crashed daemon)" if ipc_path(endpoint) else ""
    return DaemonUnreachable(
        "unreachable",
        f"the governor daemon at {endpoint} did not answer ({waited}){stale}: it is not running, busy or hung; "
        f"{START_HINT}, check `journalctl -u governor`, or raise the client timeout for long inferences",
    )
