"""The scheduler: EDF order, contention and caps from observations, feedback shifting choices."""

import itertools

import numpy as np
import pytest

from governor.core.optimise import Budget, DecisionTable, Objective, Optimiser
from governor.core.scheduler import PendingRequest, Scheduler
from governor.core.types import DomainReading, Observation, OperatingPoint, Setpoints

F = [500_000_000, 1_000_000_000, 1_500_000_000]


def make_scheduler():
    points, lat, energy, acc = [], [], [], []
    for unit, t, f, k in itertools.product(["cpu", "gpu"], [1, 2], F, [1, 2, 3, 4]):
        if unit == "gpu" and t == 2:
            continue
        speed = (3.0 if unit == "gpu" else 1.0) * t ** 0.8 * f / 1e9
        latency = 5.0 * k / speed + 0.5
        power = (2000 if unit == "gpu" else 800 * t) * (f / 1e9) ** 2 + 400
        points.append(OperatingPoint(unit, t, Setpoints({unit: f}), k))
        lat.append(latency)
        energy.append(power * latency / 1000)
        acc.append(0.8 + 0.04 * k)
    table = DecisionTable(tuple(points), np.array(lat), np.array(energy), np.array(acc))
    return Scheduler(Optimiser(table, hysteresis=0.0), {"cpu": "cpu", "gpu": "gpu"}, {"cpu": 2, "gpu": 1},
                     {"cpu": F[-1], "gpu": F[-1]})


def test_edf_order_and_no_deadline_last():
    s = make_scheduler()
    s.submit(PendingRequest("a", Budget(deadline_ms=50), arrival_t=0.0))
    s.submit(PendingRequest("b", Budget(), arrival_t=0.0))
    s.submit(PendingRequest("c", Budget(deadline_ms=10), arrival_t=0.01))
    s.submit(PendingRequest("d", Budget(), arrival_t=0.02))
    assert [s.next_request().key for _ in range(4)] == ["c", "a", "b", "d"]
    assert s.next_request() is None and s.pending() == 0


def test_gpu_contention_moves_work_to_cpu_or_slower():
    s = make_scheduler()
    budget = Budget(deadline_ms=6.0, objective=Objective.MIN_ENERGY)
    calm = s.decide(budget)
    assert calm.point.unit == "gpu"
    s.observe(Observation(t=1.0, util={"gpu": 0.9}))
    busy = s.decide(budget)
    assert busy.point.unit != "gpu" or busy.infeasible
    assert s.others_util["gpu"] == pytest.approx(0.9)


def test_own_load_is_not_counted_as_others():
    s = make_scheduler()
    s.observe(Observation(t=1.0, util={"cpu": 0.8}), own_busy={"cpu": 0.7})
    assert s.others_util["cpu"] == pytest.approx(0.1)


def test_thermal_cap_from_readback_limits_choice():
    s = make_scheduler()
    s.applied(0, {"gpu": F[-1]})
    s.observe(Observation(t=1.0, domains={"gpu": DomainReading(F[0], F[0], F[-1])}))
    assert s.caps_hz == {"gpu": F[0]}
    d = s.decide(Budget(objective=Objective.MIN_LATENCY))
    assert d.point.setpoints.hz.get("gpu", 0) <= F[0]


def test_waiting_time_comes_off_the_deadline():
    s = make_scheduler()
    fresh = s.decide(Budget(deadline_ms=8.0), now=1.0, arrival_t=1.0)
    late = s.decide(Budget(deadline_ms=8.0), now=1.006, arrival_t=1.0)
    assert late.latency_ms <= 2.0 + 1e-9 or late.infeasible
    assert fresh.energy_mj <= late.energy_mj or late.infeasible


def test_feedback_learns_that_a_unit_is_slower_than_profiled():
    s = make_scheduler()
    budget = Budget(deadline_ms=6.0)
    first = s.decide(budget)
    for _ in range(20):
        d = s.decide(budget)
        if d.point.unit == first.point.unit and d.point.groups == first.point.groups:
            s.feedback(d, measured_latency_ms=d.latency_ms * 3)
    later = s.decide(budget)
    assert (later.point.unit, later.point.threads, later.point.groups) != (
        first.point.unit, first.point.threads, first.point.groups)


def test_multiplier_follows_observations_feedback_and_reset():
    s = make_scheduler()
    calm = s.multiplier().copy()
    s.observe(Observation(t=1.0, util={"gpu": 0.5}))
    loaded = s.multiplier().copy()
    gpu = [i for i, g in enumerate(s.optimiser.table.groups) if g[0] == "gpu"]
    assert np.all(loaded[gpu] == pytest.approx(2.0)) and np.all(calm[gpu] == 1.0)
    d = s.decide(Budget(deadline_ms=50.0))
    s.feedback(d, d.latency_ms * 4)
    assert s.multiplier()[s.optimiser.table.group_of[d.index]] > loaded[s.optimiser.table.group_of[d.index]]
    s.reset_learning()
    assert np.allclose(s.multiplier(), loaded)


def test_accelerator_load_right_after_our_own_run_is_not_counted_as_others():
    s = make_scheduler()
    s.observe(Observation(t=1.0, util={"gpu": 0.3}))
    s.observe(Observation(t=1.1, util={"gpu": 0.95}), own_busy={"gpu": 0.05}, held=["gpu"])
    assert s.others_util["gpu"] == pytest.approx(0.3)  # held: the 0.95 was our own run in the load window
    s.observe(Observation(t=1.2, util={"gpu": 0.6}))
    assert s.others_util["gpu"] == pytest.approx(0.6)  # no run of ours since: the reading is others'
