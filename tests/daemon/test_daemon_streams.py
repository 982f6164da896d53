"""Streams through the real daemon loop (protocol 1.2): a standing budget per frame, the point pushed.

The daemon opens a stream at its turn with its setpoints applied, answers with the point, learns from
the frames reported in batches, pushes a new point when it changes it, and ends a stream that goes
silent: the fake tree's files are then as they were before the stream. Reports to an unknown, closed,
expired or another client's stream get typed errors, and the daemon keeps serving.
"""

import time

import pytest
from daemon_build import make_daemon, serving
from governor_client import Client, GovernorError
from test_daemon_leases import Clock, NoEngine, Socket

from governor.core import protocol as p
from governor.core.types import OperatingPoint, Setpoints
from governor.daemon.tables import measure_table
from governor.daemon.target import open_target
from governor.drivers.catalogue import load_board
from governor.testing import make_fake_tree


@pytest.fixture
def daemon(tmp_path, quick_model):
    with serving(tmp_path, quick_model) as parts:
        yield parts


def client(pair, **kw):
    return Client(transport_factory=pair.connect, timeout_ms=20000, retries=0, **kw)


def test_open_report_close_round_trip_through_the_client(daemon):
    d, pair, meta = daemon
    with client(pair) as c:
        assert c.hello.v == p.PROTOCOL_VERSION == "1.2"
        with c.stream(period_ms=50.0, deadline_ms=5000.0, batch=4) as s:
            assert 1 <= s.k <= meta.groups and s.seq == 0 and not s.simulated
            assert s.expires_in_ms == 2000.0  # [daemon] stream_ttl_ms
            assert s.point.mapping.unit == "cpu" and s.predicted.latency_ms > 0
            for _ in range(10):
                s.report(3.0)
            s.report(0.0, ok=False)
            status = c.status()  # other calls go on while the stream lives
            assert status.served == 0 and status.streams == 1 and status.leases == 0
        summary = s.closed
    assert summary is not None and summary.stream_id == s.stream_id
    assert summary.frames == 10 and summary.met == 10 and summary.failed == 1
    assert summary.mean_latency_ms == pytest.approx(3.0)
    assert d.machine.streams == {} and len(d.streams) == 0
    with client(pair) as c:
        assert c.status().streams == 0


def test_reported_frames_teach_the_daemon_and_a_changed_point_is_pushed(daemon):
    d, pair, _meta = daemon
    table = d.parts.table.table
    with client(pair) as c, c.stream(period_ms=100.0, deadline_ms=60.0, objective="max_accuracy", batch=8) as s:
        first_k = s.k
        (row,) = [i for i, pt in enumerate(table.points) if pt.threads == s.point.mapping.threads
                  and pt.groups == first_k and dict(pt.setpoints.hz) == s.point.setpoints_hz]
        slow = 200.0  # the application's engine is far slower than the table: no k but the smallest fits
        for _ in range(8):
            s.report(slow)  # a full batch: the stream's thread sends it at its next look
        assert until(lambda: s.seq >= 1), "no new point was pushed"
        assert s.changes >= 1 and s.k < first_k  # it came without asking
        group = int(table.group_of[row])
    assert float(d.machine.planner.multiplier()[group]) > 3.0
    assert s.closed.frames >= 8 and s.closed.met == 0


def test_bad_stream_messages_get_typed_errors_and_the_daemon_keeps_serving(daemon):
    _d, pair, meta = daemon
    with client(pair) as c, client(pair) as other:
        s = c.stream(period_ms=50.0)
        with pytest.raises(GovernorError) as err:
            c.stream(period_ms=50.0, model="other")
        assert err.value.code == "bad_request" and "is not loaded" in err.value.message
        with pytest.raises(GovernorError) as err:
            c.stream(period_ms=50.0, expected_ms=[1.0] * (meta.groups + 1))
        assert err.value.code == "bad_request" and f"{meta.groups} groups" in err.value.message
        with pytest.raises(GovernorError) as err:
            c.stream(period_ms=-1.0)
        assert err.value.code == "bad_request" and "period_ms" in err.value.message
        with pytest.raises(GovernorError) as err:
            s.report(float("nan"))
        assert err.value.code == "bad_request"
        # another client cannot report to or close this stream, nor name a point it was never sent
        for request in (p.StreamReportRequest(stream_id=s.stream_id, seq=0, latencies_ms=(1.0,)),
                        p.StreamCloseRequest(stream_id=s.stream_id)):
            with pytest.raises(GovernorError) as err:
                other._call(_plain(request))
            assert err.value.code == "bad_request" and "another client" in err.value.message
        with pytest.raises(GovernorError) as err:
            c._call(_plain(p.StreamReportRequest(stream_id=s.stream_id, seq=5)))
        assert err.value.code == "bad_request" and "seq 5" in err.value.message
        with pytest.raises(GovernorError) as err:  # 10 ttls of latency: us, not ms
            c._call(_plain(p.StreamReportRequest(stream_id=s.stream_id, seq=0, latencies_ms=(30000.0,))))
        assert err.value.code == "bad_request" and "ms, not us" in err.value.message
        with pytest.raises(GovernorError) as err:
            c._call(_plain(p.StreamReportRequest(stream_id="Snope", seq=0)))
        assert err.value.code == "bad_request" and "unknown stream id" in err.value.message
        summary = s.close()
        assert summary.frames == 0  # nothing bad was counted
        with pytest.raises(GovernorError) as err:
            c._call(_plain(p.StreamCloseRequest(stream_id=s.stream_id)))
        assert err.value.code == "bad_request" and "closed already" in err.value.message
        with pytest.raises(GovernorError) as err:
            s.report(1.0)
        assert "is closed" in err.value.message
        assert c.status().served == 0  # still serving


def test_a_report_error_reaches_the_stream_at_its_next_report(daemon):
    _d, pair, _meta = daemon
    with client(pair) as c:
        s = c.stream(period_ms=50.0, batch=1)
        s.report(30000.0)  # sent without waiting; the daemon refuses it
        assert until(lambda: s.error is not None)
        with pytest.raises(GovernorError) as err:
            s.report(2.0)
        assert err.value.code == "bad_request" and "ms, not us" in err.value.message
        s.report(2.0)  # raised once, and the frame that raised it was kept: the stream goes on
        assert s.close().frames == 2


def until(condition, timeout_s=10.0):
    """Wait for what the stream's thread does in the background."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _plain(request):
    from governor_client._calls import plain_call

    return plain_call(request, p.StreamClosedReply)


# -- a stream whose client died leaves no setpoint behind ------------------------------------------
def test_a_silent_stream_expires_and_the_tree_is_as_it_was(tmp_path, quick_model):
    from governor.runtime.executor import Executor

    tree = make_fake_tree(load_board("jetson-nano"), tmp_path / "root")
    baseline = tree.snapshot_bytes()
    target = open_target("jetson-nano", str(tree.root))
    executor = Executor(quick_model, warmup_runs=0)
    meta = executor.meta
    try:
        cpu_hz = sorted(target.board.domains["cpu"].available_hz())
        emc_top = max(target.board.domains["emc"].available_hz())
        points = [OperatingPoint("a57", 1, Setpoints({"cpu": f, "emc": emc_top}), k)
                  for f in (cpu_hz[len(cpu_hz) // 2], cpu_hz[-1]) for k in range(1, meta.groups + 1)]
        table = measure_table(points, lambda pt: (2.0 * pt.groups * cpu_hz[-1] / pt.setpoints.hz["cpu"], None),
                              meta, reps=1)
        socket, clock = Socket(), Clock()
        d = make_daemon(spec=target.spec, board=target.board, backend=NoEngine(), meta=meta, model_name="quick",
                        table=table, server=socket, clock=clock, cpu_count=4)
        socket.put(b"cam", p.encode_request(p.StreamOpenRequest(id="x-1", budget=p.Budget(deadline_ms=5.0),
                                                                period_ms=33.0, ttl_ms=300.0)))
        d.step()
        (identity, opened), = socket.sent
        assert identity == b"cam" and opened.type == "stream" and opened.seq == 0, opened
        assert tree.snapshot_bytes() != baseline, "the stream's setpoints were not written"
        for _ in range(5):  # reporting keeps it alive past its ttl, and the clocks stay pinned
            clock.now += 0.1
            socket.put(b"cam", p.encode_request(p.StreamReportRequest(id="x-2", stream_id=opened.stream_id, seq=0,
                                                                      latencies_ms=(3.0, 3.1))))
            d.step()
        assert d.machine.streams and tree.snapshot_bytes() != baseline
        # The client dies here. After its ttl the stream ends, and the idle policy hands the clocks back.
        for _ in range(40):
            clock.now += 0.05
            d.step()
        assert not d.machine.streams
        after = tree.snapshot_bytes()
        assert sorted(k for k in set(baseline) | set(after) if baseline.get(k) != after.get(k)) == []
        socket.put(b"cam", p.encode_request(p.StreamReportRequest(id="x-3", stream_id=opened.stream_id, seq=0)))
        d.step()
        _identity, late = socket.sent[-1]
        assert late.type == "error" and late.code == "expired" and "open a new stream" in late.message
    finally:
        executor.close()
        target.close()
