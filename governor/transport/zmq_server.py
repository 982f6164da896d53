"""The daemon's ZeroMQ end: a ROUTER for requests and a PUB for telemetry.

It moves frames and nothing else (meaning lives in :mod:`governor.core.protocol`), with the same
two calls as :class:`governor.transport.inproc.InprocServerEnd`: ``recv(timeout_ms)`` returns
``(identity, frames)`` and ``send(identity, frames)`` answers. Here the identity is the routing
envelope (every frame up to and including the empty delimiter, docs/protocol.md §2); a message
without a delimiter does not come from a conforming client and is dropped with a log line.

Access control: an ipc socket is chmod'ed to ``socket_mode`` and chgrp'ed to ``socket_group``
right after bind; a tcp endpoint is refused unless CURVE is configured, and then only clients
whose public keys are in the authorised directory get through (a ZAP authenticator logs refusals).
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from governor.core.protocol import Frame

__all__ = ["ServerSecurity", "TransportError", "ZmqServerEnd", "ipc_path"]

log = logging.getLogger(__name__)

_BUSY_WINDOW_S = 0.005  # traffic denser than one message per 5 ms counts as busy (see busy_poll_us)

Envelope = tuple[bytes, ...]


class TransportError(RuntimeError):
    """The endpoint cannot be served; the message says what to do."""


@dataclass(frozen=True)
class ServerSecurity:
    socket_mode: int = 0o660
    socket_group: str = "governor"
    curve_secret_file: str = ""
    curve_authorized_dir: str = ""
    # Any client that knows the server's public key gets in: an explicit choice, never a default.
    curve_allow_any: bool = False


def ipc_path(endpoint: str) -> Path | None:
    return Path(endpoint[len("ipc://"):]) if endpoint.startswith("ipc://") else None


class ZmqServerEnd:
    """ROUTER + PUB, bound on construction; close() unlinks the ipc socket files."""

    def __init__(
        self,
        endpoint: str,
        telemetry_endpoint: str = "",
        *,
        security: ServerSecurity | None = None,
        max_bytes: int = 64 * 2**20,
        context: zmq.Context[Any] | None = None,
        busy_poll_us: int = 0,
    ) -> None:
        self.endpoint = endpoint
        # Under dense traffic (a message less than _BUSY_WINDOW_S ago) a blocking poll is preceded by up to
        # busy_poll_us of non-blocking polls: waking a sleeping thread costs more than the next message
        # usually takes to arrive. Idle, it never spins.
        self.busy_poll_s = max(busy_poll_us, 0) / 1e6
        self._last_msg_t = -1.0
        self.telemetry_endpoint = telemetry_endpoint
        self.security = security or ServerSecurity()
        self._ctx = context or zmq.Context.instance()
        self._auth: Any = None
        self._router: Any = None
        self._pub: Any = None
        try:
            # libzmq drops over-size peers without a reply; keep its guard well above the protocol's own. It
            # must be set before bind: a listener copies the socket's options when it is bound.
            self._router = self._bind(zmq.ROUTER, endpoint, {zmq.MAXMSGSIZE: max_bytes * 2 + 65536})
            self._router.setsockopt(zmq.ROUTER_MANDATORY, 0)
            self._pub = self._bind(zmq.PUB, telemetry_endpoint) if telemetry_endpoint else None
        except BaseException:
            self.close()  # a telemetry endpoint that cannot be served must not leave the request socket's file
            raise
        self._poller = zmq.Poller()
        self._poller.register(self._router, zmq.POLLIN)

    @property
    def bound_endpoint(self) -> str:
        """The endpoint the request socket actually listens on (a wildcard port resolved), for logs and tests."""
        return str(self._router.getsockopt(zmq.LAST_ENDPOINT).decode())

    def _bind(self, kind: int, endpoint: str, options: dict[int, int] | None = None) -> Any:
        sock = self._ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        for option, value in (options or {}).items():
            sock.setsockopt(option, value)
        if endpoint.startswith("tcp://"):
            self._secure(sock, endpoint)
        path = ipc_path(endpoint)
        if path is not None:
            _prepare_ipc(path)
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            sock.close()
            raise TransportError(f"cannot bind {endpoint}: {exc.strerror}; is another governor running?") from exc
        if path is not None:
            self._restrict(path)
        return sock

    def _secure(self, sock: Any, endpoint: str) -> None:
        sec = self.security
        if not sec.curve_secret_file:
            raise TransportError(
                f"{endpoint} is a TCP endpoint: set [access] curve_server_secret (generate keys with "
                "`governor keys`) or use an ipc:// endpoint"
            )
        import zmq.auth
        from zmq.auth.thread import ThreadAuthenticator

        location = _authorised_keys(sec)
        public, secret = zmq.auth.load_certificate(sec.curve_secret_file)
        if secret is None:
            raise TransportError(f"{sec.curve_secret_file} holds no secret key; pass the .key_secret file")
        if self._auth is None:
            self._auth = ThreadAuthenticator(self._ctx, log=logging.getLogger("governor.auth"))
            self._auth.start()
            self._auth.configure_curve(domain="*", location=location)
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_server = True

    def _restrict(self, path: Path) -> None:
        sec = self.security
        try:
            os.chmod(path, sec.socket_mode)
        except OSError as exc:
            log.warning("cannot chmod %s to %o: %s", path, sec.socket_mode, exc.strerror)
        try:
            gid = grp.getgrnam(sec.socket_group).gr_gid
        except KeyError:
            log.warning("group %r does not exist: only root can use %s (create it: groupadd %s)",
                        sec.socket_group, path, sec.socket_group)
            return
        try:
            os.chown(path, -1, gid)
        except OSError as exc:
            log.warning("cannot give %s to group %s: %s", path, sec.socket_group, exc.strerror)

    def recv(self, timeout_ms: int | None = None) -> tuple[Envelope, list[memoryview]] | None:
        """The next well-formed request, or None when ``timeout_ms`` passes without one."""
        if not self._waiting(timeout_ms):
            return None
        self._last_msg_t = time.perf_counter()
        parts = self._router.recv_multipart(copy=False)
        split = next((i for i, f in enumerate(parts) if len(f) == 0), None)
        if split is None:
            log.warning("dropped a message without an envelope delimiter from %r", bytes(parts[0].buffer)[:32])
            return None
        envelope = tuple(bytes(f.buffer) for f in parts[: split + 1])
        return envelope, [f.buffer for f in parts[split + 1:]]

    def _waiting(self, timeout_ms: int | None) -> bool:
        if self.busy_poll_s and timeout_ms != 0:
            now = time.perf_counter()
            if now - self._last_msg_t < _BUSY_WINDOW_S:
                end = now + self.busy_poll_s
                while time.perf_counter() < end:
                    if self._router.poll(0):
                        return True
        return bool(self._poller.poll(timeout_ms))

    def is_empty(self) -> bool:
        """True when no request is waiting on the socket now (nothing is taken off it)."""
        return not self._router.get(zmq.EVENTS) & zmq.POLLIN

    def send(self, identity: Envelope, frames: Sequence[Frame]) -> None:
        with contextlib.suppress(zmq.ZMQError):  # a peer that went away: ROUTER drops, so do we
            self._router.send_multipart([*identity, *frames], copy=False)

    def publish(self, frames: Sequence[Frame]) -> None:
        if self._pub is not None:
            with contextlib.suppress(zmq.Again):
                self._pub.send_multipart(list(frames), copy=False, flags=zmq.NOBLOCK)

    def close(self) -> None:
        for sock, ep in ((self._router, self.endpoint), (self._pub, self.telemetry_endpoint)):
            if sock is None:
                continue
            sock.close(linger=0)
            path = ipc_path(ep)
            if path is not None:
                path.unlink(missing_ok=True)
        if self._auth is not None:
            self._auth.stop()
            self._auth = None


def _authorised_keys(sec: ServerSecurity) -> str:
    """Where the ZAP handler finds the client keys it lets in; fails closed when nobody chose."""
    if sec.curve_allow_any and sec.curve_authorized_dir:
        raise TransportError(
            "[access] sets both curve_authorized_dir and curve_allow_any = true: keep the directory to let in "
            "only its keys, or drop it to let in any client that knows the server's public key")
    if sec.curve_allow_any:
        log.warning("curve_allow_any = true: any client that knows the server's public key is let in")
        return str(zmq.auth.CURVE_ALLOW_ANY)
    if not sec.curve_authorized_dir:
        raise TransportError(
            "a TCP endpoint needs [access] curve_authorized_dir, the directory of client public keys to let in "
            "(`governor keys --client --name NAME` adds one); or set curve_allow_any = true to let in any client "
            "that knows the server's public key")
    keys = Path(sec.curve_authorized_dir)
    if not keys.is_dir():
        raise TransportError(f"curve_authorized_dir {keys} is not a directory; create it with `governor keys`")
    if not any(keys.glob("*.key")):
        log.warning("%s holds no client public key (*.key): every client will be refused until one is added "
                    "(`governor keys --client --name NAME`) and the daemon restarted", keys)
    return str(keys)


def _prepare_ipc(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        return
    # A socket left by a crashed daemon is removed, but one that still accepts belongs to a live daemon.
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise TransportError(f"{path} is in use by a running governor; stop it first (systemctl stop governor)")
