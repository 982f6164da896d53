"""A profiling session for an engine the application owns (`governor profile MODEL --external NAME`).

The profiler runs exactly as for an in-process model (the active sampler chooses each point, the
board source sets its clocks, reads them back, repeats runs until their median is stable, and puts
the board back at the end). Only the run itself differs: :class:`SessionBackend` is the backend the
board source calls, and instead of running a network it hands the point to the application and
returns the latency the application measured.

The exchange, on one ZeroMQ endpoint this command binds (protocol 1.1):

1. the application connects (``hello``) and sends ``profile_next`` with no latency: it is ready;
2. for every run the profiler wants, the reply is a ``profile_task`` naming the point (its setpoints
   are in force); the application runs ``point.k`` groups once and sends the time it took with its
   next ``profile_next`` (``failed`` if the run did not complete: profiling stops, the board is put
   back, nothing is written);
3. when the profile is complete, the waiting ``profile_next`` gets ``profile_task`` with ``done``.

A resend of the same request (the client's retry) gets the same reply again, so a retry never
reports a run twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from governor import __version__
from governor.core import protocol as p
from governor.core.board import BoardSpec
from governor.core.types import OperatingPoint
from governor.daemon.backend import ExternalBackend, RunOutcome

__all__ = ["SessionBackend", "SessionError"]


class SessionError(RuntimeError):
    """The application went away, or said its run failed; profiling stops and the board is put back."""


class SessionBackend(ExternalBackend):
    """The backend of an external profiling session; ``server`` is a bound ``ZmqServerEnd``, closed with it."""

    def __init__(self, server: Any, spec: BoardSpec, board_label: str, *, wait_s: float = 300.0,
                 say: Callable[[str], None] = print, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(spec)
        self.server, self.board_label, self.wait_s, self.say, self.clock = server, board_label, wait_s, say, clock
        self._waiting: tuple[Any, p.ProfileNextRequest] | None = None
        self._answered: dict[str, list[p.Frame]] = {}  # request id -> the reply it got (resends)
        self._last: OperatingPoint | None = None
        self.runs = 0
        self.points = 0
        self.max_points = 0

    def run(self, batch: np.ndarray, point: OperatingPoint) -> RunOutcome:
        identity, ready = self._waiting or self._next("the application to connect and send profile_next")
        if point != self._last:
            self.points, self._last = self.points + 1, point
        self._reply(identity, ready, p.ProfileTaskReply(
            id=ready.id, done=False, point=p.Point.from_operating_point(point), runs=self.runs, points=self.points,
            max_points=self.max_points))
        identity, report = self._next(f"the application's run of k = {point.groups}")
        self._waiting = (identity, report)
        if report.failed or report.latency_ms is None:
            raise SessionError(f"the application reported {'a failed run' if report.failed else 'no latency'} at "
                               f"k = {point.groups}, {point.threads} thread(s) on {point.unit}; profiling stopped, "
                               "the board is back as it was found and nothing was written")
        self.runs += 1
        return RunOutcome(np.zeros((0,), np.float32), float(report.latency_ms), None, False)

    def close(self) -> None:
        """Tell the waiting application that the profile is complete, then close the socket."""
        try:
            self.finish()
        finally:
            self.server.close()

    def finish(self) -> None:
        """Tell the waiting application that the profile is complete."""
        if self._waiting is not None:
            identity, ready = self._waiting
            self._reply(identity, ready, p.ProfileTaskReply(id=ready.id, done=True, runs=self.runs,
                                                            points=self.points, max_points=self.max_points))
            self._waiting = None

    def _next(self, what: str) -> tuple[Any, p.ProfileNextRequest]:
        """The application's next ``profile_next``, answering ``hello`` and refusing anything else meanwhile."""
        deadline = self.clock() + self.wait_s
        while True:
            left_ms = int(max(deadline - self.clock(), 0.0) * 1000)
            got = self.server.recv(min(left_ms, 1000))
            if got is None:
                if self.clock() >= deadline:
                    raise SessionError(f"waited {self.wait_s:.0f} s for {what}; profiling stopped, the board is "
                                       "back as it was found and nothing was written")
                continue
            identity, frames = got
            try:
                msg, _tensors = p.decode_request(frames)
            except p.ProtocolError as exc:
                self.server.send(identity, p.encode_reply(exc.to_reply()))
                continue
            if msg.id in self._answered:
                self.server.send(identity, self._answered[msg.id])
                continue
            if isinstance(msg, p.ProfileNextRequest):
                return identity, msg
            if isinstance(msg, p.HelloRequest):
                reply: p.Reply = p.HelloReply(id=msg.id, server=f"dnn-governor {__version__} (profile --external)",
                                              board=self.board_label, simulated=False, max_bytes=p.MAX_MESSAGE_BYTES)
            else:
                reply = p.ErrorReply(id=msg.id, code="bad_request", message=(
                    f"this endpoint is a profiling session (governor profile --external): it takes hello and "
                    f"profile_next, not {msg.type}; talk to `governor serve` for that"))
            self.server.send(identity, p.encode_reply(reply))

    def _reply(self, identity: Any, request: p.ProfileNextRequest, reply: p.ProfileTaskReply) -> None:
        frames = p.encode_reply(reply)
        self._answered[request.id] = frames
        if len(self._answered) > 64:
            del self._answered[next(iter(self._answered))]
        self.server.send(identity, frames)
