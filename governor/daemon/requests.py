"""What the daemon remembers of ``infer`` requests by the id their client chose.

A client that heard nothing resends the same request (the lazy-pirate retry, docs/protocol.md §10):
it must neither run twice nor go unanswered. So a request is known by its id *and* a digest of all
its frames: a resend is the same bytes under the same id. Anything else under a used id (another
client's request, other inputs, another budget) is a request of its own, computed afresh. The id
alone therefore authorises nothing: reading ids off telemetry gets nobody another client's output.

- A resend of a request still queued joins it: the reply goes to every socket that asked (a retried
  socket is usually gone, and ROUTER drops what cannot be delivered).
- A resend of a request answered within ``ttl_s`` gets the same reply frames again, from memory.

Internal queue keys are the daemon's own counters, never a client's string, so no client-chosen id
can collide with one.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

__all__ = ["LATENCY_PER_TTL", "RequestKey", "RequestMemory", "request_key", "same_client"]

LATENCY_PER_TTL = 10.0  # a reported latency over this many ttls is refused as absurd (ms, not us?)
RequestKey = tuple[str, bytes]  # (the client's id, a digest of every frame of the request)


def request_key(request_id: str, frames: Sequence[Any]) -> RequestKey | None:
    """The key of a request with this id and these frames; None without an id (nothing to match).

    SHA-256 over the frames: a collision would hand one request another's reply, so the digest must
    not be forgeable by a client that knows only the id. It costs about 0.35 ms per 600 kB here."""
    if not request_id:
        return None
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(frame)
    return request_id, digest.digest()


def same_client(request_id: str, opener_id: str) -> bool:
    """``request_id`` comes from the client whose request ``opener_id`` was: both keep its prefix (before
    their last '-'; the Python client's ids do, across reconnects and on a stream's own connection)."""
    prefix = opener_id.rpartition("-")[0]
    return bool(prefix) and request_id.rpartition("-")[0] == prefix


class RequestMemory:
    """Sockets waiting on each queued request, and recent replies; at most ``size`` replies kept."""

    def __init__(self, size: int = 512, ttl_s: float = 30.0) -> None:
        self.size, self.ttl_s = size, ttl_s
        self._waiting: dict[RequestKey, list[Any]] = {}
        self._replied: OrderedDict[RequestKey, tuple[float, list[bytes]]] = OrderedDict()

    def queued(self, key: RequestKey | None, identity: Any) -> None:
        """A request was queued; its reply goes to ``identity`` (and to any resend's socket)."""
        if key is not None:
            self._waiting[key] = [identity]

    def join(self, key: RequestKey | None, identity: Any) -> bool:
        """True when ``key`` is queued already: ``identity`` is added to those its reply goes to."""
        if key is None or key not in self._waiting:
            return False
        waiting = self._waiting[key]
        if identity not in waiting:
            waiting.append(identity)
        return True

    def done(self, key: RequestKey | None, identity: Any) -> list[Any]:
        """Every socket the finished request's reply goes to (``identity`` alone without a key)."""
        if key is None:
            return [identity]
        return self._waiting.pop(key, None) or [identity]

    def recall(self, key: RequestKey | None, now_s: float) -> list[bytes] | None:
        """The reply frames sent for this very request within ``ttl_s``, or None."""
        if key is None:
            return None
        kept = self._replied.get(key)
        if kept is None or now_s - kept[0] >= self.ttl_s:
            return None
        return kept[1]

    def remember(self, key: RequestKey | None, now_s: float, frames: Sequence[Any]) -> None:
        if key is None:
            return
        self._replied[key] = (now_s, [bytes(f) for f in frames])
        self._replied.move_to_end(key)
        while len(self._replied) > self.size:
            self._replied.popitem(last=False)
