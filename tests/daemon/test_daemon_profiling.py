"""Profiling a model through the drivers on a simulated board, and the decision table it yields."""

import numpy as np
import pytest
from daemon_build import make_daemon, stamp_requests

from governor.core.perf.space import ProfilePoint
from governor.daemon.backend import SimBackend
from governor.daemon.profiling import BoardSource, board_space, board_table, mapping_name
from governor.daemon.target import open_target
from governor.sim import SimExecutor, workload_from_meta


def _open_nano(model):
    from governor.core.modelmeta import read_model_meta

    meta = read_model_meta(model.read_bytes())
    target = open_target("sim:jetson-nano", clock="virtual")
    backend = SimBackend(SimExecutor(target.sim, workload_from_meta(meta)), None, len(meta.classes))
    return target, backend, meta


@pytest.fixture
def nano(quick_model):
    target, backend, meta = _open_nano(quick_model)
    yield target, backend, meta
    target.close()


@pytest.fixture(scope="module")
def nano_profile(quick_model, tmp_path_factory):
    """One 48-point profile of the quick model on a fresh simulated Nano, saved as the daemon saves it.

    Profiling through the fake sysfs tree takes 2 s (10 s on a busy VM); the tests below that need a
    table, not the profiling, load this file instead of profiling again, as a daemon does at its second
    start. Profiling itself is checked by the first tests, which measure their own."""
    target, backend, meta = _open_nano(quick_model)
    cache = tmp_path_factory.mktemp("nano-profile") / "profile.json"
    try:
        board_table(target, backend, meta, say=lambda _: None, cache=cache, max_points=48)
    finally:
        target.close()
    return cache


@pytest.fixture
def profiled(nano_profile):
    """``profiled(target, backend, meta)``: a fresh copy of the shared 48-point table, loaded from its
    file (``pinned``: loaded or refused, never measured again)."""
    return lambda target, backend, meta: board_table(target, backend, meta, say=lambda _: None, cache=nano_profile,
                                                     pinned=True)


def test_space_varies_only_the_units_clock_and_memory(nano):
    target, _backend, meta = nano
    hz = {n: tuple(d.available_hz()) for n, d in target.board.domains.items()}
    space = board_space(target.spec, hz, meta, cpu_count=4)
    assert set(space.mappings) == {"a57/1", "a57/2", "a57/4", "gpu/1"}
    gpu_rows = space.grid[space.mapping_of == space.mappings.index("gpu/1")]
    cpu_col = space.domains.index("cpu")
    assert np.all(gpu_rows[:, cpu_col] == min(hz["cpu"]))  # the idle CPU cluster stays at its minimum
    assert len(np.unique(gpu_rows[:, space.domains.index("gpu")])) == len(hz["gpu"])
    assert mapping_name("gpu", 1) == "gpu/1"


def test_profiled_table_predicts_held_out_points(nano, tmp_path):
    target, backend, meta = nano
    cache = tmp_path / "profile.json"
    measured = board_table(target, backend, meta, say=lambda _: None, cache=cache, max_points=48)
    table = measured.table
    assert measured.energy_measured and table.simulated and cache.exists()
    source = BoardSource(target.board, backend, np.zeros((1, *meta.input_shape), np.float32), reps=3)
    rng = np.random.default_rng(0)
    errors = []
    for i in rng.choice(len(table), 15, replace=False):
        op = table.points[i]
        m = source.measure(ProfilePoint(mapping_name(op.unit, op.threads), op.setpoints, op.groups))
        errors.append(abs(table.latency_ms[i] / m.latency_ms - 1))
    assert np.mean(errors) < 0.08, errors
    again = board_table(target, backend, meta, say=lambda _: None, cache=cache)  # loaded, not re-measured
    assert np.allclose(again.table.latency_ms, table.latency_ms)


def test_faster_clocks_predict_lower_latency(nano, tmp_path, profiled):
    target, backend, meta = nano
    table = profiled(target, backend, meta).table
    rows = [i for i, p in enumerate(table.points) if p.unit == "gpu" and p.groups == meta.groups
            and p.setpoints.hz["emc"] == max(p2.setpoints.hz["emc"] for p2 in table.points)]
    by_gpu = sorted(rows, key=lambda i: table.points[i].setpoints.hz["gpu"])
    assert table.latency_ms[by_gpu[0]] > table.latency_ms[by_gpu[-1]]


@pytest.mark.parametrize("idle", ["keep", "lowest", "release", "park"])
def test_idle_clocks_policy(nano, tmp_path, idle, profiled):
    from governor.core import protocol as p
    from governor.transport.inproc import InprocPair

    target, backend, meta = nano
    table = profiled(target, backend, meta)
    pair = InprocPair()
    hz = {n: tuple(d.available_hz()) for n, d in target.board.domains.items()}
    daemon = make_daemon(spec=target.spec, board=target.board, backend=backend, meta=meta, model_name="m",
                         table=table, server=pair.server, clock=target.sim.clock, simulated=True,
                         idle_clocks="release" if idle == "park" else idle, table_hz=hz,
                         park_s=0.2 if idle == "park" else 0.0)
    end = pair.connect()
    end.send(p.encode_request(p.InferRequest(id="r1", budget=p.Budget(objective="min_latency")),
                              {"x": np.zeros((1, *meta.input_shape), np.float32)}))
    ident, frames = pair.server.recv(1000)
    daemon.receive(ident, frames)
    daemon.ready()
    reply, _ = p.decode_reply(end.recv(1000))
    unit_domain = target.spec.unit(reply.point.mapping.unit).domain
    pinned = reply.point.setpoints_hz[unit_domain]
    # The idle policy waits a moment for the next request (see the next test) before it touches the clocks.
    assert target.board.domains[unit_domain].read().max_hz == pinned
    target.sim.advance(0.003)
    daemon.ready(target.sim.clock())
    now = target.board.domains[unit_domain].read().max_hz
    reading = target.board.domains[unit_domain].read()
    if idle == "keep":
        assert now == pinned and daemon.machine.planner.current_setpoints is not None
    elif idle == "lowest":
        assert now == min(hz[unit_domain]) < pinned and daemon.machine.planner.current_setpoints is None
    elif idle == "park":  # nobody else busy: parked at the bottom, handed back at the first tick after park_s
        assert now == min(hz[unit_domain]) and daemon.machine.planner.current_setpoints is None
        daemon.tick(target.sim.clock())
        assert target.board.domains[unit_domain].read().max_hz == now  # not yet
        target.sim.advance(0.25)
        daemon.tick(target.sim.clock())
        reading = target.board.domains[unit_domain].read()
        assert (reading.min_hz, reading.max_hz) == (min(hz[unit_domain]), max(hz[unit_domain]))
    else:  # handed back to the kernel governor within the limits found at start
        assert (reading.min_hz, reading.max_hz) == (min(hz[unit_domain]), max(hz[unit_domain]))
        assert daemon.machine.planner.current_setpoints is None
    assert daemon.machine.planner.idle_floor_mw == pytest.approx(table.idle_power_mw) and table.idle_power_mw > 500
    # The limits we parked or released at are ours, not a thermal cap: the next request may go fast again.
    daemon.tick(target.sim.clock())
    assert daemon.machine.planner.caps_hz == {}
    end.send(p.encode_request(p.InferRequest(id="r2", budget=p.Budget(objective="min_latency")),
                              {"x": np.zeros((1, *meta.input_shape), np.float32)}))
    daemon.receive(*pair.server.recv(1000))
    daemon.ready()
    again, _ = p.decode_reply(end.recv(1000))
    assert again.point.setpoints_hz[unit_domain] == pinned


def test_a_request_within_the_idle_grace_finds_the_clocks_as_the_last_run_left_them(nano, profiled):
    """Parking right after a reply made the sequential client's next request wait for the writes (about
    5 ms on a simulated tree) and then pin again: a 5 ms request was refused after 'waiting 6.7 ms'."""
    from governor.core import protocol as p
    target, backend, meta = nano
    table = profiled(target, backend, meta)
    server = _ScriptedServer(target.sim.clock)
    hz = {n: tuple(d.available_hz()) for n, d in target.board.domains.items()}
    daemon = make_daemon(spec=target.spec, board=target.board, backend=backend, meta=meta, model_name="m",
                         table=table, server=server, clock=target.sim.clock, simulated=True,
                         idle_clocks="lowest", table_hz=hz)
    writes = []
    apply = target.board.apply
    target.board.apply = lambda setpoints: (writes.append(dict(setpoints.hz)), apply(setpoints))[1]
    x = {"x": np.zeros((1, *meta.input_shape), np.float32)}

    def ask(rid):
        server.waiting.append((rid.encode(), p.encode_request(p.InferRequest(
            id=rid, budget=p.Budget(objective="min_latency")), x)))

    ask("a")
    daemon.step()
    assert len(writes) == 1  # pinned for "a"; not parked yet
    target.sim.advance(0.0003)
    ask("b")  # the client asks again 0.3 ms after the reply
    daemon.step()
    assert [r.id for _, r in server.sent] == ["a", "b"] and len(writes) == 1  # same point, nothing written
    target.sim.advance(0.003)
    daemon.step()  # nobody asked within the grace: now the clocks are parked
    assert len(writes) == 2 and all(hz_ == min(hz[n]) for n, hz_ in writes[1].items())


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


class _FakeBoard:
    """Just enough of a drivers Board: apply, sample, a thermal zone that cools, a power sensor."""

    def __init__(self, clock, hot_until):
        from types import SimpleNamespace

        self.clock, self.hot_until = clock, hot_until
        self.power = [SimpleNamespace(update_interval_s=0.264)]
        self.spec = SimpleNamespace(thermal=[SimpleNamespace(type="cpu-thermal", passive_trip_c=90.0)])

    def apply(self, setpoints):
        return {}

    def sample(self):
        from governor.core.types import Observation

        temp = 95.0 if self.clock() < self.hot_until else 50.0
        return Observation(t=self.clock(), temps_c={"cpu-thermal": temp}, total_power_mw=2000.0)


def test_board_source_waits_for_cool_down_spans_sensor_updates_and_drops_outliers():
    from types import SimpleNamespace

    from governor.core.types import Setpoints

    clock = _Clock()
    board = _FakeBoard(clock, hot_until=3.0)
    import itertools

    runs = itertools.chain([1.0] * 6, [30.0], itertools.repeat(1.0))

    class Backend:
        simulated = False

        def run(self, batch, op):
            clock.t += 0.01
            return SimpleNamespace(latency_ms=next(runs), energy_mj=None)

    src = BoardSource(board, Backend(), np.zeros((1, 1, 8, 8), np.float32), reps=3, clock=clock, sleep=clock.sleep)
    assert src.min_window_s == pytest.approx(5 * 0.264)  # the INA231-like sensor needs a longer window
    m = src.measure(ProfilePoint("a57/1", Setpoints({"cpu": 1}), 1))
    assert clock.t >= 3.0  # waited until the zone was 10 °C below its trip
    assert m.latency_ms == pytest.approx(1.0)  # the preempted 30 ms run did not move the median
    assert m.energy_mj == pytest.approx(2000.0 * 1.0 / 1000.0)


class _ScriptedServer:
    """A transport whose socket holds what the test put there; records what the daemon sent back."""

    def __init__(self, clock):
        self.clock, self.waiting, self.sent = clock, [], []

    def recv(self, timeout_ms):
        return self.waiting.pop(0) if self.waiting else None

    def send(self, identity, frames):
        self.sent.append((identity, p_decode(frames)))

    def publish(self, frames):
        pass

    def is_empty(self):
        return not self.waiting


def p_decode(frames):
    from governor.core import protocol as p

    return p.decode_reply(frames)[0]


def test_a_step_takes_every_waiting_request_so_edf_sees_the_later_tighter_one(nano, tmp_path, profiled):
    """Requests that came in during a run are all taken before the next one; the tighter deadline goes first,
    and each is stamped with the time the socket was last seen empty (it can only have waited longer)."""
    from governor.core import protocol as p
    target, backend, meta = nano
    table = profiled(target, backend, meta)
    clock = target.sim.clock
    server = _ScriptedServer(clock)
    daemon = make_daemon(spec=target.spec, board=target.board, backend=backend, meta=meta, model_name="m",
                         table=table, server=server, clock=clock, simulated=True)
    daemon.step()  # an empty poll: the socket is known empty now
    seen_empty = clock()
    target.sim.advance(0.05)  # the daemon was busy; two requests arrived meanwhile
    x = {"x": np.zeros((1, *meta.input_shape), np.float32)}
    for rid, deadline in (("loose", 500.0), ("tight", 80.0)):
        server.waiting.append((rid.encode(), p.encode_request(p.InferRequest(id=rid, budget=p.Budget(
            deadline_ms=deadline)), x)))
    daemon.step()
    assert [ident for ident, _ in server.sent] == [b"tight"]
    assert daemon.machine.pending == 1
    (queued,) = daemon.machine.queued()
    assert queued.arrival_t == pytest.approx(seen_empty)
    daemon.step()
    assert [ident for ident, _ in server.sent] == [b"tight", b"loose"]


def test_a_request_sent_after_a_reply_is_not_charged_the_run_before_it(nano, profiled):
    """A client that waits on each reply asks again only after it: its next request arrived after that
    reply, not at the last poll before the run (which made every tight deadline look infeasible)."""
    from governor.core import protocol as p
    target, backend, meta = nano
    table = profiled(target, backend, meta)
    clock = target.sim.clock
    server = _ScriptedServer(clock)
    daemon = make_daemon(spec=target.spec, board=target.board, backend=backend, meta=meta, model_name="m",
                         table=table, server=server, clock=clock, simulated=True)
    stamps = []
    stamp_requests(daemon, stamps)
    x = {"x": np.zeros((1, *meta.input_shape), np.float32)}

    def ask(rid):
        server.waiting.append((rid.encode(), p.encode_request(p.InferRequest(id=rid, budget=p.Budget(
            deadline_ms=500.0)), x)))

    daemon.step()
    ask("first")
    daemon.step()  # takes it and runs it
    replied = clock()
    assert [ident for ident, _ in server.sent] == [b"first"] and replied > stamps[0]
    target.sim.advance(0.002)
    ask("second")
    daemon.step()
    assert stamps[1] >= replied - 1e-9  # not stamped before the first run
    # One that comes in during a run still gets the last time the socket was seen empty, before the run.
    run = backend.run
    backend.run = lambda batch, point: (ask("during"), run(batch, point))[1]
    ask("third")
    before_run = clock()
    daemon.step()  # runs "third"; "during" is waiting when its reply goes out
    backend.run = run
    daemon.step()
    assert [ident for ident, _ in server.sent][-2:] == [b"third", b"during"]
    assert stamps[3] <= before_run


def test_a_client_that_answers_faster_than_telemetry_is_not_charged_the_run(nano, profiled):
    """A sequential client often sends its next request before the daemon has published the reply's
    telemetry; it was then stamped at the poll before the whole run, and a strict 48 ms request on an
    idle simulated Nano was refused as infeasible (issue: budgets that are true)."""
    from governor.core import protocol as p
    target, backend, meta = nano
    table = profiled(target, backend, meta)
    clock = target.sim.clock
    server = _ScriptedServer(clock)
    x = {"x": np.zeros((1, *meta.input_shape), np.float32)}
    asked = iter(range(1, 6))

    def answered_at_once(identity, frames):  # the client's next request lands as the reply leaves
        _ScriptedServer.send(server, identity, frames)
        n = next(asked, None)
        if n is not None:
            req = p.InferRequest(id=f"r{n}", budget=p.Budget(deadline_ms=48.0), strict=True)
            server.waiting.append((f"r{n}".encode(), p.encode_request(req, x)))

    server.send = answered_at_once
    daemon = make_daemon(spec=target.spec, board=target.board, backend=backend, meta=meta, model_name="m",
                         table=table, server=server, clock=clock, simulated=True, idle_clocks="keep")
    stamps, runs = [], []
    run = backend.run
    stamp_requests(daemon, stamps)

    def slow_run(batch, point):  # each run takes 40 ms of the daemon's clock: with 48 ms asked, 8 ms is left
        target.sim.advance(0.040)
        runs.append(clock())
        return run(batch, point)

    backend.run = slow_run
    server.waiting.append((b"r0", p.encode_request(p.InferRequest(id="r0", budget=p.Budget(deadline_ms=48.0),
                                                                  strict=True), x)))
    for _ in range(12):
        daemon.step()
    replies = [reply for _, reply in server.sent]
    assert [r.id for r in replies] == [f"r{n}" for n in range(6)]
    assert all(r.type == "infer" for r in replies), [getattr(r, "message", "") for r in replies]
    assert all(stamp >= ran - 1e-9 for stamp, ran in zip(stamps[1:], runs, strict=False))


def test_a_request_that_comes_during_a_busy_poll_is_stamped_when_the_poll_returned(nano, profiled):
    """A busy poll returns as soon as a message comes, so 'it woke us' cannot tell a message that came
    during the poll from one that was waiting; an empty socket as the poll began can, and then the
    message arrived as the poll returned."""
    from governor.core import protocol as p
    target, backend, meta = nano
    table = profiled(target, backend, meta)
    clock = target.sim.clock
    server = _ScriptedServer(clock)
    daemon = make_daemon(spec=target.spec, board=target.board, backend=backend, meta=meta, model_name="m",
                         table=table, server=server, clock=clock, simulated=True)
    stamps = []
    stamp_requests(daemon, stamps)
    daemon.step()
    last_seen_empty = clock()
    target.sim.advance(0.05)  # the daemon was busy with other things; nothing came meanwhile
    request = (b"c", p.encode_request(p.InferRequest(id="c", budget=p.Budget(deadline_ms=500.0)),
                                      {"x": np.zeros((1, *meta.input_shape), np.float32)}))
    recv = server.recv

    def comes_during_the_poll(timeout_ms):
        target.sim.advance(0.0003)  # 300 us into a spinning poll (under the 0.5 ms "it woke us" rule)
        server.waiting.append(request)
        server.recv = recv
        return recv(timeout_ms)

    server.recv = comes_during_the_poll
    poll_began = clock()
    daemon.step()
    # Stamped as the poll returned, not when it began: the 300 us of spinning were not the request's wait.
    assert stamps and stamps[0] >= poll_began + 0.0003 - 1e-9 and poll_began > last_seen_empty + 0.04


def test_negative_switch_ms_measures_what_a_change_of_setpoints_costs(nano, profiled):
    from governor.core import protocol as p
    target, backend, meta = nano
    table = profiled(target, backend, meta)
    real_apply = target.board.apply
    t = [0.0]

    def slow_apply(setpoints):  # a board whose writes take 3 ms (the daemon's clock is ours here)
        t[0] += 0.003
        return real_apply(setpoints)

    target.board.apply = slow_apply
    server = _ScriptedServer(None)
    daemon = make_daemon(spec=target.spec, board=target.board, backend=backend, meta=meta, model_name="m",
                         table=table, server=server, clock=lambda: t[0], simulated=True, switch_ms=-1.0,
                         idle_clocks="keep")
    assert daemon.machine.planner.optimiser.switch_ms == 0.0
    x = {"x": np.zeros((1, *meta.input_shape), np.float32)}
    server.waiting.append((b"a", p.encode_request(p.InferRequest(id="a", budget=p.Budget(objective="min_latency")), x)))
    daemon.step()
    assert daemon.machine.planner.optimiser.switch_ms == pytest.approx(3.0)


def test_idle_power_is_measured_by_the_meter_run_energy_comes_from(quick_model):
    # The XU3's INA231 sensors see only the SoC rails; simulated run energy is whole-board. The idle power
    # a profile records must be the whole-board one, the same terms as its run energies.
    from governor.core.modelmeta import read_model_meta

    meta = read_model_meta(quick_model.read_bytes())
    target = open_target("sim:odroid-xu3", clock="virtual")
    try:
        backend = SimBackend(SimExecutor(target.sim, workload_from_meta(meta)), None, len(meta.classes))
        source = BoardSource(target.board, backend, np.zeros((1, *meta.input_shape), np.float32),
                             sleep=target.sim.advance, clock=target.sim.clock)
        rails = target.board.sample().total_power_mw
        idle = source.idle_power_mw()
        assert rails is not None and idle == pytest.approx(target.sim.truth().total_mw, rel=0.02)
        assert idle > rails + 500  # the board beyond the SoC rails draws watts the sensors never see
    finally:
        target.close()


def test_host_backend_power_is_the_mean_of_its_energy_counter():
    from governor.daemon.backend import HostBackend
    from governor.drivers.catalogue import load_board

    counter = iter([100.0, 150.0, 40.0])
    backend = HostBackend(object(), load_board("jetson-nano"), energy_counter=lambda: next(counter))
    assert backend.power_mw() is None  # the first call starts the interval
    assert backend.power_mw() > 0.0  # 50 mJ over the few microseconds between the calls
    assert backend.power_mw() is None  # the counter wrapped: no figure rather than a negative one


def test_clocks_are_not_parked_while_another_program_is_busy(nano, profiled):
    # Parking at the lowest clocks would hold a co-runner back: with others busy they go straight back.
    from governor.core import protocol as p
    from governor.transport.inproc import InprocPair

    target, backend, meta = nano
    table = profiled(target, backend, meta)
    pair = InprocPair()
    hz = {n: tuple(d.available_hz()) for n, d in target.board.domains.items()}
    daemon = make_daemon(spec=target.spec, board=target.board, backend=backend, meta=meta, model_name="m",
                         table=table, server=pair.server, clock=target.sim.clock, simulated=True,
                         table_hz=hz, park_s=10.0)
    end = pair.connect()
    end.send(p.encode_request(p.InferRequest(id="r1", budget=p.Budget(objective="min_latency")),
                              {"x": np.zeros((1, *meta.input_shape), np.float32)}))
    daemon.receive(*pair.server.recv(1000))
    daemon.machine.planner.others_util = {"a57": 0.5}  # as a tick would have seen it
    daemon.ready()
    reply, _ = p.decode_reply(end.recv(1000))
    target.sim.advance(0.003)  # past the idle grace
    daemon.ready(target.sim.clock())
    domain = target.spec.unit(reply.point.mapping.unit).domain
    reading = target.board.domains[domain].read()
    assert (reading.min_hz, reading.max_hz) == (min(hz[domain]), max(hz[domain]))
