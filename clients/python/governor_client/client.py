"""The synchronous client: ``with Client() as gov: gov.infer(x, deadline_ms=20)``.

Every call is one request and one reply. A call waits ``timeout_ms`` for its reply; on silence it
resets the connection (lazy pirate) and resends the same request, ``retries`` times, then raises
:class:`DaemonUnreachable` with what to do. A resent ``infer`` may run twice if the daemon was only
slow, so ``timeout_ms`` should exceed the longest inference plus queueing. Not thread-safe: use one
client per thread (ZeroMQ sockets must stay on one thread).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import zmq

from governor import __version__
from governor.core import protocol as p
from governor_client._calls import (
    Advice,
    Call,
    Calls,
    InferResult,
    Lease,
    ProfileTask,
    Released,
    acquire_call,
    advise_call,
    infer_call,
    plain_call,
    profile_next_call,
    release_call,
    stream_open_call,
)
from governor_client._errors import GovernorError, check_endpoint, unreachable
from governor_client._stream import Stream
from governor_client._transport import CurveKeys, Transport, ZmqTransport, default_endpoint, open_subscriber

__all__ = ["Client", "Subscription"]

T = TypeVar("T")
CLIENT_NAME = f"governor-client/{__version__}"


class Client:
    """A connection to the governor daemon at ``endpoint`` (default: :func:`default_endpoint`).

    ``transport`` replaces ZeroMQ (tests pass ``governor.transport.inproc`` ends); ``transport_factory``
    makes such a connection (a stream opens one of its own; without ``transport`` the client's too). The version
    handshake (a ``hello``) runs on :meth:`connect`, on entering the ``with`` block, or before the
    first call; its reply is kept in :attr:`hello`.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        timeout_ms: int = 3000,
        retries: int = 2,
        transport: Transport | None = None,
        context: zmq.Context[Any] | None = None,
        curve: CurveKeys | None = None,
        max_bytes: int = p.MAX_MESSAGE_BYTES,
        transport_factory: Callable[[], Transport] | None = None,
    ) -> None:
        if timeout_ms <= 0 or retries < 0:
            raise ValueError("timeout_ms must be > 0 and retries >= 0")
        self.endpoint = endpoint or default_endpoint()
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.hello: p.HelloReply | None = None
        self._transport = transport
        self._injected = transport is not None
        self._context = context
        self._curve = curve
        self._calls = Calls(max_bytes=max_bytes)
        self._transport_factory = transport_factory
        self._streams: list[Stream] = []  # opened here: closed with the client

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def connect(self) -> p.HelloReply:
        """Open the connection and check versions; returns the daemon's hello."""
        if self._transport is None:
            self._transport = self._new_transport()
        if self.hello is None:
            self.hello = self._run(plain_call(p.HelloRequest(client=CLIENT_NAME), p.HelloReply))
        return self.hello

    def _new_transport(self) -> Transport:
        if self._transport_factory is not None:
            return self._transport_factory()
        check_endpoint(self.endpoint)
        return ZmqTransport(self.endpoint, context=self._context, curve=self._curve)

    def close(self) -> None:
        for stream in self._streams:  # end them now rather than at their expiry
            if stream.closed is None:
                with contextlib.suppress(GovernorError):
                    stream.close()
        self._streams.clear()
        if self._transport is not None and not self._injected:
            self._transport.close()
            self._transport = None
        self.hello = None

    def infer(
        self,
        inputs: np.ndarray | Sequence[np.ndarray] | dict[str, np.ndarray],
        *,
        deadline_ms: float | None = None,
        energy_mj: float | None = None,
        min_accuracy: float | None = None,
        objective: p.Objective | None = None,
        strict: bool = False,
        model: str | None = None,
    ) -> InferResult:
        """Run one inference within the budget (ms, mJ, accuracy fraction). Arrays are sent without
        copying; do not modify them until this returns."""
        budget = {"deadline_ms": deadline_ms, "energy_mj": energy_mj, "min_accuracy": min_accuracy}
        return self._call(infer_call(inputs, **budget, objective=objective, strict=strict, model=model))

    def advise(
        self,
        *,
        deadline_ms: float | None = None,
        energy_mj: float | None = None,
        min_accuracy: float | None = None,
        objective: p.Objective | None = None,
        strict: bool = False,
        model: str | None = None,
    ) -> Advice:
        """The operating point ``infer`` would choose for this budget, without running."""
        budget = {"deadline_ms": deadline_ms, "energy_mj": energy_mj, "min_accuracy": min_accuracy}
        return self._call(advise_call(**budget, objective=objective, strict=strict, model=model))

    def acquire(
        self,
        *,
        deadline_ms: float | None = None,
        energy_mj: float | None = None,
        min_accuracy: float | None = None,
        objective: p.Objective | None = None,
        strict: bool = False,
        model: str | None = None,
        expected_ms: Sequence[float] | None = None,
        ttl_ms: float | None = None,
    ) -> Lease:
        """A lease (protocol 1.1): the daemon chooses the point for the budget and sets its clocks; run
        ``lease.k`` groups on your own engine, then :meth:`release` it with the latency you measured.
        ``expected_ms``: your engine's latency per k = 1..G at the top clocks, if known; ``ttl_ms``: how long
        the lease may live (the daemon's ``lease_ttl_ms`` by default). Prefer :meth:`lease`."""
        budget = {"deadline_ms": deadline_ms, "energy_mj": energy_mj, "min_accuracy": min_accuracy}
        return self._call(acquire_call(**budget, objective=objective, strict=strict, model=model,
                                       expected_ms=expected_ms, ttl_ms=ttl_ms))

    def release(self, lease: Lease | str, latency_ms: float, energy_mj: float | None = None,
                ok: bool = True) -> Released:
        """Give the board back with what the run measured (ms, and mJ if you measured it); ``ok=False``: the
        run failed (nothing is learned from it)."""
        return self._call(release_call(lease, latency_ms, energy_mj, ok))

    def profile_session(self) -> Iterator[ProfileTask]:
        """Drive a profiling session (`governor profile MODEL --external NAME`, this client connected to the
        endpoint it prints): ``for task in gov.profile_session(): task.report(run(engines[task.k]))``. Each task
        is one run at the point it names (its setpoints are in force); the profiler chooses the points and
        stops on its error bound. A task not reported ends the session with an error; ``task.fail()`` stops it.
        Between tasks the profiler may wait for the board to cool: give the client a long ``timeout_ms``."""
        task = self._call(profile_next_call(None))
        while task is not None:
            yield task
            if task.failed:
                self._call(profile_next_call(task))
                return
            task = self._call(profile_next_call(task))

    @contextlib.contextmanager
    def lease(
        self,
        *,
        deadline_ms: float | None = None,
        energy_mj: float | None = None,
        min_accuracy: float | None = None,
        objective: p.Objective | None = None,
        strict: bool = False,
        model: str | None = None,
        expected_ms: Sequence[float] | None = None,
        ttl_ms: float | None = None,
    ) -> Iterator[Lease]:
        """``with gov.lease(deadline_ms=20) as lease: run(engines[lease.k]); lease.report(ms)``.

        On exit the lease is released with the reported latency (or the block's wall time when nothing was
        reported); when the block raises, it is released as failed and the exception goes on. The reply is
        in ``lease.released``."""
        lease = self.acquire(deadline_ms=deadline_ms, energy_mj=energy_mj, min_accuracy=min_accuracy,
                             objective=objective, strict=strict, model=model, expected_ms=expected_ms, ttl_ms=ttl_ms)
        start = time.perf_counter()
        try:
            yield lease
        except BaseException:
            with contextlib.suppress(GovernorError):  # the block's own exception is what the caller must see
                self.release(lease, _ran_ms(lease, start), lease.reported_energy_mj, ok=False)
            raise
        self.release(lease, _ran_ms(lease, start), lease.reported_energy_mj)

    def stream(
        self,
        *,
        period_ms: float,
        deadline_ms: float | None = None,
        energy_mj: float | None = None,
        min_accuracy: float | None = None,
        objective: p.Objective | None = None,
        strict: bool = False,
        model: str | None = None,
        expected_ms: Sequence[float] | None = None,
        ttl_ms: float | None = None,
        batch: int = 16,
        flush_ms: float | None = None,
    ) -> Stream:
        """A stream (protocol 1.2): a frame every ``period_ms``, each within the budget (no deadline: the
        period). ``with gov.stream(period_ms=33) as s: ... run(engines[s.k]); s.report(ms)``: reading ``s.k``
        and reporting cost microseconds (no round trip); the daemon pushes a new point when it changes
        it. ``expected_ms``: your engine's latency per k at the top clocks; ``ttl_ms``: how long the stream
        may go without a report (the daemon's ``stream_ttl_ms`` by default); ``batch``: frames per report;
        ``flush_ms``: the longest a reported frame waits to be sent (default: a quarter of the ttl, <= 250 ms).
        The stream talks to the daemon over a connection of its own, from a thread of its own."""
        hello = self.connect()
        if not p.speaks(hello.v, 2):
            raise GovernorError("bad_request", f"the daemon speaks protocol {hello.v}: streams need 1.2 or later "
                                "(upgrade the daemon), or use leases")
        budget = {"deadline_ms": deadline_ms, "energy_mj": energy_mj, "min_accuracy": min_accuracy}
        reply = self._call(stream_open_call(period_ms=period_ms, expected_ms=expected_ms, ttl_ms=ttl_ms, **budget,
                                            objective=objective, strict=strict, model=model))
        if self._injected and self._transport_factory is None:
            raise GovernorError("bad_request", "a stream opens a connection of its own: give the client a "
                                "transport_factory as well as its transport")
        stream = Stream(reply, connect=self._new_transport, prefix=self._calls.prefix, batch=batch,
                        flush_ms=flush_ms, timeout_ms=self.timeout_ms, max_bytes=self._calls.max_bytes)
        self._streams = [s for s in self._streams if s.closed is None] + [stream]
        return stream

    def status(self) -> p.StatusReply:
        return self._call(plain_call(p.StatusRequest(), p.StatusReply))

    def profiles(self) -> p.ProfilesReply:
        return self._call(plain_call(p.ProfilesRequest(), p.ProfilesReply))

    def reload(self) -> p.ReloadReply:
        return self._call(plain_call(p.ReloadRequest(), p.ReloadReply))

    def telemetry(self, topics: Sequence[str] = (), *, endpoint: str | None = None) -> Subscription:
        """Subscribe to the daemon's telemetry (all topics by default); the endpoint comes from the
        handshake unless given."""
        endpoint = endpoint or self.connect().telemetry_endpoint
        if not endpoint:
            raise GovernorError("unavailable", "the daemon publishes no telemetry (its hello names no endpoint)")
        return Subscription(endpoint, topics, context=self._context, curve=self._curve, max_bytes=self._calls.max_bytes)

    def _call(self, call: Call[T]) -> T:
        self.connect()
        return self._run(call)

    def _run(self, call: Call[T]) -> T:
        assert self._transport is not None
        request_id, frames = self._calls.encode(call.request, call.tensors)
        for attempt in range(1 + self.retries):
            if attempt:
                self._transport.reset()
            self._transport.send(frames)
            answer = self._await(request_id)
            if answer is not None:
                return call.result(*answer)
        raise unreachable(self.endpoint, self.timeout_ms, 1 + self.retries)

    def _await(self, request_id: str) -> tuple[p.Reply, dict[str, np.ndarray]] | None:
        assert self._transport is not None
        deadline = time.monotonic() + self.timeout_ms / 1000
        while (left_ms := (deadline - time.monotonic()) * 1000) > 0:
            frames = self._transport.recv(max(1, round(left_ms)))
            if frames is None:
                return None
            answer = self._calls.match(frames, request_id)
            if answer is not None:
                return answer
        return None


def _ran_ms(lease: Lease, start: float) -> float:
    """The latency to release ``lease`` with: the reported one, else the block's wall time since ``start`` (ms)."""
    if lease.reported_ms is not None:
        return lease.reported_ms
    return max((time.perf_counter() - start) * 1000.0, 1e-3)


class Subscription:
    """Telemetry from the daemon's PUB socket: iterate for messages, or :meth:`recv` with a timeout."""

    def __init__(
        self,
        endpoint: str,
        topics: Sequence[str] = (),
        *,
        context: zmq.Context[Any] | None = None,
        curve: CurveKeys | None = None,
        max_bytes: int = p.MAX_MESSAGE_BYTES,
    ) -> None:
        self.endpoint = endpoint
        self._max_bytes = max_bytes
        self._socket = open_subscriber(context or zmq.Context.instance(), endpoint, topics, curve)

    def recv(self, timeout_ms: int | None = None) -> p.Telemetry | None:
        """The next message, or None after ``timeout_ms`` (None = wait forever)."""
        if not self._socket.poll(timeout_ms, zmq.POLLIN):
            return None
        try:
            return p.decode_telemetry(self._socket.recv_multipart(), max_bytes=self._max_bytes)
        except p.ProtocolError as exc:
            raise GovernorError.from_protocol(exc) from None

    def __iter__(self) -> Iterator[p.Telemetry]:
        while True:
            msg = self.recv(200)  # short polls keep Ctrl-C responsive
            if msg is not None:
                yield msg

    def close(self) -> None:
        self._socket.close(linger=0)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
