"""Bounds on what peers may hold: connections (per process, per user, in all) and memory being received.

libzmq has no connection limit for a ROUTER, and an ipc listener whose ``accept`` fails with EMFILE
aborts the whole process ("Too many open files (src/ipc_listener.cpp:297)"), clocks pinned. It does
report every accepted connection, with its descriptor, to a socket monitor: :class:`ConnectionGuard`
reads those events on a thread and cuts (``shutdown(2)``) each connection over a bound as it is
accepted, so a flood from one process or one user leaves room for the others. Monitor events are sent
blocking, so when the guard falls behind by the monitor pipe's capacity, libzmq's I/O thread waits
for it instead of accepting more: the connections not yet seen are bounded too (``MONITOR_LAG``).

Memory: libzmq hands a multipart message over only once its last frame has arrived (its pipes flush
whole messages), so a 21 x 100 MiB message is held whole however the application reads it, and
``ZMQ_MAXMSGSIZE`` bounds single frames only. While the process's memory is over the ceiling, the
guard cuts the connections that are still sending (bytes waiting in their kernel queue); libzmq then
drops their half-received messages and the memory is handed back.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import logging
import socket
import struct
import termios
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from governor.transport.refusals import RefusalLog
from governor.transport.resources import RssProbe, give_back_memory

__all__ = ["MONITOR_LAG", "ConnectionGuard", "ConnectionLimits"]

log = logging.getLogger(__name__)

_EVENTS = (zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
           | zmq.EVENT_MONITOR_STOPPED)
_LIBZMQ_MONITOR_HWM = 1000  # the send side of libzmq's own monitor socket, which it creates with defaults
_OUR_MONITOR_HWM = 16
MONITOR_LAG = _LIBZMQ_MONITOR_HWM + _OUR_MONITOR_HWM  # events (so connections) the guard can be behind, per socket
_SAMPLE_S = 0.025  # memory is read this often while a ceiling is set (50 MiB per sample at 2 GB/s)
_SENDING_PROBES = 5  # a sender's kernel queue is drained in bursts: look a few times, 1 ms apart
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class ConnectionLimits:
    """How much peers may hold. A peer is a process (ipc, by SO_PEERCRED) or an address (tcp)."""

    total: int = 1024
    per_process: int = 64
    per_user: int = 256  # ipc peers of one uid together
    memory_ceiling: int | None = None  # bytes of RSS above which senders are cut; None: fitted by the server; 0: never
    handshake_ms: int = 5000  # a connection that has not finished its ZMTP/CURVE handshake by then is dropped


@dataclass(frozen=True)
class _Peer:
    process: str
    user: str  # "" for tcp


class ConnectionGuard:
    """Watches the monitored sockets' connections on a thread; see the module docstring.

    Stop it by closing the sockets first (libzmq then sends each monitor its last event), then
    :meth:`join`. Until a socket is closed the guard must keep reading: libzmq's I/O thread blocks on
    a full monitor pipe."""

    def __init__(self, context: zmq.Context[Any], sockets: list[Any], limits: ConnectionLimits,
                 refusals: RefusalLog) -> None:
        self.limits = limits
        self.refusals = refusals
        self._lock = threading.Lock()
        self._live: dict[int, _Peer] = {}
        self._processes: Counter[str] = Counter()
        self._users: Counter[str] = Counter()
        self.cuts = 0
        self._trimmed_at = 0.0
        self.ceiling = limits.memory_ceiling or 0  # may be lowered once serving starts (see lower_ceiling)
        self._rss = RssProbe() if self.ceiling else None
        self._pairs: list[Any] = []
        for sock in sockets:
            addr = f"inproc://governor-guard-{id(self)}-{len(self._pairs)}"
            sock.monitor(addr, _EVENTS)
            pair = context.socket(zmq.PAIR)
            pair.setsockopt(zmq.LINGER, 0)
            pair.setsockopt(zmq.RCVHWM, _OUR_MONITOR_HWM)
            pair.connect(addr)
            self._pairs.append(pair)
        self._thread = threading.Thread(target=self._run, name="governor-guard", daemon=True)
        self._thread.start()

    # -- what tests and status lines read -------------------------------------------------------
    def connections(self) -> int:
        with self._lock:
            return len(self._live)

    def by_process(self) -> Counter[str]:
        with self._lock:
            return +self._processes

    def rss_bytes(self) -> int:
        return self._rss.rss_bytes() if self._rss is not None else 0

    def lower_ceiling(self, ceiling: int) -> None:
        """Tighten the memory ceiling (bytes of RSS); never raises it, never sets one where there is none."""
        if self._rss is not None:
            self.ceiling = min(self.ceiling, ceiling)

    def join(self, timeout_s: float = 5.0) -> bool:
        """Wait for the thread, which ends once every monitored socket is closed; False if it did not."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    # -- the thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        poller = zmq.Poller()
        for pair in self._pairs:
            poller.register(pair, zmq.POLLIN)
        running = len(self._pairs)
        timeout_ms = int(_SAMPLE_S * 1000) if self._rss is not None else None
        try:
            while running:
                for pair, _ in poller.poll(timeout_ms):
                    while running and pair.poll(0):
                        event = parse_monitor_message(pair.recv_multipart())
                        if event["event"] == zmq.EVENT_MONITOR_STOPPED:
                            poller.unregister(pair)
                            running -= 1
                            break
                        self._on_event(event)
                if self._rss is not None:
                    self._check_memory()
        except Exception:  # the guard must never take the daemon down; without it, bounds lapse
            log.exception("the connection guard stopped; connections are no longer bounded")
        finally:
            for pair in self._pairs:
                pair.close(linger=0)
            if self._rss is not None:
                self._rss.close()

    def _on_event(self, event: Any) -> None:
        kind, value = event["event"], event["value"]
        endpoint = event["endpoint"].decode(errors="replace")
        if kind == zmq.EVENT_ACCEPTED:
            self._accepted(value, endpoint)
        elif kind == zmq.EVENT_DISCONNECTED:
            self._forget(value)
        elif kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            self.refusals.warn("handshake", "refused a client on %s: its handshake broke the ZMTP protocol "
                               "(error %#x): not a governor client, or not using CURVE where the daemon requires it",
                               endpoint, value)

    def _accepted(self, fd: int, endpoint: str) -> None:
        peer = _peer_of(fd, endpoint)
        if peer is None:
            return  # gone already (its descriptor is no connection of ours now)
        lim = self.limits
        with self._lock:
            same_process, same_user = self._processes[peer.process], self._users[peer.user]
            if len(self._live) >= lim.total:
                why = f"the daemon already holds {len(self._live)} connections (limit {lim.total})"
            elif same_process >= lim.per_process:
                why = f"it already holds {same_process} (limit {lim.per_process} per process or address)"
            elif peer.user and same_user >= lim.per_user:
                why = f"{peer.user} already holds {same_user} (limit {lim.per_user} per user)"
            else:
                self._live[fd] = peer
                self._processes[peer.process] += 1
                self._users[peer.user] += 1
                return
        if self._cut_fd(fd, endpoint):
            self.refusals.warn("connections", "refused a connection from %s on %s: %s; a client that leaks "
                               "connections (one per request, never closed) does this", peer.process, endpoint, why)

    def _cut_fd(self, fd: int, endpoint: str) -> bool:
        """shutdown(2) a connection; libzmq sees it end, drops its half-read message and closes the fd."""
        with _borrowed(fd) as sock:
            if sock is None or not _is_ours(sock, endpoint):
                return False
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._forget(fd)
        with self._lock:
            self.cuts += 1
        return True

    def _forget(self, fd: int) -> None:
        with self._lock:
            peer = self._live.pop(fd, None)
            if peer is not None:
                self._processes[peer.process] -= 1
                self._users[peer.user] -= 1

    def _check_memory(self) -> None:
        assert self._rss is not None
        rss, ceiling = self._rss.rss_bytes(), self.ceiling
        if rss <= ceiling:
            return
        with self._lock:
            candidates = list(self._live)
        sending: set[int] = set()
        for probe in range(_SENDING_PROBES):
            sending.update(fd for fd in candidates if _queued_bytes(fd) > 0)
            if probe + 1 < _SENDING_PROBES:
                time.sleep(0.001)
        for fd in sending:
            with self._lock:
                peer = self._live.get(fd)
            if peer is not None and self._cut_fd(fd, ""):
                self.refusals.warn("memory", "cut the connection of %s: it was still sending while the daemon "
                                   "held %d MiB (ceiling %d MiB); send smaller requests", peer.process, rss >> 20,
                                   ceiling >> 20)
        now = time.monotonic()
        if sending or now - self._trimmed_at > 1.0:  # trimming walks the heap: not every sample
            self._trimmed_at = now
            give_back_memory()


@contextlib.contextmanager
def _borrowed(fd: int) -> Any:
    """A socket object over ``fd`` that never closes it (None if ``fd`` is no socket now)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        yield None
        return
    try:
        yield sock
    finally:
        sock.detach()


def _is_ours(sock: socket.socket, endpoint: str) -> bool:
    """Whether ``sock`` is still a connection accepted on ``endpoint`` ("" accepts any of ours): libzmq
    may have closed the descriptor and the number may have been reused since the event was sent."""
    try:
        local = sock.getsockname()
    except OSError:
        return False
    if sock.family == socket.AF_UNIX:
        name = local.decode(errors="replace").replace("\0", "@", 1) if isinstance(local, bytes) else local
        return sock.type == socket.SOCK_STREAM and (not endpoint or endpoint == f"ipc://{name}")
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        return not endpoint or endpoint.rsplit(":", 1)[-1] == str(local[1])
    return False


def _peer_of(fd: int, endpoint: str) -> _Peer | None:
    with _borrowed(fd) as sock:
        if sock is None or not _is_ours(sock, endpoint):
            return None
        try:
            if sock.family == socket.AF_UNIX:
                pid, uid, _gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
                return _Peer(process=f"pid {pid} (uid {uid})", user=f"uid {uid}")
            return _Peer(process=f"address {sock.getpeername()[0]}", user="")
        except OSError:
            return None


def _queued_bytes(fd: int) -> int:
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, buf, True)
    except OSError:
        return 0
    return buf[0]
