"""Leases in the pure machine: an application's own engine runs the point the machine chose and set.

A lease is queued like an infer (EDF, the same budget check and planner), is granted at its turn after
its setpoints are applied, holds the board until its release (the application's latency, learned like an
in-process run) or its expiry (nothing learned, the idle policy follows).
"""

from test_core_machine import FACTS, machine, of, run_one, table

from governor.core.decision import machine as m
from governor.core.decision.optimiser import Demand, Objective


def grant(g: m.GovernorMachine, t: float) -> m.Grant:
    """Ready -> (Apply ->) Grant; the Apply's read-back goes back as the driver's would."""
    actions = g.handle(m.Ready(t))
    for apply in of(actions, m.Apply):
        g.handle(m.Applied(t, apply, dict(apply.setpoints.hz), took_ms=1.0))
    assert not of(actions, m.Run)
    (granted,) = of(actions, m.Grant)
    return granted


def test_a_queued_lease_gets_its_clocks_applied_then_a_grant_not_a_run():
    g = machine()
    assert g.handle(m.Request(0.0, "L", Demand(objective=Objective.MIN_LATENCY), lease=True)) == []
    assert g.pending == 1 and not g.busy
    actions = g.handle(m.Ready(0.0))
    assert [type(a) for a in actions] == [m.Apply, m.Grant]  # the clocks first, then the application's turn
    apply, granted = actions
    assert granted.key == "L" and apply.setpoints == granted.decision.point.setpoints
    assert g.busy and g.pending == 0


def test_the_board_is_busy_until_the_release_and_the_queue_waits_in_edf_order():
    g = machine()
    g.handle(m.Request(0.0, "L", Demand(deadline_ms=50.0), lease=True))
    granted = grant(g, 0.0)
    g.handle(m.Request(0.001, "late", Demand(deadline_ms=500.0)))
    g.handle(m.Request(0.002, "soon", Demand(deadline_ms=30.0)))
    (advice,) = g.handle(m.Request(0.002, "adv", Demand(deadline_ms=20.0), advise=True))  # advice is answered
    assert isinstance(advice, m.Reply)
    for t in (0.003, 0.01, 0.5):  # no Run, no Apply, no idle policy while the application holds the board
        assert g.handle(m.Ready(t)) == []
    assert g.pending == 2 and g.busy
    (reply,) = g.handle(m.Outcome(0.02, granted.key, 12.0))
    assert isinstance(reply, m.Reply) and reply.key == "L"
    assert abs(reply.total_ms - 20.0) < 1e-9  # arrival to release
    assert not g.busy
    run, _ = run_one(g, 0.021)
    assert run.key == "soon"  # EDF, as for any queued request


def test_released_latencies_teach_the_machine_like_its_own_runs():
    g = machine(residual_alpha=0.5)
    demand = Demand(objective=Objective.MIN_LATENCY)
    g.handle(m.Request(0.0, 0, demand, lease=True))
    first = grant(g, 0.0)
    row = first.decision.index
    nominal = float(g.table.latency_ms[row])
    before = first.decision.latency_ms
    t = 0.0
    g.handle(m.Outcome(t + 0.01, first.key, nominal / 3))
    for key in range(1, 8):  # the application's engine is 3x faster than the table says
        t += 0.1
        g.handle(m.Request(t, key, demand, lease=True))
        granted = grant(g, t)
        assert granted.decision.index == row  # same (mapping, k), same clocks: min latency
        g.handle(m.Outcome(t + 0.01, granted.key, nominal / 3))
    (advice,) = g.handle(m.Request(t + 0.2, "adv", demand, advise=True))
    assert advice.decision.index == row
    group = int(g.table.group_of[row])
    assert abs(float(g.planner.multiplier()[group]) - 1 / 3) < 0.01  # the residual of that (mapping, k)
    # The prediction dropped by the residual, not only by the margin shrinking (which alone leaves ~0.5).
    assert advice.decision.latency_ms < 0.3 * before


def test_a_release_reported_as_failed_or_an_expiry_teaches_nothing():
    demand = Demand(objective=Objective.MIN_LATENCY)
    for end in ("failed", "expired"):
        g = machine(residual_alpha=0.5)
        (before,) = g.handle(m.Request(0.0, "adv", demand, advise=True))
        for key in range(5):
            t = key * 0.1
            g.handle(m.Request(t, key, demand, lease=True))
            granted = grant(g, t)
            event = m.Failed(t + 0.01, granted.key, "the application's run failed") if end == "failed" \
                else m.Expired(t + 1.0, granted.key)
            assert g.handle(event) == []  # no Refuse: the driver answers the release itself
            assert not g.busy
        (after,) = g.handle(m.Request(1.0, "adv", demand, advise=True))
        assert after.decision.latency_ms == before.decision.latency_ms, end


def test_expiry_frees_the_board_and_the_idle_policy_follows_as_after_any_run():
    g = machine(park_s=0.0)  # release hands the clocks back at once
    g.handle(m.Request(0.0, "L", Demand(objective=Objective.MIN_LATENCY), lease=True))
    granted = grant(g, 0.0)
    assert g.handle(m.Ready(0.5)) == [] and g.wake_at() is None  # the lease still holds the board
    assert g.handle(m.Expired(1.0, granted.key)) == []
    assert not g.busy and g.wake_at() is not None
    idle = g.handle(m.Ready(g.wake_at()))
    assert [type(a) for a in idle] == [m.Release] and set(idle[0].domains) == {"cpu"}
    # A later release of the expired lease is the driver's to refuse; the machine ignores another expiry.
    assert g.handle(m.Expired(1.1, granted.key)) == []


def test_the_next_request_starts_at_once_after_an_expiry():
    g = machine()
    g.handle(m.Request(0.0, "L", Demand(deadline_ms=100.0), lease=True))
    granted = grant(g, 0.0)
    g.handle(m.Request(0.1, "next", Demand(deadline_ms=100.0)))
    assert g.handle(m.Ready(0.2)) == []
    g.handle(m.Expired(1.0, granted.key))
    run, reply = run_one(g, 1.0)
    assert run.key == "next" and reply.key == "next"


def test_expected_latencies_scale_the_prediction_and_are_checked_per_k():
    g = machine()
    groups = max(p.groups for p in table().points)
    demand = Demand(objective=Objective.MIN_LATENCY)
    (plain,) = g.handle(m.Request(0.0, "adv", demand, advise=True))
    fastest = {k: min(float(lat) for p, lat in zip(g.table.points, g.table.latency_ms, strict=True) if p.groups == k)
               for k in range(1, groups + 1)}
    expected = tuple(fastest[k] / 4 for k in range(1, groups + 1))  # an engine 4x faster than the table
    g.handle(m.Request(0.0, "L", demand, lease=True, expected_ms=expected))
    granted = grant(g, 0.0)
    assert abs(granted.decision.latency_ms - plain.decision.latency_ms / 4) < 0.05 * plain.decision.latency_ms
    # Released at what it expected: the residual has nothing to correct (learned against the table alone, it
    # would have dropped toward 1/4 and the next lease would count the engine's speed twice).
    group = int(g.table.group_of[granted.decision.index])
    for n in range(3):
        g.handle(m.Outcome(0.01 + n, granted.key, float(g.table.latency_ms[granted.decision.index]) / 4))
        g.handle(m.Request(0.1 + n, "L", demand, lease=True, expected_ms=expected))
        granted = grant(g, 0.1 + n)
    assert abs(float(g.planner.multiplier()[group]) - 1.0) < 0.02
    (refused,) = g.handle(m.Request(0.2, "bad", demand, lease=True, expected_ms=(1.0,)))
    assert isinstance(refused, m.Refuse) and refused.code == "bad_request" and f"{groups} groups" in refused.message


def test_a_strict_lease_that_cannot_be_met_is_refused_and_an_energy_budget_needs_a_sensor():
    g = machine()
    g.handle(m.Request(0.0, "s", Demand(deadline_ms=0.01), strict=True, lease=True))
    (refused,) = g.handle(m.Ready(0.0))
    assert isinstance(refused, m.Refuse) and refused.code == "infeasible" and not g.busy
    blind = m.GovernorMachine(table(), m.BoardFacts(**{**FACTS.__dict__, "energy_measured": False}),
                              g.settings)
    (no,) = blind.handle(m.Request(0.0, "e", Demand(energy_mj=5.0), lease=True))
    assert no.code == "bad_request" and "power sensor" in no.message


def test_the_time_around_a_lease_is_learned_apart_and_later_leases_pay_it():
    # grant to release minus the application's run: the two messages and its own work. A 2 ms deadline on
    # the host was missed by half the leases while this was never counted (the deadline runs to the release)
    g = machine()
    demand = Demand(objective=Objective.MIN_LATENCY)
    t = 0.0
    for i in range(5):
        g.handle(m.Request(t, i, demand, lease=True))
        granted = grant(g, t)
        run_ms = float(g.table.latency_ms[granted.decision.index])
        t += (run_ms + 3.0) / 1000.0  # 3 ms around each run
        g.handle(m.Outcome(t, granted.key, run_ms))
        t += 0.01
    assert abs(g.planner.lease_dispatch_ms - 3.0) < 1e-6
    assert g.planner.optimiser.dispatch_ms == 0.0  # this loop's own dispatch learned nothing from leases
    g.handle(m.Request(t, "next", demand, lease=True))
    later = grant(g, t)
    g.handle(m.Outcome(t + 0.005, later.key, 1.0))
    g.handle(m.Request(t + 0.01, "run", demand))
    run, _ = run_one(g, t + 0.01)
    table_ms = float(g.table.latency_ms[later.decision.index])
    assert later.decision.latency_ms >= table_ms + 3.0 - 1e-6  # a lease's prediction pays it
    assert run.decision.latency_ms < later.decision.latency_ms  # an infer does not
