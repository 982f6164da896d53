"""A stream (protocol 1.2): a steady frame rate with a standing budget, the point held locally.

The daemon chose the stream's point when it opened and pushes a new one whenever it changes it. Per
frame the application reads :attr:`Stream.k` (it takes any pushed point off the socket without waiting:
a few microseconds, no round trip) and calls :meth:`Stream.report` with what the frame took; reports go
out in batches, without waiting for anything. ``with client.stream(...) as s:`` closes the stream at
the end of the block; :attr:`Stream.closed` then holds the daemon's count of the frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from governor.core import protocol as p
from governor_client._errors import GovernorError

__all__ = ["Stream", "StreamSummary"]


@dataclass(frozen=True)
class StreamSummary:
    """A closed stream: frames reported with a latency, those within the deadline, those that failed, and
    their mean latency (ms; None without frames)."""

    stream_id: str
    frames: int
    met: int
    failed: int
    mean_latency_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class StreamOwner(Protocol):
    """What a stream needs of the client that opened it."""

    def _pump(self) -> None:
        """Take every message waiting on the socket, without waiting, and hand stream pushes to their streams."""

    def _send_report(self, stream: Stream, request: p.StreamReportRequest) -> None:
        """Send a report without waiting for anything."""

    def _close_stream(self, stream: Stream) -> StreamSummary: ...


class Stream:
    """The application's end of a stream: see the module doc. Not thread-safe (the client's socket is not).

    ``batch``: frames per report; ``flush_ms``: a report goes out at least this often while frames are
    reported, and an empty one keeps the stream alive when none are (the daemon ends a stream that is
    silent for ``expires_in_ms``)."""

    def __init__(self, owner: StreamOwner, reply: p.StreamReply, *, batch: int = 16, flush_ms: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if batch < 1 or batch > p.MAX_BATCH_FRAMES:
            raise ValueError(f"batch must be 1..{p.MAX_BATCH_FRAMES} frames, not {batch}")
        self._owner = owner
        self.stream_id = reply.stream_id
        self.period_ms = reply.period_ms
        self.expires_in_ms = reply.expires_in_ms
        self.simulated = reply.simulated
        self._reply = reply
        self._clock = clock
        self.batch = batch
        self.flush_s = (min(250.0, reply.expires_in_ms / 4) if flush_ms is None else flush_ms) / 1000.0
        self._read_seq = reply.seq  # the point the application read last: its frames ran there
        self._pending: list[float] = []
        self._pending_seq = reply.seq
        self._failed = 0
        self._sent_t = clock()
        self.error: GovernorError | None = None  # the daemon's last complaint about a report
        self.closed: StreamSummary | None = None
        self.changes = 0  # points pushed since the stream opened

    # -- per frame --------------------------------------------------------------------------------
    @property
    def k(self) -> int:
        """The number of channel groups to run this frame (the daemon's latest point)."""
        return self.point.k

    @property
    def point(self) -> p.Point:
        """The point to run this frame at: its mapping and the setpoints the daemon holds for it."""
        self._owner._pump()
        self._read_seq = self._reply.seq
        return self._reply.point

    @property
    def seq(self) -> int:
        """The number of the latest point received (0: the one the stream opened with)."""
        return self._reply.seq

    @property
    def predicted(self) -> p.Estimate:
        return self._reply.predicted

    @property
    def budget_infeasible(self) -> bool:
        return self._reply.budget_infeasible

    def report(self, latency_ms: float, *, ok: bool = True) -> None:
        """One frame ran at the point last read (ms, around the engine alone); ``ok=False``: it failed.

        Raises the daemon's error about an earlier report (an expired stream, an absurd latency) once, after
        this frame is taken."""
        if self.closed is not None:
            raise GovernorError("bad_request", f"stream {self.stream_id} is closed; open a new one")
        if self._pending_seq != self._read_seq and (self._pending or self._failed):
            self.flush()
        self._pending_seq = self._read_seq
        if ok:
            latency = float(latency_ms)
            if not 0.0 < latency <= p.MAX_DEADLINE_MS:  # NaN fails too: refused here, not by the daemon later
                raise GovernorError("bad_request", f"latency_ms must be > 0 and <= {p.MAX_DEADLINE_MS:g} (ms), "
                                    f"not {latency_ms!r}")
            self._pending.append(latency)
        else:
            self._failed += 1
        if len(self._pending) + self._failed >= self.batch or self._clock() - self._sent_t >= self.flush_s:
            self.flush()
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def flush(self) -> None:
        """Send the frames reported so far now (an empty report when there are none: it keeps the stream alive)."""
        request = p.StreamReportRequest(stream_id=self.stream_id, seq=self._pending_seq,
                                        latencies_ms=tuple(self._pending), failed=self._failed)
        self._pending, self._failed = [], 0
        self._sent_t = self._clock()
        self._owner._send_report(self, request)

    def keep_alive(self) -> None:
        """Call when no frames run for a while (a paused pipeline): reports nothing, so the stream does not
        expire (it is sent only when nothing was sent for a quarter of ``expires_in_ms``)."""
        if self._clock() - self._sent_t >= self.expires_in_ms / 4000.0:
            self.flush()

    def close(self) -> StreamSummary:
        """Send what is pending and end the stream; the daemon's count of its frames (also in :attr:`closed`)."""
        if self.closed is None:
            if self._pending or self._failed:
                self.flush()
            self.closed = self._owner._close_stream(self)
        return self.closed

    # -- from the client --------------------------------------------------------------------------
    def _pushed(self, reply: p.StreamReply) -> None:
        if reply.seq > self._reply.seq:
            self._reply = reply
            self.changes += 1

    def _refused(self, error: GovernorError) -> None:
        self.error = error

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Stream({self.stream_id}, k={self._reply.point.k}, seq={self._reply.seq})"
