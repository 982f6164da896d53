"""The asyncio client: ``async with AsyncClient() as gov: await gov.infer(x, deadline_ms=20)``.

Same calls, timeouts and lazy-pirate retries as :class:`~governor_client.Client`, on zmq.asyncio
sockets. Calls on one client run one at a time (an asyncio lock), which is also how the daemon
serves them; open several clients for concurrent requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

import numpy as np
import zmq
import zmq.asyncio

from governor.core import protocol as p
from governor_client._calls import (
    Advice,
    Call,
    Calls,
    InferResult,
    Lease,
    Released,
    acquire_call,
    advise_call,
    infer_call,
    plain_call,
    release_call,
    stream_open_call,
)
from governor_client._errors import GovernorError, check_endpoint, unreachable
from governor_client._stream import Stream
from governor_client._transport import AsyncZmqTransport, CurveKeys, ZmqTransport, default_endpoint, open_subscriber
from governor_client.client import CLIENT_NAME, _ran_ms

__all__ = ["AsyncClient", "AsyncSubscription"]

T = TypeVar("T")


class AsyncClient:
    """The asyncio counterpart of :class:`~governor_client.Client` (same arguments, minus transport)."""

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        timeout_ms: int = 3000,
        retries: int = 2,
        context: zmq.asyncio.Context | None = None,
        curve: CurveKeys | None = None,
        max_bytes: int = p.MAX_MESSAGE_BYTES,
    ) -> None:
        if timeout_ms <= 0 or retries < 0:
            raise ValueError("timeout_ms must be > 0 and retries >= 0")
        self.endpoint = endpoint or default_endpoint()
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.hello: p.HelloReply | None = None
        self._transport: AsyncZmqTransport | None = None
        self._context = context
        self._curve = curve
        self._calls = Calls(max_bytes=max_bytes)
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> AsyncClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    async def connect(self) -> p.HelloReply:
        """Open the connection and check versions; returns the daemon's hello."""
        async with self._lock:
            return await self._connect()

    async def _connect(self) -> p.HelloReply:
        if self._transport is None:
            check_endpoint(self.endpoint)
            self._transport = AsyncZmqTransport(self.endpoint, context=self._context, curve=self._curve)
        if self.hello is None:
            self.hello = await self._run(plain_call(p.HelloRequest(client=CLIENT_NAME), p.HelloReply))
        return self.hello

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self.hello = None

    async def infer(
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
        """Run one inference within the budget (ms, mJ, accuracy fraction); arrays are not copied."""
        budget = {"deadline_ms": deadline_ms, "energy_mj": energy_mj, "min_accuracy": min_accuracy}
        return await self._call(infer_call(inputs, **budget, objective=objective, strict=strict, model=model))

    async def advise(
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
        return await self._call(advise_call(**budget, objective=objective, strict=strict, model=model))

    async def acquire(
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
        """A lease (protocol 1.1); see :meth:`governor_client.Client.acquire`."""
        budget = {"deadline_ms": deadline_ms, "energy_mj": energy_mj, "min_accuracy": min_accuracy}
        return await self._call(acquire_call(**budget, objective=objective, strict=strict, model=model,
                                             expected_ms=expected_ms, ttl_ms=ttl_ms))

    async def release(self, lease: Lease | str, latency_ms: float, energy_mj: float | None = None,
                      ok: bool = True) -> Released:
        """Give the board back with what the run measured; see :meth:`governor_client.Client.release`."""
        return await self._call(release_call(lease, latency_ms, energy_mj, ok))

    @contextlib.asynccontextmanager
    async def lease(
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
    ) -> AsyncIterator[Lease]:
        """``async with gov.lease(deadline_ms=20) as lease: ...``; see :meth:`governor_client.Client.lease`."""
        lease = await self.acquire(deadline_ms=deadline_ms, energy_mj=energy_mj, min_accuracy=min_accuracy,
                                   objective=objective, strict=strict, model=model, expected_ms=expected_ms,
                                   ttl_ms=ttl_ms)
        start = time.perf_counter()
        try:
            yield lease
        except BaseException:
            with contextlib.suppress(GovernorError):
                await self.release(lease, _ran_ms(lease, start), lease.reported_energy_mj, ok=False)
            raise
        await self.release(lease, _ran_ms(lease, start), lease.reported_energy_mj)

    async def open_stream(
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
        """A stream (protocol 1.2); see :meth:`governor_client.Client.stream`. Its per-frame calls (``k``,
        ``report``) never wait, so they are plain calls in a coroutine too; end it with ``await s.aclose()``,
        or use :meth:`stream`."""
        hello = await self.connect()
        if not p.speaks(hello.v, 2):
            raise GovernorError("bad_request", f"the daemon speaks protocol {hello.v}: streams need 1.2 or later "
                                "(upgrade the daemon), or use leases")
        budget = {"deadline_ms": deadline_ms, "energy_mj": energy_mj, "min_accuracy": min_accuracy}
        reply = await self._call(stream_open_call(period_ms=period_ms, expected_ms=expected_ms, ttl_ms=ttl_ms,
                                                  **budget, objective=objective, strict=strict, model=model))
        endpoint, curve = self.endpoint, self._curve
        return Stream(reply, connect=lambda: ZmqTransport(endpoint, curve=curve), prefix=self._calls.prefix,
                      batch=batch, flush_ms=flush_ms, timeout_ms=self.timeout_ms, max_bytes=self._calls.max_bytes)

    @contextlib.asynccontextmanager
    async def stream(self, *, period_ms: float, **kw: Any) -> AsyncIterator[Stream]:
        """``async with gov.stream(period_ms=33, deadline_ms=30) as s: ... run(engines[s.k]); s.report(ms)``;
        the stream is closed when the block ends (also when it raises)."""
        opened = await self.open_stream(period_ms=period_ms, **kw)
        try:
            yield opened
        except BaseException:
            with contextlib.suppress(GovernorError):
                await opened.aclose()
            raise
        await opened.aclose()

    async def status(self) -> p.StatusReply:
        return await self._call(plain_call(p.StatusRequest(), p.StatusReply))

    async def profiles(self) -> p.ProfilesReply:
        return await self._call(plain_call(p.ProfilesRequest(), p.ProfilesReply))

    async def reload(self) -> p.ReloadReply:
        return await self._call(plain_call(p.ReloadRequest(), p.ReloadReply))

    async def telemetry(self, topics: Sequence[str] = (), *, endpoint: str | None = None) -> AsyncSubscription:
        """Subscribe to the daemon's telemetry; the endpoint comes from the handshake unless given."""
        endpoint = endpoint or (await self.connect()).telemetry_endpoint
        if not endpoint:
            raise GovernorError("unavailable", "the daemon publishes no telemetry (its hello names no endpoint)")
        return AsyncSubscription(
            endpoint, topics, context=self._context, curve=self._curve, max_bytes=self._calls.max_bytes
        )

    async def _call(self, call: Call[T]) -> T:
        async with self._lock:
            await self._connect()
            return await self._run(call)

    async def _run(self, call: Call[T]) -> T:
        assert self._transport is not None
        request_id, frames = self._calls.encode(call.request, call.tensors)
        for attempt in range(1 + self.retries):
            if attempt:
                self._transport.reset()
            await self._transport.send(frames)
            answer = await self._await(request_id)
            if answer is not None:
                return call.result(*answer)
        raise unreachable(self.endpoint, self.timeout_ms, 1 + self.retries)

    async def _await(self, request_id: str) -> tuple[p.Reply, dict[str, np.ndarray]] | None:
        assert self._transport is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_ms / 1000
        while (left_ms := (deadline - loop.time()) * 1000) > 0:
            frames = await self._transport.recv(max(1, round(left_ms)))
            if frames is None:
                return None
            answer = self._calls.match(frames, request_id)
            if answer is not None:
                return answer
        return None


class AsyncSubscription:
    """Telemetry for asyncio: ``async for msg in sub``, or ``await sub.recv(timeout_ms)``."""

    def __init__(
        self,
        endpoint: str,
        topics: Sequence[str] = (),
        *,
        context: zmq.asyncio.Context | None = None,
        curve: CurveKeys | None = None,
        max_bytes: int = p.MAX_MESSAGE_BYTES,
    ) -> None:
        self.endpoint = endpoint
        self._max_bytes = max_bytes
        self._socket = open_subscriber(context or zmq.asyncio.Context.instance(), endpoint, topics, curve)

    async def recv(self, timeout_ms: int | None = None) -> p.Telemetry | None:
        if not await self._socket.poll(timeout_ms, zmq.POLLIN):
            return None
        try:
            return p.decode_telemetry(await self._socket.recv_multipart(), max_bytes=self._max_bytes)
        except p.ProtocolError as exc:
            raise GovernorError.from_protocol(exc) from None

    def __aiter__(self) -> AsyncIterator[p.Telemetry]:
        return self

    async def __anext__(self) -> p.Telemetry:
        msg = None
        while msg is None:
            msg = await self.recv()
        return msg

    def close(self) -> None:
        self._socket.close(linger=0)

    async def __aenter__(self) -> AsyncSubscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
