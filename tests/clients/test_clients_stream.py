"""The client's end of a stream, against a scripted daemon connection: what goes out, and when.

Per frame the application only reads ``k`` and appends a report; the stream's thread sends the frames
in batches, one report per point they ran at, takes pushed points, and raises the daemon's complaints
at the next report. Nothing here needs a daemon: the connection records what the thread sends and
hands it what the test queues.
"""

import queue
import threading
import time

import pytest
from governor_client import GovernorError
from governor_client._stream import Stream

from governor.core import protocol as p

POINT = p.Point(mapping=p.Placement(unit="cpu", threads=2), setpoints_hz={"cpu": 1_000_000_000}, k=3)
PREDICTED = p.Estimate(latency_ms=4.0)


def opened(seq=0, k=3, **kw):
    fields = dict(id="c-1", stream_id="Sabc", seq=seq, point=POINT.model_copy(update={"k": k}), predicted=PREDICTED,
                  period_ms=33.0, expires_in_ms=2000.0, budget_infeasible=False, simulated=False)
    fields.update(kw)
    return p.StreamReply(**fields)


class Scripted:
    """A connection whose sent requests are recorded (decoded) and whose replies the test queues."""

    def __init__(self):
        self.sent, self.replies, self.thread = [], queue.Queue(), None
        self.closed = threading.Event()

    def send(self, frames):
        self.thread = threading.current_thread().name
        request, _ = p.decode_request([memoryview(bytes(f)) for f in frames])
        self.sent.append(request)
        if isinstance(request, p.StreamCloseRequest):
            reports = [r for r in self.sent if isinstance(r, p.StreamReportRequest)]
            frames_seen = sum(len(r.latencies_ms) for r in reports)
            self.push(p.StreamClosedReply(id=request.id, stream_id=request.stream_id, frames=frames_seen,
                                          met=frames_seen, failed=sum(r.failed for r in reports)))

    def push(self, reply):
        self.replies.put([memoryview(bytes(f)) for f in p.encode_reply(reply)])

    def recv(self, timeout_ms):
        try:
            return self.replies.get(timeout=timeout_ms / 1000)
        except queue.Empty:
            return None

    def reset(self):
        pass

    def close(self):
        self.closed.set()

    def reports(self):
        return [r for r in self.sent if isinstance(r, p.StreamReportRequest)]


def until(condition, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def stream(conn, **kw):
    return Stream(opened(), connect=lambda: conn, prefix="abcd", **kw)


def test_the_thread_registers_its_connection_and_sends_full_batches_from_its_own_thread():
    conn = Scripted()
    s = stream(conn, batch=4, flush_ms=10_000)
    until(lambda: conn.reports())
    first = conn.reports()[0]
    assert first.latencies_ms == () and first.seq == 0 and first.id.startswith("abcd-")  # the owner's prefix
    assert conn.thread != threading.current_thread().name
    for ms in (1.0, 2.0, 3.0):
        s.report(ms)
    time.sleep(0.1)
    assert len(conn.reports()) == 1  # not a full batch, and flush_ms is long: nothing sent yet
    s.report(4.0)
    until(lambda: len(conn.reports()) == 2)
    assert conn.reports()[1].latencies_ms == (1.0, 2.0, 3.0, 4.0)
    summary = s.close()
    assert summary.frames == 4 and conn.closed.is_set()
    assert s.close() is summary  # closing twice answers the same


def test_frames_go_out_with_the_point_they_ran_at_and_failures_are_counted():
    conn = Scripted()
    s = stream(conn, batch=100, flush_ms=10_000)
    assert s.k == 3
    s.report(5.0)
    s.report(0.0, ok=False)  # a failed frame carries no latency
    conn.push(opened(seq=1, k=2))
    until(lambda: s.seq == 1)
    s.report(6.0)  # read before the new point: still the old one's
    assert s.k == 2 and s.changes == 1
    s.report(4.0)
    s.close()
    reports = [r for r in conn.reports() if r.latencies_ms or r.failed]
    assert [(r.seq, r.latencies_ms, r.failed) for r in reports] == [(0, (5.0, 6.0), 1), (1, (4.0,), 0)]


def test_a_stale_or_foreign_push_does_not_move_the_point():
    conn = Scripted()
    s = stream(conn)
    conn.push(opened(seq=2, k=1, stream_id="Sother"))
    conn.push(opened(seq=0, k=1))
    time.sleep(0.1)
    assert s.k == 3 and s.seq == 0
    s.close()


def test_a_complaint_is_raised_once_at_the_next_report_and_expiry_ends_the_stream():
    conn = Scripted()
    s = stream(conn)
    conn.push(p.ErrorReply(id="abcd-3", code="bad_request", message="a latency of 30000 ms is more than ..."))
    until(lambda: s.error is not None)
    with pytest.raises(GovernorError) as err:
        s.report(2.0)
    assert err.value.code == "bad_request"
    s.report(2.0)  # once
    conn.push(p.ErrorReply(id="abcd-4", code="expired", message="stream Sabc expired"))
    until(lambda: conn.closed.is_set())  # an expired stream's thread lets go of its connection
    for _ in range(2):
        with pytest.raises(GovernorError) as err:
            s.report(2.0)
        assert err.value.code == "expired"
    with pytest.raises(GovernorError) as err:
        s.close()
    assert err.value.code == "expired"


def test_bad_latencies_are_refused_at_once_and_keep_alive_sends_an_empty_report():
    conn = Scripted()
    s = stream(conn, flush_ms=10_000)
    for bad in (0.0, -1.0, float("nan"), float("inf"), 4e6, "x", None):
        with pytest.raises(GovernorError) as err:
            s.report(bad)
        assert err.value.code == "bad_request" and "latency_ms" in err.value.message
    until(lambda: len(conn.reports()) == 1)
    s.keep_alive()
    until(lambda: len(conn.reports()) == 2)
    assert conn.reports()[1].latencies_ms == ()
    with pytest.raises(ValueError):
        Stream(opened(), connect=lambda: conn, prefix="abcd", batch=0)
    s.close()


def test_a_with_block_that_raises_closes_the_stream_and_the_exception_goes_on():
    conn = Scripted()
    with pytest.raises(RuntimeError), stream(conn) as s:
        s.report(1.0)
        raise RuntimeError("the camera went away")
    assert s.closed is not None and s.closed.frames == 1


def test_a_daemon_that_never_answers_the_close_is_said_so():
    class Silent(Scripted):
        def send(self, frames):
            request, _ = p.decode_request([memoryview(bytes(f)) for f in frames])
            self.sent.append(request)

    s = Stream(opened(), connect=Silent, prefix="abcd", timeout_ms=200)
    with pytest.raises(GovernorError) as err:
        s.close()
    assert err.value.code == "unavailable" and "no answer" in err.value.message
