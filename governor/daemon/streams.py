"""The daemon's stream table (protocol 1.2): stream ids, their connections and expiry, and the wire messages.

Every choice about a stream (its point, the shared clocks, when it changes) is the machine's
(:mod:`governor.core.decision.streams`); this desk only translates. ``stream_open`` becomes a machine
``Request`` (queued like a lease); the machine's first ``Push`` for it becomes the ``stream`` reply,
every later one a ``stream`` message pushed to the connection that reported last. ``stream_report``
renews the stream's expiry and becomes ``Reported`` (not answered unless it is wrong); a stream that
stays silent past its ttl ends (``Expired``), and ``stream_close`` ends it with a summary.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from governor.core import protocol as p
from governor.core.decision import machine as m
from governor.daemon.replies import estimate
from governor.daemon.requests import LATENCY_PER_TTL, RequestKey, same_client

if TYPE_CHECKING:
    from governor.daemon.service import Daemon

__all__ = ["StreamDesk"]

log = logging.getLogger("governor.daemon")


@dataclass
class _Stream:
    request: p.StreamOpenRequest
    identity: Any  # the connection pushes go to: the opener's, then whichever reported last
    key: RequestKey | None  # how resends of the open are recognised
    machine_key: int
    ttl_s: float
    stream_id: str = ""
    expires_t: float = math.inf


class StreamDesk:
    """The streams of one daemon loop; see the module doc."""

    def __init__(self, daemon: Daemon, default_ttl_ms: float) -> None:
        self._d = daemon
        self.default_ttl_ms = default_ttl_ms
        self._opening: dict[int, _Stream] = {}  # queued in the machine, by its key
        self._open: dict[str, _Stream] = {}  # by stream id
        self._by_key: dict[Hashable, _Stream] = {}  # open, by the machine's key

    @property
    def next_expiry(self) -> float:
        """When the next open stream expires unless it reports (daemon clock, s)."""
        return min((s.expires_t for s in self._open.values()), default=math.inf)

    def __len__(self) -> int:
        return len(self._open)

    # -- requests -------------------------------------------------------------------------------
    def open(self, msg: p.StreamOpenRequest, identity: Any) -> None:
        d = self._d
        d.check_model(msg)
        key = d.new_key()
        ttl_ms = msg.ttl_ms if msg.ttl_ms is not None else self.default_ttl_ms
        refused = [a for a in d.machine.handle(m.Request(
            d.arrival_t, key, d.demand(msg.budget), msg.strict, stream=True, period_ms=msg.period_ms,
            expected_ms=msg.expected_ms)) if isinstance(a, m.Refuse)]
        if refused:
            raise p.ProtocolError(refused[0].code, refused[0].message, request_id=msg.id)
        self._opening[key] = _Stream(msg, identity, d.request_key, key, ttl_ms / 1000.0)
        d.requests.queued(d.request_key, identity)

    def report(self, msg: p.StreamReportRequest, identity: Any) -> None:
        d = self._d
        stream = self._owned(msg.stream_id, msg.id, identity)
        state = d.machine.streams[stream.machine_key]
        if msg.seq > state.seq:
            raise p.ProtocolError("bad_request", f"seq {msg.seq} is not a point of stream {msg.stream_id} (its latest "
                                  f"is {state.seq}): report the seq of the stream reply your frames ran at",
                                  request_id=msg.id)
        too_long = LATENCY_PER_TTL * stream.ttl_s * 1000.0
        if any(latency > too_long for latency in msg.latencies_ms):
            raise p.ProtocolError("bad_request", f"a latency of {max(msg.latencies_ms):g} ms is more than "
                                  f"{LATENCY_PER_TTL:g} times the stream's ttl ({stream.ttl_s * 1000.0:g} ms): not a "
                                  "frame's time (ms, not us?); nothing of this report was learned", request_id=msg.id)
        stream.identity = identity  # pushes follow the connection that reports (a client that reconnected)
        stream.expires_t = d.arrival_t + stream.ttl_s
        d.carry(d.machine.handle(m.Reported(d.arrival_t, stream.machine_key, msg.seq, msg.latencies_ms,
                                            msg.failed)))
        if msg.seq < state.seq:  # its frames ran at an older point: the push may have gone to a dead connection
            self.push(m.Push(stream.machine_key, state.decision, state.seq))

    def close(self, msg: p.StreamCloseRequest, identity: Any) -> None:
        d = self._d
        stream = self._owned(msg.stream_id, msg.id, identity)
        state = d.machine.streams[stream.machine_key]
        mean = state.latency_sum_ms / state.frames if state.frames else None
        reply = p.StreamClosedReply(id=msg.id, stream_id=stream.stream_id, frames=state.frames, met=state.met,
                                    failed=state.failed, mean_latency_ms=None if mean is None else min(
                                        mean, p.MAX_DEADLINE_MS))
        self._end(stream, "closed")
        d.carry(d.machine.handle(m.StreamClosed(d.arrival_t, stream.machine_key)))
        d.send(identity, reply, key=d.request_key)

    def expire(self, now: float) -> None:
        """End every stream that has not reported within its ttl by ``now`` (daemon clock, s)."""
        for stream in [s for s in self._open.values() if s.expires_t <= now]:
            log.info("stream %s expired: no report for %.0f ms", stream.stream_id, stream.ttl_s * 1000.0)
            self._end(stream, "expired")
            self._d.carry(self._d.machine.handle(m.Expired(max(now, stream.expires_t), stream.machine_key)))

    def _owned(self, stream_id: str, request_id: str, identity: Any) -> _Stream:
        d = self._d
        stream = self._open.get(stream_id)
        if stream is not None and d.arrival_t >= stream.expires_t:  # silent too long, though not yet expired here
            self.expire(d.arrival_t)
            stream = None
        if stream is None:
            how, _ms = d.ended.get(stream_id, ("", 0.0))
            if how == "expired":
                raise p.ProtocolError("expired", f"stream {stream_id} expired: no report came within its ttl, so "
                                      "the daemon let go of its clocks; open a new stream (and report at least once "
                                      "per ttl_ms, an empty report will do)", request_id=request_id)
            if how == "closed":
                raise p.ProtocolError("bad_request", f"stream {stream_id} was closed already; open a new one",
                                      request_id=request_id)
            raise p.ProtocolError("bad_request", f"unknown stream id {stream_id!r}: this daemon opened no such stream "
                                  "(or forgot it long ago); use the stream_id a stream_open returned",
                                  request_id=request_id)
        if identity != stream.identity and not same_client(request_id, stream.request.id):
            raise p.ProtocolError("bad_request", f"stream {stream_id} was opened by another client: only the client "
                                  "that opened a stream may report to it or close it", request_id=request_id)
        return stream

    def _end(self, stream: _Stream, how: str) -> None:
        del self._open[stream.stream_id]
        del self._by_key[stream.machine_key]
        self._d.ended_as(stream.stream_id, how, stream.ttl_s * 1000.0)

    # -- the machine's actions ------------------------------------------------------------------
    def push(self, action: m.Push) -> None:
        """The stream's point: the reply to its open (``opened``), or pushed to the connection it reports from."""
        d = self._d
        if action.opened:
            stream = self._opening.pop(int(action.key))  # type: ignore[call-overload]
            stream.stream_id = f"S{secrets.token_hex(12)}"  # unguessable, like a lease id
            stream.expires_t = d.parts.clock() + stream.ttl_s
            self._open[stream.stream_id] = stream
            self._by_key[stream.machine_key] = stream
        else:
            stream = self._by_key[action.key]
        decision = action.decision
        point = p.Point.from_operating_point(decision.point)
        d.last_point = point
        reply = p.StreamReply(
            id=stream.request.id, stream_id=stream.stream_id, seq=action.seq, point=point,
            predicted=estimate(decision, energy_known=d.parts.table.energy_measured,
                               accuracy_known=d.parts.meta.accuracies_known),
            period_ms=stream.request.period_ms, expires_in_ms=stream.ttl_s * 1000.0,
            budget_infeasible=decision.infeasible, simulated=d.parts.simulated)
        frames = p.encode_reply(reply)
        if action.opened:  # the open's reply, to every socket that asked, and kept for a resend
            d.answer_all(stream.key, stream.identity, frames)
            d.parts.metrics.request("stream_open", "infeasible" if decision.infeasible else "met")
        else:
            d.parts.server.send(stream.identity, frames)

    def refuse(self, action: m.Refuse) -> bool:
        """A strict stream no point meets: its open is answered with the error. False: not a stream's."""
        stream = self._opening.pop(int(action.key), None)  # type: ignore[call-overload]
        if stream is None:
            return False
        self._d.parts.metrics.request("stream_open", "infeasible" if action.code == "infeasible" else "rejected")
        error = p.ProtocolError(action.code, action.message, request_id=stream.request.id).to_reply()
        self._d.answer_all(stream.key, stream.identity, p.encode_reply(error))
        return True
