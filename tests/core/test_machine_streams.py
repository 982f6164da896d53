"""Streams in the pure machine: a standing per-frame budget whose point is set once and pushed when it changes.

A stream is queued like a lease and opened at its turn (its clocks applied, ``Push`` answers it); the
board is not held busy after that, but the clocks are: requests and leases choose among the rows of the
streams' setpoints, and the idle policy waits until the last stream ends. Reported frames teach the
planner like runs, and a point that no longer fits is replaced and pushed.
"""

from test_core_machine import F, machine, of, run_one

from governor.core.decision import machine as m
from governor.core.decision.optimiser import Demand, Objective


def open_stream(g: m.GovernorMachine, t: float, key, budget: Demand, period_ms: float = 33.0, **kw) -> m.Push:
    assert g.handle(m.Request(t, key, budget, stream=True, period_ms=period_ms, **kw)) == []
    actions = g.handle(m.Ready(t))
    for apply in of(actions, m.Apply):
        g.handle(m.Applied(t, apply, dict(apply.setpoints.hz), took_ms=1.0))
    assert not of(actions, m.Run) and not of(actions, m.Grant)
    (push,) = [a for a in of(actions, m.Push) if a.key == key]
    assert push.opened and push.seq == 0
    return push


def test_a_stream_opens_at_its_turn_with_its_clocks_applied_and_holds_nothing_busy():
    g = machine()
    g.handle(m.Request(0.0, "s", Demand(), stream=True, period_ms=20.0))
    actions = g.handle(m.Ready(0.0))
    assert [type(a) for a in actions] == [m.Apply, m.Push]
    apply, push = actions
    assert apply.setpoints == push.decision.point.setpoints and push.opened
    assert not g.busy and g.pending == 0 and list(g.streams) == ["s"]
    # no deadline given: a frame must end within the period, and min energy picks the slowest point that does
    assert g.streams["s"].budget.deadline_ms == 20.0
    assert push.decision.latency_ms <= 20.0
    assert g.handle(m.Ready(0.001)) == []  # nothing more to do: the application runs the frames


def test_frames_slower_than_predicted_move_the_stream_to_a_faster_point_and_push_it():
    g = machine(residual_alpha=0.5)
    first = open_stream(g, 0.0, "s", Demand(deadline_ms=20.0))
    assert first.decision.point.setpoints.hz["cpu"] < F[-1]
    slow = first.decision.latency_ms * 2.5  # the application's engine is far slower than the table
    assert g.handle(m.Reported(0.1, "s", 0, (slow,) * 10)) == []  # learned at the next event, not answered
    actions = g.handle(m.Ready(0.1))
    (push,) = of(actions, m.Push)
    assert push.key == "s" and push.seq == 1 and not push.opened
    assert push.decision.latency_ms <= 20.0 and push.decision.index != first.decision.index
    if push.decision.point.setpoints != first.decision.point.setpoints:
        assert of(actions, m.Apply)[0].setpoints == push.decision.point.setpoints
    stream = g.streams["s"]
    assert stream.frames == 10 and stream.met == (10 if slow <= 20.0 else 0)
    assert g.handle(m.Ready(0.11)) == []  # the same point again: nothing to push


def test_frames_at_an_unknown_point_are_counted_not_learned():
    g = machine(residual_alpha=0.5)
    first = open_stream(g, 0.0, "s", Demand(deadline_ms=20.0))
    before = g.planner.multiplier().copy()
    g.handle(m.Reported(0.1, "s", 7, (first.decision.latency_ms * 3,) * 5, failed=2))
    assert g.handle(m.Ready(0.1)) == []
    assert (g.planner.multiplier() == before).all()
    assert g.streams["s"].frames == 5 and g.streams["s"].failed == 2


def test_requests_and_leases_run_at_the_clocks_the_stream_holds():
    g = machine()
    push = open_stream(g, 0.0, "s", Demand(deadline_ms=30.0))  # min energy: low clocks
    held = push.decision.point.setpoints
    assert held.hz["cpu"] < F[-1]
    g.handle(m.Request(0.01, "fast", Demand(objective=Objective.MIN_LATENCY)))
    actions = g.handle(m.Ready(0.01))
    assert not of(actions, m.Apply)  # the top clock would be faster, but the stream holds these
    (run,) = of(actions, m.Run)
    assert run.decision.point.setpoints == held
    g.handle(m.Outcome(0.02, "fast", 5.0))
    (advice,) = g.handle(m.Request(0.03, "adv", Demand(objective=Objective.MIN_LATENCY), advise=True))
    assert advice.decision.point.setpoints == held
    g.handle(m.Request(0.03, "L", Demand(objective=Objective.MIN_LATENCY), lease=True))
    (grant,) = of(g.handle(m.Ready(0.03)), m.Grant)
    assert grant.decision.point.setpoints == held


def test_the_idle_policy_waits_for_the_last_stream_then_releases():
    g = machine(idle_clocks="release", park_s=0.0)
    open_stream(g, 0.0, "s", Demand(deadline_ms=30.0))
    g.handle(m.Request(0.01, "r", Demand(deadline_ms=100.0)))
    run_one(g, 0.01)
    for t in (0.05, 1.0, 10.0):  # long past the grace: the stream still holds the clocks
        assert g.handle(m.Ready(t)) == []
    assert g.handle(m.StreamClosed(10.0, "s")) == []
    assert g.streams == {} and g.wake_at() is not None
    (release,) = g.handle(m.Ready(10.1))
    assert isinstance(release, m.Release) and release.domains == ("cpu",)


def test_a_silent_stream_expires_like_a_close():
    g = machine(idle_clocks="lowest")
    open_stream(g, 0.0, "s", Demand(deadline_ms=30.0))
    assert g.handle(m.Expired(2.0, "s")) == []
    assert g.streams == {}
    (park,) = g.handle(m.Ready(2.1))
    assert isinstance(park, m.Apply) and park.setpoints.hz == {"cpu": F[0]}


def test_two_streams_share_the_clocks_the_more_demanding_one_needs():
    g = machine()
    easy = open_stream(g, 0.0, "easy", Demand(deadline_ms=200.0))
    assert easy.decision.point.setpoints.hz["cpu"] == F[0]
    g.handle(m.Request(0.01, "hard", Demand(deadline_ms=6.0), stream=True, period_ms=10.0))
    actions = g.handle(m.Ready(0.01))
    (apply,) = of(actions, m.Apply)
    pushes = {p.key: p for p in of(actions, m.Push)}
    assert pushes["hard"].opened and pushes["hard"].decision.latency_ms <= 6.0
    shared = pushes["hard"].decision.point.setpoints
    assert apply.setpoints == shared and shared.hz["cpu"] > F[0]
    # the easy stream now runs at the shared clocks: its point changed, so it is pushed
    assert pushes["easy"].seq == 1 and pushes["easy"].decision.point.setpoints == shared
    g.handle(m.Applied(0.01, apply, dict(apply.setpoints.hz), took_ms=1.0))
    g.handle(m.StreamClosed(0.5, "hard"))
    after = g.handle(m.Ready(0.5))  # the easy one alone again: back to its own low clocks
    assert of(after, m.Apply)[0].setpoints.hz["cpu"] == F[0]
    assert of(after, m.Push)[0].key == "easy" and of(after, m.Push)[0].seq == 2


def test_a_strict_stream_no_point_meets_is_refused_and_too_many_streams_are_unavailable():
    g = machine()
    g.handle(m.Request(0.0, "tight", Demand(deadline_ms=0.01), stream=True, period_ms=10.0, strict=True))
    (refuse,) = g.handle(m.Ready(0.0))
    assert isinstance(refuse, m.Refuse) and refuse.code == "infeasible" and g.streams == {}
    for i in range(m.MAX_STREAMS):
        open_stream(g, 0.01 * i, i, Demand(deadline_ms=100.0))
    (full,) = g.handle(m.Request(1.0, "one more", Demand(deadline_ms=100.0), stream=True, period_ms=10.0))
    assert isinstance(full, m.Refuse) and full.code == "unavailable" and "streams are open" in full.message


def test_a_stream_with_its_own_latencies_is_planned_with_them():
    g = machine()
    fast = open_stream(g, 0.0, "own", Demand(deadline_ms=6.0), expected_ms=(0.5, 1.0, 1.5, 2.0))
    plain = open_stream(machine(), 0.0, "plain", Demand(deadline_ms=6.0))
    # an engine 4x faster than the table reaches 6 ms at a lower clock (or more groups) than the table would
    assert (fast.decision.point.setpoints.hz["cpu"] < plain.decision.point.setpoints.hz["cpu"]
            or fast.decision.point.groups > plain.decision.point.groups)
