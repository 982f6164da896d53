"""The daemon's ZeroMQ end: a ROUTER for requests and an XPUB for telemetry.

It moves frames and nothing else (meaning lives in :mod:`governor.core.protocol`), with the same
two calls as :class:`governor.transport.inproc.InprocServerEnd`: ``recv(timeout_ms)`` returns
``(identity, frames)`` and ``send(identity, frames)`` answers. Here the identity is the routing
envelope (every frame up to and including the empty delimiter, docs/protocol.md §2); a message
without a delimiter does not come from a conforming client and is dropped with a log line.

Access control: an ipc socket is chmod'ed to ``socket_mode`` and chgrp'ed to ``socket_group``
right after bind, in a directory that only the daemon's user may write (anyone else who can could
rename the socket and put a fake daemon in its place); a tcp endpoint is refused unless CURVE is
configured, and then only clients whose public keys are in the authorised directory get through
(refusals are logged at WARNING, rate-limited, on ``governor.auth``).

Hostile or careless peers (issue 20): connections are bounded per process, per user and in all, and
the descriptor limit is raised so that libzmq never meets EMFILE (:mod:`governor.transport.guard`);
a message is taken frame by frame and dropped as soon as its payload passes ``max_bytes`` or the
protocol's frame count, with a ``too_large`` reply and its memory handed back to the kernel.

Telemetry goes out on an XPUB (to subscribers a PUB like any other), because it tells the daemon
which topics someone subscribes to: :meth:`ZmqServerEnd.wants` lets the daemon skip building and
encoding telemetry nobody reads, which was a tenth of its time per ``infer``.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import socket
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from governor.core import protocol as p
from governor.core.protocol import Frame
from governor.transport.guard import MONITOR_LAG, ConnectionGuard, ConnectionLimits
from governor.transport.refusals import RefusalLog, RefusingAuthenticator
from governor.transport.resources import (
    RESERVE_FDS,
    give_back_memory,
    memory_limit_bytes,
    open_fds,
    raise_fd_limit,
)

__all__ = ["ConnectionLimits", "ServerSecurity", "TransportError", "ZmqServerEnd", "check_socket_dir", "ipc_path"]

log = logging.getLogger(__name__)

# Plain ints: pyzmq's constants are enums, and ``int & Flag`` runs the enum module's Python (~10 us per
# check with cold caches, a tenth of the daemon's time per advise when requests come 5 ms apart).
_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)
_BUSY_WINDOW_S = 0.005  # traffic denser than one message per 5 ms counts as busy (see busy_poll_us)
_ROUTING_ID_BYTES = 255  # the longest ZeroMQ routing id: a longer frame before the delimiter is no envelope
_ENVELOPE_FRAMES = 8  # routing frames ahead of the delimiter (one per ROUTER/proxy hop)
_EPOLL_BATCH = 256  # connections libzmq may have been told to drop but not closed yet, per socket
_MIN_CONNECTIONS = 16

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
    """ROUTER + XPUB, bound on construction; close() unlinks the ipc socket files.

    ``limits`` bound what peers may hold (connections, memory being received); by default they are
    fitted to this process's descriptor and memory limits at start (see :meth:`_fit`)."""

    def __init__(
        self,
        endpoint: str,
        telemetry_endpoint: str = "",
        *,
        security: ServerSecurity | None = None,
        max_bytes: int = 64 * 2**20,
        context: zmq.Context[Any] | None = None,
        busy_poll_us: int = 0,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.endpoint = endpoint
        # Under dense traffic (a message less than _BUSY_WINDOW_S ago) a blocking poll is preceded by up to
        # busy_poll_us of non-blocking polls: waking a sleeping thread costs more than the next message
        # usually takes to arrive. Idle, it never spins.
        self.busy_poll_s = max(busy_poll_us, 0) / 1e6
        self._last_msg_t = -1.0
        self.telemetry_endpoint = telemetry_endpoint
        self.security = security or ServerSecurity()
        self.max_bytes = max_bytes
        # A context of our own, so that close() can wait until every connection's descriptor is closed.
        self._own_ctx = context is None
        self._ctx = context if context is not None else zmq.Context()
        self._auth: Any = None
        self.refusals = RefusalLog(logging.getLogger("governor.auth"))
        self._drops = RefusalLog(log)
        self.limits = self._fit(limits or ConnectionLimits(), max_bytes, sockets=2 if telemetry_endpoint else 1)
        self._closed = False
        self._serving = False
        self._fit_ceiling = (limits or ConnectionLimits()).memory_ceiling is None
        self.guard: ConnectionGuard | None = None
        # Options go in before bind: a listener copies the socket's options when it is bound.
        handshake: dict[int, int] = {zmq.HANDSHAKE_IVL: self.limits.handshake_ms}
        self._router: Any = None
        self._pub: Any = None
        # Topic prefixes some subscriber holds. XPUB passes a topic's first subscription and its last
        # unsubscription (also when a subscriber disconnects), so a set follows them exactly.
        self._topics: set[bytes] = set()
        try:
            # libzmq drops over-size peers without a reply; keep its guard well above the protocol's own.
            self._router = self._bind(zmq.ROUTER, endpoint, {zmq.MAXMSGSIZE: max_bytes * 2 + 65536, **handshake})
            self._router.setsockopt(zmq.ROUTER_MANDATORY, 0)
            self._pub = self._bind(zmq.XPUB, telemetry_endpoint, handshake) if telemetry_endpoint else None
        except BaseException:
            self.close()  # a telemetry endpoint that cannot be served must not leave the request socket's file
            raise
        self._poller = zmq.Poller()
        self._poller.register(self._router, zmq.POLLIN)
        watched = [self._router] if self._pub is None else [self._router, self._pub]
        self.guard = ConnectionGuard(self._ctx, watched, self.limits, self.refusals)

    @staticmethod
    def _fit(limits: ConnectionLimits, max_bytes: int, sockets: int) -> ConnectionLimits:
        """``limits`` with the total cut to what the descriptor limit can carry, and the memory ceiling set.

        Descriptors: the soft limit is raised to the hard one; then the connections, plus those the guard
        may not have seen yet (``MONITOR_LAG``) or is closing, plus ``RESERVE_FDS`` for the daemon's own files
        must fit under it, so that libzmq's accept never meets EMFILE. Memory (bytes of RSS): senders are cut
        above 80 % of the process's memory limit (systemd's MemoryMax=, else RAM); once serving starts, also
        above its size then plus 4 messages of ``max_bytes`` and 256 MiB (a batch's activations)."""
        soft = raise_fd_limit()
        room = soft - open_fds() - RESERVE_FDS - sockets * (MONITOR_LAG + _EPOLL_BATCH)
        if room < _MIN_CONNECTIONS:
            log.warning("the descriptor limit (%d) leaves room for %d connections only: a flood of connections "
                        "could still stop the daemon; raise it (LimitNOFILE=65536 in the unit, ulimit -n)", soft,
                        max(room, 0))
        total = min(limits.total, max(room, _MIN_CONNECTIONS))
        ceiling = limits.memory_ceiling
        if ceiling is None:
            ceiling = int(memory_limit_bytes() * 0.8)  # tightened when serving starts (see recv)
        return ConnectionLimits(total=total, per_process=min(limits.per_process, total),
                                per_user=min(limits.per_user, total), memory_ceiling=ceiling,
                                handshake_ms=limits.handshake_ms)

    def connections(self) -> int:
        """Connections held now (both sockets), as the guard counts them."""
        return self.guard.connections() if self.guard is not None else 0

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

        location = _authorised_keys(sec)
        public, secret = zmq.auth.load_certificate(sec.curve_secret_file)
        if secret is None:
            raise TransportError(f"{sec.curve_secret_file} holds no secret key; pass the .key_secret file")
        if self._auth is None:
            self._auth = RefusingAuthenticator(self._ctx, self.refusals)
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
        """The next well-formed request, or None when ``timeout_ms`` passes without one (or a message
        was dropped: no envelope, or over the limits, which gets its ``too_large`` here)."""
        if not self._serving:
            # The daemon's first poll: it is as big as it gets before requests (model, table); the socket was
            # bound before those loaded, so only now can the ceiling be set from its size.
            self._serving = True
            if self._fit_ceiling and self.guard is not None:
                self.guard.lower_ceiling(self.guard.rss_bytes() + 4 * self.max_bytes + 256 * 2**20)
        if not self._waiting(timeout_ms):
            return None
        self._last_msg_t = time.perf_counter()
        envelope, payload, too_large = self._take()
        if envelope is None:
            self._drops.warn("envelope", "dropped a message without an envelope delimiter (not a governor client)")
            return None
        if too_large:
            del payload
            self.send(envelope, p.encode_reply(p.ErrorReply(id="", code="too_large", message=too_large)))
            give_back_memory()  # else glibc keeps the pages the dropped frames held
            return None
        return envelope, [f.buffer for f in payload]

    def _take(self) -> tuple[Envelope | None, list[Any], str]:
        """One message off the router, frame by frame: (envelope or None without a delimiter, payload frames,
        why it is too large or ""). Frames past the limits are dropped as they are taken, never listed."""
        envelope: list[bytes] = []
        payload: list[Any] = []
        delimited = False
        frames = size = 0
        more = True
        while more:
            frame = self._router.recv(copy=False)  # never waits: libzmq hands a message over whole
            more = bool(frame.more)
            if not delimited:
                if len(frame) <= _ROUTING_ID_BYTES and len(envelope) < _ENVELOPE_FRAMES:
                    envelope.append(frame.bytes)
                    delimited = len(frame) == 0
                else:
                    envelope = [b"x"] * _ENVELOPE_FRAMES  # no envelope: take the rest and drop it
                continue
            frames += 1
            size += len(frame)
            if frames <= 1 + p.MAX_TENSORS and size <= self.max_bytes:
                payload.append(frame)
            else:
                payload.clear()
        if not delimited:
            return None, [], ""
        if frames > 1 + p.MAX_TENSORS:
            return tuple(envelope), [], f"{frames} frames exceed the limit of {1 + p.MAX_TENSORS}"
        if size > self.max_bytes:
            return tuple(envelope), [], (f"message of {size} bytes exceeds the receiver's limit of {self.max_bytes} "
                                         "bytes: send smaller or fewer tensors per request")
        return tuple(envelope), payload, ""

    def _waiting(self, timeout_ms: int | None) -> bool:
        if timeout_ms == 0:  # the loop's look for more after each message: a flag read, not a poll
            return bool(self._router.get(_EVENTS) & _POLLIN)
        if self.busy_poll_s:
            now = time.perf_counter()
            if now - self._last_msg_t < _BUSY_WINDOW_S:
                end = now + self.busy_poll_s
                while time.perf_counter() < end:
                    # EVENTS, not Socket.poll(0): that builds a Poller per call (~3 us), this reads a flag.
                    if self._router.get(_EVENTS) & _POLLIN:
                        return True
        return bool(self._poller.poll(timeout_ms))

    def is_empty(self) -> bool:
        """True when no request is waiting on the socket now (nothing is taken off it)."""
        return not self._router.get(_EVENTS) & _POLLIN

    def send(self, identity: Envelope, frames: Sequence[Frame]) -> None:
        with contextlib.suppress(zmq.ZMQError):  # a peer that went away: ROUTER drops, so do we
            self._router.send_multipart([*identity, *frames], copy=False)

    def wants(self, topic: str) -> bool:
        """True when some subscriber takes telemetry on ``topic`` (subscriptions are prefixes of it)."""
        if self._pub is None:
            return False
        self._read_subscriptions()
        name = topic.encode()
        return any(name.startswith(prefix) for prefix in self._topics)

    def _read_subscriptions(self) -> None:
        while self._pub.get(_EVENTS) & _POLLIN:
            try:
                message = self._pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if message[:1] == b"\x01":
                self._topics.add(message[1:])
            elif message[:1] == b"\x00":
                self._topics.discard(message[1:])

    def publish(self, frames: Sequence[Frame]) -> None:
        if self._pub is not None:
            with contextlib.suppress(zmq.Again):
                self._pub.send_multipart(list(frames), copy=False, flags=zmq.NOBLOCK)

    def close(self) -> None:
        """Close both sockets and wait until libzmq has closed every connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for sock, ep in ((self._router, self.endpoint), (self._pub, self.telemetry_endpoint)):
            if sock is None:
                continue
            sock.close(linger=0)
            path = ipc_path(ep)
            if path is not None:
                path.unlink(missing_ok=True)
        # The guard ends once libzmq has sent the closed sockets' last monitor events.
        stopped = self.guard.join() if self.guard is not None else True
        if not stopped:
            log.error("the connection guard did not stop; leaving the ZeroMQ context open")
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._own_ctx and stopped:
            self._ctx.destroy(linger=0)  # returns once every connection's descriptor is closed


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


def check_socket_dir(directory: Path) -> None:
    """Refuse a socket directory that someone other than this process's user could write: whoever can
    write it can rename our socket away and bind a fake daemon in its place (a /tmp/governor-<uid> made
    by another user, mode 777, was accepted)."""
    try:
        st = os.lstat(directory)
    except OSError as exc:
        raise TransportError(f"cannot inspect the socket directory {directory}: {exc.strerror}") from exc
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise TransportError(f"the socket directory {directory} is a symbolic link or not a directory: whoever "
                             "made it could point clients elsewhere; remove it, or choose another endpoint")
    if st.st_uid != os.geteuid():
        raise TransportError(f"the socket directory {directory} belongs to uid {st.st_uid}, not to this daemon's "
                             f"user (uid {os.geteuid()}): its owner could replace the socket with a fake daemon; "
                             f"remove it (rm -r {directory}) and start again, or choose another endpoint")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise TransportError(f"the socket directory {directory} is writable by others (mode "
                             f"{stat.S_IMODE(st.st_mode):o}): any of them could replace the socket with a fake "
                             f"daemon; chmod go-w {directory}, or choose another endpoint")


def _prepare_ipc(path: Path) -> None:
    if not path.parent.exists():
        path.parent.parent.mkdir(parents=True, exist_ok=True)
        # Root's directory must let the socket group through (the socket's own mode is the gate); a user's
        # daemon serves that user only (/tmp/governor-<uid>).
        with contextlib.suppress(FileExistsError):
            path.parent.mkdir(mode=0o755 if os.geteuid() == 0 else 0o700)
    check_socket_dir(path.parent)
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
