"""The synchronous client against a fake daemon on a real ipc socket."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import zmq
from clients_fake_daemon import MEASURED_MS, POINT, FakeDaemon
from governor_client import Client, DaemonUnreachable, GovernorError
from governor_client._errors import check_endpoint, unreachable

from governor.core import protocol as p

FAST = {"timeout_ms": 300, "retries": 2}


def test_clients_handshake_is_the_first_request_and_is_kept(daemon):
    with Client(daemon.endpoint, **FAST) as client:
        assert client.hello.board == "jetson-tx2" and client.hello.simulated
        client.status()
    hello = daemon.received[0].msg
    assert isinstance(hello, p.HelloRequest) and hello.client.startswith("governor-client/")
    assert [r.msg.type for r in daemon.received] == ["hello", "status"]


def test_clients_infer_sends_budget_and_tensors_and_returns_outputs(daemon):
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    with Client(daemon.endpoint, **FAST) as client:
        result = client.infer(
            image, deadline_ms=20, energy_mj=50, min_accuracy=0.7, objective="max_accuracy", model="m1"
        )
    sent = daemon.requests("infer")[0]
    assert sent.msg.budget == p.Budget(deadline_ms=20, energy_mj=50, min_accuracy=0.7, objective="max_accuracy")
    assert sent.msg.model == "m1" and sent.msg.strict is False
    np.testing.assert_array_equal(sent.tensors["input"], image)
    np.testing.assert_array_equal(result.outputs["doubled_input"], image * 2)
    assert result.point == POINT and result.measured.latency_ms == MEASURED_MS
    assert result.budget_met and not result.budget_infeasible and result.simulated
    assert result.request_id == sent.msg.id


def test_clients_outputs_are_views_of_the_received_frames(daemon):
    with Client(daemon.endpoint, **FAST) as client:
        output = client.infer(np.ones(1000, dtype=np.float64)).output
    base = output
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(base, memoryview) and isinstance(base.obj, zmq.Frame), "the array must wrap the zmq frame"


def test_clients_named_and_listed_inputs_keep_their_names(daemon):
    with Client(daemon.endpoint, **FAST) as client:
        client.infer({"a": np.zeros(2), "b": np.ones(3)})
        client.infer([np.zeros(1), np.ones(1)])
    assert [list(r.tensors) for r in daemon.requests("infer")] == [["a", "b"], ["input0", "input1"]]


def test_clients_strict_infeasible_budget_raises_infeasible(daemon):
    with Client(daemon.endpoint, **FAST) as client:
        best_effort = client.infer(np.zeros(2), deadline_ms=5)
        with pytest.raises(GovernorError) as info:
            client.infer(np.zeros(2), deadline_ms=5, strict=True)
    assert best_effort.budget_infeasible and not best_effort.budget_met
    assert info.value.code == "infeasible" and "relax" in info.value.message


def test_clients_advise_returns_the_point_without_sending_tensors(daemon):
    with Client(daemon.endpoint, **FAST) as client:
        advice = client.advise(deadline_ms=30, objective="min_latency")
    sent = daemon.requests("advise")[0]
    assert sent.tensors == {} and sent.msg.budget.objective == "min_latency"
    assert advice.point == POINT and not advice.budget_infeasible and advice.simulated


def test_clients_bad_budget_is_refused_locally_with_the_field(daemon):
    with Client(daemon.endpoint, **FAST) as client, pytest.raises(GovernorError) as info:
        client.infer(np.zeros(2), deadline_ms=float("nan"))
    assert info.value.code == "bad_request" and "deadline_ms" in info.value.message
    assert daemon.requests("infer") == []


def test_clients_silent_daemon_is_retried_on_a_fresh_socket(daemon):
    with Client(daemon.endpoint, **FAST) as client:
        daemon.silent = 2
        assert client.status().board == "jetson-tx2"
    attempts = daemon.requests("status")
    assert len(attempts) == 3
    assert len({a.msg.id for a in attempts}) == 1, "a retry resends the same request id"
    assert len({a.identity for a in attempts}) == 3, "each retry uses a new socket (lazy pirate)"


def test_clients_retries_are_bounded_and_the_error_says_what_to_do(daemon):
    client = Client(daemon.endpoint, timeout_ms=150, retries=1)
    client.connect()
    daemon.silent = 100
    started = time.monotonic()
    with pytest.raises(DaemonUnreachable) as info:
        client.status()
    assert time.monotonic() - started < 2.0
    assert len(daemon.requests("status")) == 2
    assert info.value.code == "unreachable" and "did not answer (2 attempts of 150 ms)" in info.value.message
    assert "governor serve" in info.value.message
    client.close()


def test_clients_survive_a_daemon_restart(ipc_dir):
    first = FakeDaemon(str(ipc_dir / "gov.sock")).start()
    client = Client(first.endpoint, timeout_ms=300, retries=4)
    assert client.status().board == "jetson-tx2"
    first.stop()
    second = FakeDaemon(first.path)
    restart = threading.Timer(0.4, second.start)
    restart.start()
    try:
        assert client.status().uptime_s == 1.0  # sent while the daemon is down; answered after restart
        assert second.requests("status"), "the request reached the restarted daemon"
    finally:
        restart.join()
        second.stop()
        client.close()


def test_clients_stale_reply_with_a_foreign_id_is_ignored(daemon):
    daemon.stale_first = True
    with Client(daemon.endpoint, **FAST) as client:
        status = client.status()
    assert status.server == "fake" and status.id == daemon.requests("status")[0].msg.id


@pytest.mark.parametrize("version", ["2.0", "0.3"])
def test_clients_version_mismatch_fails_the_handshake_naming_both(daemon, version):
    daemon.version = version
    with pytest.raises(GovernorError) as info:
        Client(daemon.endpoint, **FAST).connect()
    assert info.value.code == "unsupported_version"
    assert version in info.value.message and p.PROTOCOL_VERSION in info.value.message


def test_clients_newer_minor_version_is_accepted(daemon):
    daemon.version = p.PROTOCOL_VERSION.split(".")[0] + ".9"
    with Client(daemon.endpoint, **FAST) as client:
        assert client.hello.v.endswith(".9")


def test_clients_missing_socket_fails_fast_with_a_hint(ipc_dir):
    started = time.monotonic()
    with pytest.raises(DaemonUnreachable) as info:
        Client(f"ipc://{ipc_dir}/absent.sock", **FAST).status()
    assert time.monotonic() - started < 0.5
    assert info.value.code == "unreachable" and "does not exist" in info.value.message
    assert "governor serve" in info.value.message and "check the endpoint" in info.value.message


def test_clients_permission_denied_names_the_group():
    with pytest.raises(DaemonUnreachable) as info:
        check_endpoint("ipc:///run/governor/governor.sock", exists=lambda _: True, access=lambda _p, _m: False)
    assert info.value.code == "permission_denied" and "group `governor`" in info.value.message
    no_write = unreachable("ipc:///x.sock", 100, 3, exists=lambda _: True, access=lambda _p, mode: not mode & os.W_OK)
    assert no_write.code == "permission_denied"


def test_clients_silence_on_tcp_is_explained_without_a_socket_file():
    err = unreachable("tcp://10.0.0.2:5555", 1000, 3)
    assert err.code == "unreachable" and "3 attempts of 1000 ms" in err.message and "stale" not in err.message


def test_clients_telemetry_subscription_filters_topics(ipc_dir):
    telemetry = f"ipc://{ipc_dir}/telemetry.sock"
    fake = FakeDaemon(str(ipc_dir / "gov.sock"), telemetry=telemetry).start()
    with zmq_pub(telemetry) as pub, Client(fake.endpoint, **FAST) as client, client.telemetry(["inference"]) as sub:
        event = p.TelemetryEvent(seq=0, t=0.0, simulated=True, kind="reload")
        inference = p.TelemetryInference(
            seq=1, t=0.1, simulated=True, point=POINT, predicted=p.Estimate(latency_ms=1),
            measured=p.Estimate(latency_ms=1.1), budget_met=True, budget_infeasible=False,
        )  # fmt: skip
        got = None
        for _ in range(50):  # PUB drops messages until the subscription has propagated
            pub.send_multipart(p.encode_telemetry(event))
            pub.send_multipart(p.encode_telemetry(inference))
            got = sub.recv(50)
            if got is not None:
                break
    fake.stop()
    assert got == inference


def zmq_pub(endpoint: str):
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    return sock


def test_clients_lease_sends_the_budget_and_releases_with_the_reported_latency(daemon):
    with Client(daemon.endpoint, **FAST) as client:
        lease = client.acquire(deadline_ms=20, model="det", expected_ms=[3.0, 5.0, 8.0], ttl_ms=250)
        assert lease.k == POINT.k and lease.point == POINT and lease.expires_in_ms == 250
        released = client.release(lease, 4.5, energy_mj=2.0)
        assert lease.released == released and released.measured.latency_ms == 4.5 and released.budget_met
        with client.lease(deadline_ms=20, model="det") as ctx:
            ctx.report(6.0, energy_mj=1.5)
        assert ctx.released.measured.latency_ms == 6.0 and ctx.released.measured.energy_mj == 1.5
        with client.lease(deadline_ms=20) as timed:
            time.sleep(0.01)
        assert timed.released.measured.latency_ms >= 10.0  # nothing reported: the block's wall time
        with pytest.raises(ZeroDivisionError), client.lease(deadline_ms=20) as failing:
            failing.report(1 / 0)
        assert failing.released is not None and not failing.released.budget_met
    acquire = daemon.requests("acquire")[0].msg
    assert acquire.budget.deadline_ms == 20 and acquire.model == "det" and acquire.expected_ms == (3.0, 5.0, 8.0)
    assert acquire.ttl_ms == 250
    outcomes = [(r.msg.lease_id, r.msg.latency_ms, r.msg.outcome) for r in daemon.requests("release")]
    assert outcomes[0] == (lease.lease_id, 4.5, "ok") and outcomes[1] == (ctx.lease_id, 6.0, "ok")
    assert outcomes[2][2] == "ok" and outcomes[3][0] == failing.lease_id and outcomes[3][2] == "failed"


def test_clients_release_refuses_an_impossible_latency_before_sending(daemon):
    with Client(daemon.endpoint, **FAST) as client:
        lease = client.acquire(deadline_ms=20)
        for latency in (float("nan"), -1.0, 0.0, float("inf")):
            with pytest.raises(GovernorError) as err:
                client.release(lease, latency)
            assert err.value.code == "bad_request" and "latency_ms" in err.value.message
    assert daemon.requests("release") == []


def test_clients_a_stream_needs_a_1_2_daemon_and_says_so(daemon):
    daemon.version = "1.1"
    with Client(daemon.endpoint, **FAST) as client:
        with pytest.raises(GovernorError) as info:
            client.stream(period_ms=33.0)
        assert info.value.code == "bad_request" and "1.2" in info.value.message and "leases" in info.value.message
        assert daemon.requests("stream_open") == []  # refused before anything was sent
