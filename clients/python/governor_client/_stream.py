"""A stream (protocol 1.2): a steady frame rate with a standing budget, the point held locally.

The daemon chose the stream's point when it opened and pushes a new one whenever it changes it. Per
frame the application reads :attr:`Stream.k` and calls :meth:`Stream.report` with what the frame took:
an attribute read and a deque append, well under a microsecond, never a system call. A background
thread owns the stream's own connection: it takes the daemon's pushes as they come and sends the
reported frames in batches (``batch`` frames, or every ``flush_ms``), so nothing on the application's
path waits or touches a socket. ``with client.stream(...) as s:`` closes the stream at the end of the
block; :attr:`Stream.closed` then holds the daemon's count of the frames.

The thread sends only what the application reported: a pipeline that hangs stops reporting, and the
daemon ends its stream after ``expires_in_ms`` (call :meth:`Stream.keep_alive` while paused on purpose).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from governor.core import protocol as p
from governor_client._calls import Calls
from governor_client._errors import GovernorError
from governor_client._transport import Transport

__all__ = ["Stream", "StreamSummary"]

_TICK_S = 0.02  # the thread looks at the reported frames this often (it waits for pushes in between)


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


class Stream:
    """The application's end of a stream: see the module doc. :attr:`k`, :attr:`point` and :meth:`report`
    may be called from any one thread; :meth:`close` ends it.

    ``connect`` opens the stream's own connection (called once, on its thread); ``prefix`` is the opening
    client's request-id prefix, which makes this connection the stream's owner; ``batch``: frames per
    report; ``flush_ms``: frames wait at most this long (default a quarter of ``expires_in_ms``, at most
    250 ms); ``timeout_ms``: how long :meth:`close` waits for the daemon."""

    def __init__(self, opened: p.StreamReply, *, connect: Callable[[], Transport], prefix: str, batch: int = 16,
                 flush_ms: float | None = None, timeout_ms: int = 3000, max_bytes: int = p.MAX_MESSAGE_BYTES) -> None:
        if not 1 <= batch <= p.MAX_BATCH_FRAMES:
            raise ValueError(f"batch must be 1..{p.MAX_BATCH_FRAMES} frames, not {batch}")
        self.stream_id = opened.stream_id
        self.period_ms = opened.period_ms
        self.expires_in_ms = opened.expires_in_ms
        self.simulated = opened.simulated
        self.batch = batch
        self.flush_s = (min(250.0, opened.expires_in_ms / 4) if flush_ms is None else flush_ms) / 1000.0
        self.timeout_ms = timeout_ms
        self.error: GovernorError | None = None  # the daemon's last complaint, raised at the next report
        self.closed: StreamSummary | None = None
        self.changes = 0  # points pushed since the stream opened
        self._reply = opened  # replaced whole by the thread: reading it needs no lock
        self._read_seq = opened.seq  # the point the application read last: its frames ran there
        self._frames: collections.deque[tuple[int, float | None]] = collections.deque()  # (seq, ms; None: failed)
        self._alive = False  # keep_alive asked for an empty report
        self._ended = ""  # why the stream is over (expired, closed) once it is
        self._closing = threading.Event()
        self._calls = Calls(max_bytes=max_bytes, prefix=prefix)
        self._connect = connect
        self._thread = threading.Thread(target=self._run, name=f"governor-stream-{self.stream_id[:9]}", daemon=True)
        self._thread.start()

    # -- per frame, on the application's thread ----------------------------------------------------
    @property
    def k(self) -> int:
        """The number of channel groups to run this frame (the daemon's latest point)."""
        return self.point.k

    @property
    def point(self) -> p.Point:
        """The point to run this frame at: its mapping and the setpoints the daemon holds for it."""
        reply = self._reply
        self._read_seq = reply.seq
        return reply.point

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

        Raises the daemon's error about an earlier report (an absurd latency) once, after this frame is
        taken; on a stream that ended (closed, or expired after going silent), raises every time."""
        if self._ended:
            raise GovernorError("expired" if self._ended.startswith("expired") else "bad_request",
                                f"stream {self.stream_id} {self._ended}; open a new one")
        if ok:
            try:
                latency = float(latency_ms)
            except (TypeError, ValueError):
                latency = math.nan
            if not 0.0 < latency <= p.MAX_DEADLINE_MS:  # NaN fails too: refused here, not by the daemon later
                raise GovernorError("bad_request", f"latency_ms must be > 0 and <= {p.MAX_DEADLINE_MS:g} (ms), "
                                    f"not {latency_ms!r}")
            self._frames.append((self._read_seq, latency))
        else:
            self._frames.append((self._read_seq, None))
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def keep_alive(self) -> None:
        """While no frames run on purpose (a paused pipeline): the thread sends an empty report at its next
        look, so the stream does not expire."""
        self._alive = True

    def close(self) -> StreamSummary:
        """Send what is pending and end the stream; the daemon's count of its frames (also in :attr:`closed`).
        Raises when the daemon did not answer, or the stream had ended already."""
        self._closing.set()
        self._thread.join(self.timeout_ms / 1000.0 + 1.0)
        if self.closed is not None:
            return self.closed
        if self._thread.is_alive():
            raise GovernorError("unavailable", f"the daemon did not confirm closing stream {self.stream_id} within "
                                f"{self.timeout_ms} ms; it ends by itself {self.expires_in_ms:g} ms after its last "
                                "report")
        error = self.error or GovernorError("internal", f"stream {self.stream_id} ended without a summary")
        self.error = None
        raise error

    async def aclose(self) -> StreamSummary:
        """:meth:`close` for asyncio code: the wait for the daemon's answer runs off the event loop."""
        return await asyncio.to_thread(self.close)

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            self.close()
            return
        with contextlib.suppress(GovernorError):  # the block raised: end the stream, let its exception go on
            self.close()

    def __repr__(self) -> str:
        return f"Stream({self.stream_id}, k={self._reply.point.k}, seq={self._reply.seq})"

    # -- the stream's thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            transport = self._connect()
        except Exception as exc:  # nothing to talk through: the stream expires at the daemon
            self.error = GovernorError("unavailable", f"cannot connect the stream: {exc}")
            self._ended = "has no connection to the daemon"
            return
        try:
            self._send(transport, [], self._reply.seq, 0)  # from now on the daemon pushes to this connection
            sent_t = time.monotonic()
            while not self._closing.is_set() and not self._ended:
                self._take(transport, round(_TICK_S * 1000))
                now = time.monotonic()
                if len(self._frames) >= self.batch or (self._frames and now - sent_t >= self.flush_s) or self._alive:
                    self._flush(transport)
                    sent_t = now
            if not self._ended:
                self._flush(transport)
                self.closed = self._close(transport)
                self._ended = "is closed"
        except GovernorError as exc:
            self.error = exc
        finally:
            transport.close()

    def _flush(self, transport: Transport) -> None:
        """Send the reported frames, one report per point they ran at (an empty one when there are none)."""
        self._alive = False
        runs: list[tuple[int, list[float | None]]] = []
        for _ in range(len(self._frames)):
            seq, ms = self._frames.popleft()
            if not runs or runs[-1][0] != seq or len(runs[-1][1]) >= p.MAX_BATCH_FRAMES:
                runs.append((seq, []))
            runs[-1][1].append(ms)
        for seq, run in runs or [(self._reply.seq, [])]:
            self._send(transport, [ms for ms in run if ms is not None], seq, sum(ms is None for ms in run))

    def _send(self, transport: Transport, latencies: list[float], seq: int, failed: int) -> None:
        request = p.StreamReportRequest(stream_id=self.stream_id, seq=seq, latencies_ms=tuple(latencies),
                                        failed=failed)
        transport.send(self._calls.encode(request)[1])

    def _take(self, transport: Transport, wait_ms: int) -> None:
        """Take the daemon's pushes and complaints, waiting up to ``wait_ms`` for the first."""
        frames = transport.recv(wait_ms)
        while frames is not None:
            try:
                reply, _ = p.decode_reply(frames, max_bytes=self._calls.max_bytes)
            except p.ProtocolError:
                reply = None  # a stray the client cannot read: dropped, as a client drops stale replies
            if isinstance(reply, p.StreamReply) and reply.stream_id == self.stream_id and reply.seq > self._reply.seq:
                self._reply = reply
                self.changes += 1
            elif isinstance(reply, p.ErrorReply):
                self.error = GovernorError(reply.code, reply.message, request_id=reply.id)
                if reply.code == "expired":
                    self._ended = "expired: it sent no report within its ttl"
            frames = transport.recv(0)

    def _close(self, transport: Transport) -> StreamSummary:
        """``stream_close`` on this connection (after its last report, so none is left behind) and its answer."""
        request_id, frames = self._calls.encode(p.StreamCloseRequest(stream_id=self.stream_id))
        transport.send(frames)
        deadline = time.monotonic() + self.timeout_ms / 1000.0
        while (left := deadline - time.monotonic()) > 0:
            got = transport.recv(max(1, round(left * 1000)))
            if got is None:
                break
            answer = self._calls.match(got, request_id)  # raises the daemon's error reply
            if answer is not None:
                closed = answer[0]
                if not isinstance(closed, p.StreamClosedReply):
                    raise GovernorError("internal", f"expected stream_closed, the daemon sent {closed.type!r}")
                return StreamSummary(closed.stream_id, closed.frames, closed.met, closed.failed,
                                     closed.mean_latency_ms)
        raise GovernorError("unavailable", f"no answer to closing stream {self.stream_id} within {self.timeout_ms} ms")
