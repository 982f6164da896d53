"""In-process transports for tests: the httpx ``MockTransport`` idea, for governor frames.

:class:`InprocPair` joins client ends to one server end with thread-safe queues and behaves like
DEALER -> ROUTER: each client end has an identity, the server receives ``(identity, frames)`` and
answers with ``send(identity, frames)``; a reply to an identity that has reset or closed is dropped,
as a ROUTER drops unroutable messages. :class:`HandlerTransport` needs no thread at all: it calls a
function with each request's frames and queues what it returns.

Frames are copied to ``bytes`` on the way, as a wire would, so a sender that mutates its arrays
afterwards cannot reach into the receiver. The client ends satisfy ``governor_client.Transport``
structurally; nothing here imports the client.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Sequence

from governor.core.protocol import Frame

__all__ = ["HandlerTransport", "InprocClientEnd", "InprocPair", "InprocServerEnd"]

Handler = Callable[[list[memoryview]], Sequence[Frame] | None]


def _wire_copy(frames: Sequence[Frame]) -> list[memoryview]:
    return [memoryview(bytes(frame)) for frame in frames]


class InprocPair:
    """One server end and any number of client ends (:meth:`connect`)."""

    def __init__(self) -> None:
        self.server = InprocServerEnd()

    def connect(self) -> InprocClientEnd:
        return InprocClientEnd(self.server)


class InprocServerEnd:
    """The daemon's side: ``recv(timeout_ms) -> (identity, frames) | None``, ``send(identity, frames)``."""

    def __init__(self) -> None:
        self._inbox: queue.Queue[tuple[bytes, list[memoryview]]] = queue.Queue()
        self._outboxes: dict[bytes, queue.Queue[list[memoryview]]] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def recv(self, timeout_ms: int | None = None) -> tuple[bytes, list[memoryview]] | None:
        try:
            return self._inbox.get(timeout=None if timeout_ms is None else timeout_ms / 1000)
        except queue.Empty:
            return None

    def is_empty(self) -> bool:
        """True when no request is waiting now."""
        return self._inbox.empty()

    def send(self, identity: bytes, frames: Sequence[Frame]) -> None:
        with self._lock:
            outbox = self._outboxes.get(identity)
        if outbox is not None:
            outbox.put(_wire_copy(frames))

    def _attach(self) -> tuple[bytes, queue.Queue[list[memoryview]]]:
        identity = b"inproc-%d" % next(self._ids)
        outbox: queue.Queue[list[memoryview]] = queue.Queue()
        with self._lock:
            self._outboxes[identity] = outbox
        return identity, outbox

    def _detach(self, identity: bytes) -> None:
        with self._lock:
            self._outboxes.pop(identity, None)

    def _deliver(self, identity: bytes, frames: Sequence[Frame]) -> None:
        self._inbox.put((identity, _wire_copy(frames)))


class InprocClientEnd:
    """A client's side; ``reset`` takes a new identity, so replies to the old one are lost (lazy pirate)."""

    def __init__(self, server: InprocServerEnd) -> None:
        self._server = server
        self.identity, self._outbox = server._attach()

    def send(self, frames: Sequence[Frame]) -> None:
        self._server._deliver(self.identity, frames)

    def recv(self, timeout_ms: int) -> list[memoryview] | None:
        try:
            return self._outbox.get(timeout=timeout_ms / 1000)
        except queue.Empty:
            return None

    def reset(self) -> None:
        self._server._detach(self.identity)
        self.identity, self._outbox = self._server._attach()

    def close(self) -> None:
        self._server._detach(self.identity)


class HandlerTransport:
    """A client transport that answers each request at once with ``handler(frames)``; a handler that
    returns None plays a daemon that never answers (``recv`` then reports a timeout immediately)."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._replies: list[list[memoryview]] = []
        self.sent: list[list[memoryview]] = []
        self.resets = 0

    def send(self, frames: Sequence[Frame]) -> None:
        request = _wire_copy(frames)
        self.sent.append(request)
        reply = self._handler(request)
        if reply is not None:
            self._replies.append(_wire_copy(reply))

    def recv(self, timeout_ms: int) -> list[memoryview] | None:
        return self._replies.pop(0) if self._replies else None

    def reset(self) -> None:
        self._replies.clear()
        self.resets += 1

    def close(self) -> None:
        self._replies.clear()
