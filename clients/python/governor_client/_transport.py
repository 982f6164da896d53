"""Moving frames to the daemon: the transport seam and its ZeroMQ implementation.

The daemon binds a ROUTER socket. This client connects a DEALER and sends ``[b"", header, buffers...]``:
the empty delimiter makes the envelope identical to a REQ socket's, so the daemon handles both client
kinds alike. DEALER rather than REQ because replies carry the request id, so a late reply to an
abandoned attempt is recognised and dropped instead of wedging REQ's strict send/recv alternation.
On a timeout the client still follows the lazy pirate: :meth:`reset` closes the socket with
``linger=0`` (dropping whatever is queued for a dead peer) and connects a fresh one.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import zmq
import zmq.asyncio

from governor.core.protocol import DEFAULT_ENDPOINT, TELEMETRY_TOPICS, Frame
from governor_client._errors import DaemonUnreachable, ipc_path

__all__ = [
    "AsyncZmqTransport",
    "CurveKeys",
    "Transport",
    "ZmqTransport",
    "check_socket_dir",
    "default_endpoint",
    "open_socket",
    "open_subscriber",
]


class Transport(Protocol):
    """What the sync :class:`~governor_client.Client` needs; ``governor.transport.inproc`` has a fake."""

    def send(self, frames: Sequence[Frame]) -> None: ...

    def recv(self, timeout_ms: int) -> list[memoryview] | None:
        """The next message's frames (envelope removed), or None after ``timeout_ms`` of silence."""

    def reset(self) -> None:
        """Drop the connection and whatever is queued on it; connect afresh."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class CurveKeys:
    """CURVE keys (Z85 text, 40 bytes each) for tcp:// endpoints: the daemon's public key and ours."""

    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def from_files(cls, server_certificate: str, client_certificate: str) -> CurveKeys:
        """Keys from zmq certificate files: the daemon's public one and this client's secret one."""
        import zmq.auth

        server_public, _ = zmq.auth.load_certificate(server_certificate)
        public, secret = zmq.auth.load_certificate(client_certificate)
        if secret is None:
            raise ValueError(f"{client_certificate} holds no secret key: pass the client's .key_secret file")
        return cls(server_public, public, secret)


def default_endpoint() -> str:
    """``$GOVERNOR_ENDPOINT``, else the first ipc socket that exists where the daemon puts it by default,
    in a directory that passes :func:`check_socket_dir` (else the first that exists, so that connecting
    says what is wrong with it)."""
    if os.environ.get("GOVERNOR_ENDPOINT"):
        return os.environ["GOVERNOR_ENDPOINT"]
    candidates = ["/run/governor/governor.sock", f"/tmp/governor-{os.getuid()}/governor.sock"]
    if os.environ.get("XDG_RUNTIME_DIR"):
        candidates.insert(0, os.path.join(os.environ["XDG_RUNTIME_DIR"], "governor", "governor.sock"))
    existing = [f"ipc://{path}" for path in candidates if os.path.exists(path)]
    for endpoint in existing:
        try:
            check_socket_dir(endpoint)
        except DaemonUnreachable:
            continue
        return endpoint
    return existing[0] if existing else DEFAULT_ENDPOINT


def check_socket_dir(endpoint: str) -> None:
    """Refuse an ipc socket whose directory someone else could write: they could have renamed the daemon's
    socket and put their own in its place (another user's /tmp/governor-<uid>, mode 777, was used). The
    directory must be root's or this user's, not writable by group or others, and no symbolic link."""
    path = ipc_path(endpoint)
    if path is None:
        return
    directory = os.path.dirname(os.path.abspath(path))
    try:
        st = os.lstat(directory)
    except OSError:
        return  # nothing there: connecting tells "no daemon" as before
    me = os.geteuid()
    problem = ""
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        problem = "is a symbolic link or not a directory"
    elif st.st_uid not in (0, me):
        problem = f"belongs to uid {st.st_uid}, neither root nor you (uid {me})"
    elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = f"is writable by others (mode {stat.S_IMODE(st.st_mode):o})"
    if problem:
        raise DaemonUnreachable(
            "untrusted_endpoint",
            f"refusing {endpoint}: its directory {directory} {problem}, so someone else may have put a fake "
            f"daemon in place of the real one; have that directory removed (rm -r {directory}, as its owner or "
            f"root) before the daemon starts, or set GOVERNOR_ENDPOINT to the daemon's real socket",
        )


def open_socket(context: zmq.Context[Any], kind: int, endpoint: str, curve: CurveKeys | None) -> Any:
    """A connected socket that never blocks close (linger 0), with CURVE when keys are given; an ipc socket
    only in a directory that :func:`check_socket_dir` trusts."""
    check_socket_dir(endpoint)
    sock = context.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        sock.curve_serverkey = curve.server_public
        sock.curve_publickey = curve.public
        sock.curve_secretkey = curve.secret
    sock.connect(endpoint)
    return sock


def open_subscriber(context: zmq.Context[Any], endpoint: str, topics: Sequence[str], curve: CurveKeys | None) -> Any:
    """A SUB socket on the daemon's telemetry, filtered to ``topics`` (all when empty)."""
    unknown = set(topics) - set(TELEMETRY_TOPICS)
    if unknown:
        raise ValueError(f"unknown telemetry topics {sorted(unknown)}; choose from {list(TELEMETRY_TOPICS)}")
    sock = open_socket(context, zmq.SUB, endpoint, curve)
    for topic in topics or ("",):
        sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
    return sock


class ZmqTransport:
    """A DEALER socket to the daemon's ROUTER (see the module docstring for why DEALER)."""

    def __init__(self, endpoint: str, *, context: zmq.Context[Any] | None = None, curve: CurveKeys | None = None):
        self.endpoint = endpoint
        self._context = context or zmq.Context.instance()
        self._curve = curve
        self._socket = open_socket(self._context, zmq.DEALER, endpoint, curve)
        self._poller = _poller(self._socket)

    def send(self, frames: Sequence[Frame]) -> None:
        # copy=False: tensors go out from the caller's arrays (pyzmq copies only tiny frames). A full
        # queue (zmq.Again) counts as a lost request: the retry after the timeout resends it.
        with contextlib.suppress(zmq.Again):
            self._socket.send_multipart([b"", *frames], copy=False, flags=zmq.NOBLOCK)

    def recv(self, timeout_ms: int) -> list[memoryview] | None:
        # One poller for the socket's life: Socket.poll builds and registers a new one per call.
        if not self._poller.poll(timeout_ms):
            return None
        return strip_delimiter(self._socket.recv_multipart(copy=False))

    def reset(self) -> None:
        self._socket.close(linger=0)
        self._socket = open_socket(self._context, zmq.DEALER, self.endpoint, self._curve)
        self._poller = _poller(self._socket)

    def close(self) -> None:
        self._socket.close(linger=0)


def _poller(socket: Any) -> zmq.Poller:
    poller = zmq.Poller()
    poller.register(socket, zmq.POLLIN)
    return poller


class AsyncZmqTransport:
    """The asyncio twin of :class:`ZmqTransport` (zmq.asyncio sockets, awaitable send/recv)."""

    def __init__(self, endpoint: str, *, context: zmq.asyncio.Context | None = None, curve: CurveKeys | None = None):
        self.endpoint = endpoint
        self._context = context or zmq.asyncio.Context.instance()
        self._curve = curve
        self._socket = open_socket(self._context, zmq.DEALER, endpoint, curve)

    async def send(self, frames: Sequence[Frame]) -> None:
        with contextlib.suppress(zmq.Again):  # as in ZmqTransport.send
            await self._socket.send_multipart([b"", *frames], copy=False, flags=zmq.NOBLOCK)

    async def recv(self, timeout_ms: int) -> list[memoryview] | None:
        if not await self._socket.poll(timeout_ms, zmq.POLLIN):
            return None
        return strip_delimiter(await self._socket.recv_multipart(copy=False))

    def reset(self) -> None:
        self._socket.close(linger=0)
        self._socket = open_socket(self._context, zmq.DEALER, self.endpoint, self._curve)

    def close(self) -> None:
        self._socket.close(linger=0)


def strip_delimiter(parts: Sequence[zmq.Frame]) -> list[memoryview]:
    """Frames as memoryviews (the arrays decoded from them keep the zmq frames alive), minus the
    empty delimiter the ROUTER sends back."""
    views = [part.buffer for part in parts]
    return views[1:] if views and views[0].nbytes == 0 else views
