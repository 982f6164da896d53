"""The governor machine: events in, actions out, with no clock, socket or driver in sight."""

import itertools

import numpy as np
import pytest

from governor.core.decision import machine as m
from governor.core.decision.optimiser import DecisionTable, Demand, Objective
from governor.core.types import DomainReading, Observation, OperatingPoint, Setpoints

F = [500_000_000, 1_000_000_000, 1_500_000_000]


def table() -> DecisionTable:
    points, lat, energy, acc = [], [], [], []
    for t, f, k in itertools.product([1, 2], F, [1, 2, 3, 4]):
        speed = t ** 0.8 * f / 1e9
        latency = 5.0 * k / speed + 0.5
        power = 800 * t * (f / 1e9) ** 2 + 400
        points.append(OperatingPoint("cpu", t, Setpoints({"cpu": f}), k))
        lat.append(latency)
        energy.append(power * latency / 1000)
        acc.append(0.8 + 0.04 * k)
    return DecisionTable(tuple(points), np.array(lat), np.array(energy), np.array(acc))


def settings(**kw) -> m.MachineSettings:
    base = dict(hysteresis=0.0, switch_ms=0.0, min_margin=0.02, max_margin=2.0, residual_alpha=0.2,
                idle_clocks="release", park_s=0.15, idle_grace_s=0.002, max_queue=8,
                objective=m.Objective.MIN_ENERGY)
    base.update(kw)
    return m.MachineSettings(**base)


FACTS = m.BoardFacts(board="test", unit_kind={"cpu": "cpu"}, unit_cores={"cpu": 2}, unit_domain={"cpu": "cpu"},
                     top_hz={"cpu": F[-1]}, lowest_hz={"cpu": F[0]}, energy_measured=True, idle_power_mw=0.0)


def machine(**kw) -> m.GovernorMachine:
    return m.GovernorMachine(table(), FACTS, settings(**kw))


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def run_one(g: m.GovernorMachine, t: float, latency_ms: float = 5.0, *, simulated: bool = False):
    """Ready -> (Apply ->) Run -> Outcome; returns (run action, reply action)."""
    actions = g.handle(m.Ready(t))
    for apply in of(actions, m.Apply):
        g.handle(m.Applied(t, apply, dict(apply.setpoints.hz), took_ms=1.0))
    (run,) = of(actions, m.Run)
    (reply,) = of(g.handle(m.Outcome(t + latency_ms / 1000, run.key, latency_ms, simulated=simulated)), m.Reply)
    return run, reply


def test_edf_order_and_no_deadline_last():
    g = machine()
    for key, deadline, t in (("a", 50, 0.0), ("b", None, 0.0), ("c", 10, 0.01), ("d", None, 0.02)):
        assert g.handle(m.Request(t, key, Demand(deadline_ms=deadline))) == []
    assert g.pending == 4
    assert [run_one(g, 0.03)[0].key for _ in range(4)] == ["c", "a", "b", "d"]
    assert g.pending == 0 and g.handle(m.Ready(0.03)) == []  # the idle grace has not passed yet


def test_setpoints_are_applied_only_when_they_change_or_a_write_failed():
    g = machine()
    g.handle(m.Request(0.0, 1, Demand(objective=Objective.MIN_LATENCY)))
    first = g.handle(m.Ready(0.0))
    assert [type(a) for a in first] == [m.Apply, m.Run]  # the clocks first, then the run
    apply = first[0]
    published = g.handle(m.Applied(0.0, apply, {"cpu": 1_400_000_000}, took_ms=1.0, errors={"cpu": "EBUSY"}))
    assert of(published, m.Publish)[0].kind == "setpoints" and "failed" in of(published, m.Publish)[0].message
    assert "cpu" in g.not_set
    g.handle(m.Outcome(0.005, 1, 5.0))
    g.handle(m.Request(0.006, 2, Demand(objective=Objective.MIN_LATENCY)))
    retry = g.handle(m.Ready(0.006))
    assert [type(a) for a in retry] == [m.Apply, m.Run]  # same setpoints, but the last write failed
    g.handle(m.Applied(0.006, retry[0], dict(retry[0].setpoints.hz), took_ms=1.0))
    assert g.not_set == {}
    g.handle(m.Outcome(0.011, 2, 5.0))
    g.handle(m.Request(0.012, 3, Demand(objective=Objective.MIN_LATENCY)))
    assert [type(a) for a in g.handle(m.Ready(0.012))] == [m.Run]  # in force: nothing to write


def test_a_full_queue_and_an_energy_budget_without_a_power_sensor_are_refused():
    g = machine(max_queue=2)
    assert g.handle(m.Request(0.0, 1, Demand())) == [] and g.handle(m.Request(0.0, 2, Demand())) == []
    (full,) = g.handle(m.Request(0.0, 3, Demand()))
    assert isinstance(full, m.Refuse) and full.code == "unavailable" and full.key == 3
    blind = m.GovernorMachine(table(), m.BoardFacts(**{**FACTS.__dict__, "energy_measured": False}), settings())
    (refused,) = blind.handle(m.Request(0.0, 9, Demand(energy_mj=5.0)))
    assert refused.code == "bad_request" and "power sensor" in refused.message and blind.pending == 0


def test_strict_and_infeasible_is_refused_non_strict_runs_least_violating():
    g = machine()
    g.handle(m.Request(0.0, "s", Demand(deadline_ms=0.1), strict=True))
    (refused,) = g.handle(m.Ready(0.0))
    assert isinstance(refused, m.Refuse) and refused.code == "infeasible" and "relax the budget" in refused.message
    g.handle(m.Request(0.0, "n", Demand(deadline_ms=0.1)))
    run, reply = run_one(g, 0.0)
    assert run.decision.infeasible and reply.key == "n"


def test_advice_is_answered_at_once_and_moves_nothing():
    g = machine()
    (advice,) = g.handle(m.Request(0.0, "adv", Demand(deadline_ms=20.0), advise=True))
    assert isinstance(advice, m.Reply) and advice.total_ms is None and g.pending == 0
    assert g.planner.current_setpoints is None  # nothing applied
    (no,) = g.handle(m.Request(0.0, "adv2", Demand(deadline_ms=0.01), strict=True, advise=True))
    assert isinstance(no, m.Refuse) and no.code == "infeasible"


def test_advice_is_decided_once_per_state_and_again_after_anything_changes_it():
    g = machine()
    decide, calls = g.planner.decide, []
    g.planner.decide = lambda *a, **kw: calls.append(1) or decide(*a, **kw)  # type: ignore[method-assign]
    ask = Demand(deadline_ms=20.0)
    (first,) = g.handle(m.Request(0.0, "a1", ask, advise=True))
    assert g.handle(m.Ready(0.05)) == []  # the loop's Ready after each message, with nothing to start
    (again,) = g.handle(m.Request(0.1, "a2", ask, advise=True))
    assert again.decision is first.decision and len(calls) == 1 and again.key == "a2"
    g.handle(m.Request(0.2, "run", Demand(deadline_ms=30.0)))  # a queued request: the state moved
    (third,) = g.handle(m.Request(0.2, "a3", ask, advise=True))
    assert len(calls) == 2 and third.decision == first.decision  # decided again, to the same point
    run_one(g, 0.3, latency_ms=float(g.table.latency_ms[first.decision.index]) * 3)
    (slow,) = g.handle(m.Request(0.4, "a4", ask, advise=True))  # learned the run was 3x slower than predicted
    assert slow.decision.point != first.decision.point and slow.decision.latency_ms > first.decision.latency_ms
    assert len(calls) == 4  # the run's decision, then the advice again
    g.handle(m.Tick(0.5, Observation(t=0.5, util={"cpu": 0.0})))
    g.handle(m.Request(0.6, "a5", ask, advise=True))
    g.handle(m.Request(0.6, "a6", Demand(deadline_ms=9.0), advise=True))  # another budget: its own decision
    g.handle(m.Request(0.6, "a7", ask, advise=True))
    assert len(calls) == 6


def test_waiting_is_taken_off_the_deadline_and_counted_end_to_end():
    g = machine()
    g.handle(m.Request(1.0, "late", Demand(deadline_ms=30.0)))
    run, reply = run_one(g, 1.020, latency_ms=5.0)  # waited 20 ms: 10 ms left
    assert run.decision.latency_ms <= 10.0
    assert reply.total_ms == pytest.approx(25.0)  # arrival to the end of the run
    g.handle(m.Request(2.0, "sim", Demand(deadline_ms=30.0)))
    assert of(g.handle(m.Ready(2.001)), m.Run)
    # A simulated run's latency is virtual: the end-to-end time is the wait plus it, whatever the host took.
    (sim_reply,) = g.handle(m.Outcome(2.5, "sim", 4.0, simulated=True))
    assert sim_reply.total_ms == pytest.approx(1.0 + 4.0)


def test_learning_waits_for_the_next_event_so_the_reply_goes_first():
    g = machine()
    g.handle(m.Request(0.0, 1, Demand(objective=Objective.MIN_LATENCY)))
    actions = g.handle(m.Ready(0.0))
    run = of(actions, m.Run)[0]
    group = int(g.table.group_of[run.decision.index])
    g.handle(m.Outcome(0.05, 1, 50.0))  # far slower than predicted
    assert g.planner.residuals.seen(group) == 0  # not learned yet: the reply is on its way
    g.handle(m.Ready(0.0501))
    assert g.planner.residuals.seen(group) == 1
    assert g.planner.optimiser.dispatch_ms >= 0.0


def test_dispatch_is_learned_from_real_runs_only_and_switch_time_when_measured():
    g = machine(switch_ms=-1.0)
    g.handle(m.Request(0.0, 1, Demand(objective=Objective.MIN_LATENCY)))
    actions = g.handle(m.Ready(0.0))
    g.handle(m.Applied(0.0, actions[0], dict(actions[0].setpoints.hz), took_ms=3.0))
    assert g.planner.optimiser.switch_ms == pytest.approx(3.0)
    g.handle(m.Outcome(1.0, 1, 5.0, simulated=True))  # a second of host time around a virtual run
    g.handle(m.Ready(1.0))
    assert g.planner.optimiser.dispatch_ms == 0.0
    g.handle(m.Request(1.0, 2, Demand(objective=Objective.MIN_LATENCY)))
    g.handle(m.Ready(1.0))
    g.handle(m.Outcome(1.0075, 2, 5.0))  # 2.5 ms around a 5 ms run
    g.handle(m.Ready(1.008))
    assert g.planner.optimiser.dispatch_ms == pytest.approx(2.5)


def test_idle_policy_parks_after_the_grace_then_hands_back_after_park_time():
    g = machine()
    g.handle(m.Request(0.0, 1, Demand(objective=Objective.MIN_LATENCY)))
    run_one(g, 0.0)
    assert g.wake_at() == pytest.approx(0.005 + 0.002)
    assert g.handle(m.Ready(0.006)) == []  # still within the grace
    (park,) = g.handle(m.Ready(0.0071))
    assert isinstance(park, m.Apply) and park.row is None and park.setpoints.hz == {"cpu": F[0]}
    assert g.planner.current_setpoints is None and g.wake_at() is None
    quiet = Observation(t=0.1, domains={"cpu": DomainReading(F[0], F[0], F[0])}, util={"cpu": 0.0})
    assert of(g.handle(m.Tick(0.1, quiet)), m.Release) == []  # parked 150 ms: not yet
    (release,) = of(g.handle(m.Tick(0.2, quiet)), m.Release)
    assert release.domains == ("cpu",)


def test_parked_clocks_go_back_at_once_when_someone_else_gets_busy():
    g = machine()
    g.handle(m.Request(0.0, 1, Demand(objective=Objective.MIN_LATENCY)))
    run_one(g, 0.0)
    g.handle(m.Ready(0.01))
    busy = Observation(t=0.02, util={"cpu": 0.6})
    assert of(g.handle(m.Tick(0.02, busy)), m.Release)


def test_release_and_keep_modes():
    g = machine(park_s=0.0)
    g.handle(m.Request(0.0, 1, Demand()))
    run_one(g, 0.0)
    assert of(g.handle(m.Ready(0.01)), m.Release)  # no parking: straight back to the kernel governors
    k = machine(idle_clocks="keep")
    k.handle(m.Request(0.0, 1, Demand()))
    run_one(k, 0.0)
    assert k.handle(m.Ready(0.01)) == [] and k.planner.current_setpoints is not None


def test_a_request_during_the_grace_cancels_the_idle_policy():
    g = machine()
    g.handle(m.Request(0.0, 1, Demand(objective=Objective.MIN_LATENCY)))
    run_one(g, 0.0)
    g.handle(m.Request(0.0055, 2, Demand(objective=Objective.MIN_LATENCY)))
    assert g.wake_at() is None
    assert [type(a) for a in g.handle(m.Ready(0.010))] == [m.Run]  # the clocks are still ours: no write


def test_a_failed_run_is_refused_as_internal_and_teaches_nothing():
    g = machine()
    g.handle(m.Request(0.0, 1, Demand()))
    run = of(g.handle(m.Ready(0.0)), m.Run)[0]
    (refused,) = g.handle(m.Failed(0.001, run.key, "inference failed: boom"))
    assert refused.code == "internal" and refused.key == 1
    assert g.planner.residuals.seen(int(g.table.group_of[run.decision.index])) == 0


def test_own_runs_are_not_counted_as_others_load():
    g = machine()
    g.handle(m.Tick(0.0, Observation(t=0.0, util={"cpu": 0.0})))
    g.handle(m.Request(0.0, 1, Demand(objective=Objective.MIN_LATENCY)))
    run, _ = run_one(g, 0.0, latency_ms=50.0)
    share = min(1.0, run.decision.point.threads / 2)
    g.handle(m.Tick(0.1, Observation(t=0.1, util={"cpu": 0.5 * share + 0.2})))  # our 50 ms of 100 + others' 0.2
    assert g.planner.others_util["cpu"] == pytest.approx(0.2, abs=0.01)


def test_an_unknown_event_is_a_type_error():
    with pytest.raises(TypeError, match="not an event"):
        machine().handle("tick")  # type: ignore[arg-type]
