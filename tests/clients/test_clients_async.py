"""The asyncio client against the same fake daemon (each test drives its own event loop)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import zmq
from clients_fake_daemon import POINT, FakeDaemon
from governor_client import AsyncClient, DaemonUnreachable, GovernorError

from governor.core import protocol as p

FAST = {"timeout_ms": 300, "retries": 2}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=10))


def test_clients_async_handshake_infer_and_status(daemon):
    image = np.linspace(0, 1, 8, dtype=np.float32)

    async def session():
        async with AsyncClient(daemon.endpoint, **FAST) as client:
            assert client.hello.board == "jetson-tx2"
            result = await client.infer(image, deadline_ms=20, strict=True)
            return result, await client.status()

    result, status = run(session())
    assert [r.msg.type for r in daemon.received] == ["hello", "infer", "status"]
    assert daemon.requests("infer")[0].msg.strict is True
    np.testing.assert_array_equal(result.output, image * 2)
    assert result.point == POINT and result.simulated and status.uptime_s == 1.0


def test_clients_async_concurrent_calls_are_serialised_and_all_answered(daemon):
    async def session():
        async with AsyncClient(daemon.endpoint, **FAST) as client:
            return await asyncio.gather(*(client.advise(deadline_ms=10 + i) for i in range(5)))

    advices = run(session())
    sent = [r.msg.budget.deadline_ms for r in daemon.requests("advise")]
    assert sorted(sent) == [10, 11, 12, 13, 14]
    assert [a.budget_infeasible for a in advices] == [True, True, True, False, False]


def test_clients_async_silent_daemon_is_retried_then_reported(daemon):
    async def session():
        client = AsyncClient(daemon.endpoint, timeout_ms=150, retries=1)
        await client.connect()
        daemon.silent = 1
        reloaded = await client.reload()
        daemon.silent = 10
        try:
            await client.profiles()
        finally:
            client.close()
        return reloaded

    with pytest.raises(DaemonUnreachable, match="governor serve"):
        run(session())
    reloads = daemon.requests("reload")
    assert len(reloads) == 2 and reloads[0].identity != reloads[1].identity
    assert len(daemon.requests("profiles")) == 2


def test_clients_async_version_mismatch_names_both_versions(daemon):
    daemon.version = "3.1"
    with pytest.raises(GovernorError) as info:
        run(AsyncClient(daemon.endpoint, **FAST).connect())
    assert info.value.code == "unsupported_version" and "3.1" in info.value.message


def test_clients_async_telemetry_subscription(ipc_dir):
    telemetry = f"ipc://{ipc_dir}/telemetry.sock"
    fake = FakeDaemon(str(ipc_dir / "gov.sock"), telemetry=telemetry).start()
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(telemetry)
    event = p.TelemetryEvent(seq=7, t=2.0, simulated=False, kind="reload", message="1 profile")

    async def session():
        async with AsyncClient(fake.endpoint, **FAST) as client, await client.telemetry(["event"]) as sub:
            for _ in range(50):  # PUB drops messages until the subscription has propagated
                pub.send_multipart(p.encode_telemetry(event))
                got = await sub.recv(50)
                if got is not None:
                    return got
        return None

    try:
        assert run(session()) == event
    finally:
        pub.close()
        fake.stop()


def test_clients_async_lease_context_manager_releases_ok_or_failed(daemon):
    async def session():
        async with AsyncClient(daemon.endpoint, **FAST) as client:
            async with client.lease(deadline_ms=20, model="det") as lease:
                lease.report(3.5)
            with pytest.raises(RuntimeError):
                async with client.lease(deadline_ms=20) as failing:
                    raise RuntimeError("engine")
            return lease, failing

    lease, failing = run(session())
    assert lease.k == POINT.k and lease.released.measured.latency_ms == 3.5 and lease.released.budget_met
    assert failing.released is not None and not failing.released.budget_met
    assert [r.msg.outcome for r in daemon.requests("release")] == ["ok", "failed"]
