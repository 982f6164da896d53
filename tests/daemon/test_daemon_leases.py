"""Leases through the real daemon loop: the application runs its own engine at the clocks the daemon set.

The daemon chooses the point, applies it, answers ``lease`` with the k to run, keeps serving while the
application runs, and learns from the latency the ``release`` reports. Late, duplicate, foreign and
absurd releases get typed errors and the daemon keeps serving; a lease nobody releases expires, and
the clocks go back to the idle policy.
"""

import json
import threading
import time

import numpy as np
import pytest
from daemon_build import make_daemon, serving
from governor_client import Client, GovernorError

from governor.core import protocol as p
from governor.daemon.backend import Backend
from governor.daemon.tables import measure_table
from governor.daemon.target import open_target
from governor.drivers.catalogue import load_board
from governor.testing import make_fake_tree


@pytest.fixture
def daemon(tmp_path, quick_model):
    with serving(tmp_path, quick_model) as parts:
        yield parts


def client(pair, **kw):
    return Client(transport=pair.connect(), timeout_ms=20000, retries=0, **kw)


def test_acquire_then_release_round_trip(daemon):
    d, pair, meta = daemon
    with client(pair) as c:
        lease = c.acquire(deadline_ms=5000, model="quick")
        assert 1 <= lease.k <= meta.groups and lease.lease_id and not lease.simulated
        assert lease.expires_in_ms == 1000.0  # [daemon] lease_ttl_ms
        assert lease.point.mapping.unit == "cpu" and lease.predicted.latency_ms > 0
        released = c.release(lease, 3.0, energy_mj=7.5)
        assert released.lease_id == lease.lease_id and lease.released == released
        assert released.measured.latency_ms == 3.0
        assert released.measured.energy_mj == 7.5  # no power sensor on the host: the application's reading
        assert released.budget_met and 0 < released.total_ms < 5000
        assert c.status().served == 1 and d.served == 1
        with pytest.raises(GovernorError) as err:
            c.acquire(deadline_ms=5000, model="other")
        assert err.value.code == "bad_request" and "is not loaded" in err.value.message
        with pytest.raises(GovernorError) as err:
            c.acquire(deadline_ms=5000, expected_ms=[1.0] * (meta.groups + 1))
        assert err.value.code == "bad_request" and f"{meta.groups} groups" in err.value.message


def test_released_latencies_teach_the_daemon_like_its_own_runs(daemon):
    d, pair, _meta = daemon
    table = d.parts.table.table
    with client(pair) as c:
        first = c.acquire(deadline_ms=5000, objective="min_latency")
        (row,) = [i for i, pt in enumerate(table.points) if pt.threads == first.point.mapping.threads
                  and pt.groups == first.k]
        faster = float(table.latency_ms[row]) / 3  # the application's engine is 3x faster than the table
        c.release(first, faster)
        for _ in range(6):
            lease = c.acquire(deadline_ms=5000, objective="min_latency")
            assert lease.k == first.k and lease.point.mapping == first.point.mapping
            c.release(lease, faster)
        last = c.acquire(deadline_ms=5000, objective="min_latency")
        c.release(last, faster, ok=False)
    group = int(table.group_of[row])
    assert float(d.machine.planner.multiplier()[group]) < 0.5
    # the prediction is the run plus the time around a lease (grant to release), learned apart
    around = d.machine.planner.lease_dispatch_ms
    assert 0 < around < 50 and last.predicted.latency_ms - around < 0.3 * first.predicted.latency_ms


def test_the_lease_context_manager_releases_with_the_reported_or_the_measured_time(daemon):
    _d, pair, meta = daemon
    with client(pair) as c:
        with c.lease(deadline_ms=5000, model="quick") as lease:
            assert 1 <= lease.k <= meta.groups
            lease.report(2.5)
        assert lease.released is not None and lease.released.measured.latency_ms == 2.5
        assert lease.released.budget_met
        with c.lease(deadline_ms=5000) as unreported:
            time.sleep(0.02)
        assert unreported.released.measured.latency_ms >= 20.0  # the block's wall time
        assert unreported.released.total_ms >= unreported.released.measured.latency_ms


def test_a_block_that_raises_releases_as_failed_and_the_exception_goes_on(daemon):
    d, pair, _meta = daemon
    with client(pair) as c:
        with pytest.raises(RuntimeError, match="engine"), c.lease(deadline_ms=5000) as lease:
            raise RuntimeError("the engine failed")
        assert lease.released is not None and not lease.released.budget_met
        assert d.served == 0  # a failed run is no inference served
        with pytest.raises(GovernorError) as err:
            c.release(lease, 1.0)
        assert err.value.code == "bad_request" and "released already" in err.value.message
        assert c.advise(deadline_ms=5000).point.k >= 1  # the board is free again


def test_bad_releases_get_typed_errors_and_the_daemon_keeps_serving(daemon):
    _d, pair, meta = daemon
    with client(pair) as owner, client(pair) as other:
        lease = owner.acquire(deadline_ms=5000, ttl_ms=100)
        with pytest.raises(GovernorError) as err:
            other.release(lease, 3.0)
        assert err.value.code == "bad_request" and "another client" in err.value.message
        with pytest.raises(GovernorError) as err:
            owner.release("Lnosuchlease", 3.0)
        assert err.value.code == "bad_request" and "unknown lease id" in err.value.message
        with pytest.raises(GovernorError) as err:  # more than 10 ttls: refused, nothing learned, still leased
            owner.release(lease, 5000.0)
        assert err.value.code == "bad_request" and "ttl" in err.value.message
        end = pair.connect()
        for latency in ("NaN", "-1.0", "0", "Infinity", "1e300"):
            header = (f'{{"v":"1.1","type":"release","id":"raw-{len(latency)}","lease_id":"{lease.lease_id}",'
                      f'"latency_ms":{latency}}}').encode()
            end.send([header])
            (reply, _) = p.decode_reply(end.recv(20000))
            assert reply.type == "error" and reply.code == "bad_request", (latency, reply)
        released = owner.release(lease, 3.0)  # the owner's own release still goes through
        assert released.measured.latency_ms == 3.0
        with pytest.raises(GovernorError) as err:
            owner.release(lease, 3.0)
        assert err.value.code == "bad_request" and "released already" in err.value.message
        late = owner.acquire(deadline_ms=5000, ttl_ms=50)
        time.sleep(0.2)
        with pytest.raises(GovernorError) as err:
            owner.release(late, 3.0)
        assert err.value.code == "expired" and "expired after 50 ms" in err.value.message
        assert "acquire again" in err.value.message
        digits = np.zeros((1, *meta.input_shape), np.float32)
        assert owner.infer(digits, deadline_ms=5000).point.k >= 1  # still serving, and the board is free
        assert other.status().board == "host"


def test_other_messages_are_served_while_a_lease_holds_the_board_and_acquires_queue(daemon):
    _d, pair, _meta = daemon
    with client(pair) as first, client(pair) as second:
        lease = first.acquire(deadline_ms=5000, ttl_ms=10_000)
        got = []
        waiter = threading.Thread(target=lambda: got.append(second.acquire(deadline_ms=5000)))
        waiter.start()
        time.sleep(0.2)
        status = first.status()
        assert status.served == 0 and status.leases == 1 and status.streams == 0  # answered at once
        assert first.advise(deadline_ms=5000).point.k >= 1
        assert got == [] and waiter.is_alive()  # the second lease waits for the board
        first.release(lease, 4.0)
        waiter.join(10)
        assert len(got) == 1 and got[0].lease_id != lease.lease_id
        second.release(got[0], 4.0)
        assert first.status().leases == 0


def test_a_1_0_header_for_an_acquire_is_read_and_the_lease_fields_are_the_1_1_ones(daemon):
    _d, pair, _meta = daemon
    end = pair.connect()
    end.send([b'{"v":"1.0","type":"acquire","id":"old-1","budget":{"deadline_ms":5000.0}}'])
    header = json.loads(bytes(end.recv(20000)[0]))
    assert header["type"] == "lease" and header["id"] == "old-1" and header["lease_id"]


# -- a client killed mid-lease leaves no setpoint behind --------------------------------------------
class Socket:
    """A transport holding what the test put there; records every reply and where it went."""

    def __init__(self):
        self.waiting, self.sent = [], []

    def recv(self, timeout_ms):
        return self.waiting.pop(0) if self.waiting else None

    def send(self, identity, frames):
        self.sent.append((identity, p.decode_reply([memoryview(bytes(f)) for f in frames])[0]))

    def publish(self, frames):
        pass

    def is_empty(self):
        return not self.waiting

    def put(self, identity, frames):
        self.waiting.append((identity, [memoryview(bytes(f)) for f in frames]))


class NoEngine(Backend):
    """A lease runs in the application: the daemon's own engine is never asked."""

    def run(self, batch, point):
        raise AssertionError("a lease must not run the daemon's engine")


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_client_killed_mid_lease_leaves_no_setpoint_behind_after_expiry(tmp_path, quick_model):
    from governor.core.types import OperatingPoint, Setpoints
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
        socket.put(b"doomed", p.encode_request(p.AcquireRequest(id="x-1", budget=p.Budget(deadline_ms=5.0),
                                                                ttl_ms=200.0)))
        d.step()
        (identity, lease), = socket.sent
        assert identity == b"doomed" and lease.type == "lease", lease
        pinned = sorted(k for k in set(baseline) | set(tree.snapshot_bytes())
                        if baseline.get(k) != tree.snapshot_bytes().get(k))
        assert pinned, "the lease's setpoints were not written"
        # The client dies here: nothing more comes from it. Until the lease expires the clocks stay pinned.
        clock.now += 0.1
        d.step()
        assert tree.snapshot_bytes() != baseline and d.machine.busy
        for _ in range(40):  # expiry, the idle grace, parking, handing back: a couple of seconds of loop
            clock.now += 0.05
            d.step()
        assert not d.machine.busy
        after = tree.snapshot_bytes()
        assert sorted(k for k in set(baseline) | set(after) if baseline.get(k) != after.get(k)) == []
        # A release that comes after all is told the lease expired; the daemon goes on serving.
        socket.put(b"doomed", p.encode_request(p.ReleaseRequest(id="x-2", lease_id=lease.lease_id, latency_ms=3.0)))
        d.step()
        _identity, late = socket.sent[-1]
        assert late.type == "error" and late.code == "expired" and "expired after 200 ms" in late.message
    finally:
        executor.close()
        target.close()
