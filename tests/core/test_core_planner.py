"""The planner: contention and caps from observations, feedback shifting choices."""

import itertools

import numpy as np
import pytest

from governor.core.decision.optimiser import Decision, DecisionTable, Demand, Objective, Optimiser
from governor.core.decision.planner import Planner
from governor.core.types import DomainReading, Observation, OperatingPoint, Setpoints

F = [500_000_000, 1_000_000_000, 1_500_000_000]


def make_planner():
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
    return Planner(Optimiser(table, hysteresis=0.0), {"cpu": "cpu", "gpu": "gpu"}, {"cpu": 2, "gpu": 1},
                   {"cpu": F[-1], "gpu": F[-1]})


def test_gpu_contention_moves_work_to_cpu_or_slower():
    s = make_planner()
    budget = Demand(deadline_ms=6.0, objective=Objective.MIN_ENERGY)
    calm = s.decide(budget)
    assert calm.point.unit == "gpu"
    s.observe(Observation(t=1.0, util={"gpu": 0.9}))
    busy = s.decide(budget)
    assert busy.point.unit != "gpu" or busy.infeasible
    assert s.others_util["gpu"] == pytest.approx(0.9)


def test_own_load_is_not_counted_as_others():
    s = make_planner()
    s.observe(Observation(t=1.0, util={"cpu": 0.8}), own_busy={"cpu": 0.7})
    assert s.others_util["cpu"] == pytest.approx(0.1)


def test_thermal_cap_from_readback_limits_choice():
    s = make_planner()
    s.applied(0, {"gpu": F[-1]})
    s.observe(Observation(t=1.0, domains={"gpu": DomainReading(F[0], F[0], F[-1])}))
    assert s.caps_hz == {"gpu": F[0]}
    d = s.decide(Demand(objective=Objective.MIN_LATENCY))
    assert d.point.setpoints.hz.get("gpu", 0) <= F[0]


def test_waiting_time_comes_off_the_deadline():
    s = make_planner()
    fresh = s.decide(Demand(deadline_ms=8.0), now=1.0, arrival_t=1.0)
    late = s.decide(Demand(deadline_ms=8.0), now=1.006, arrival_t=1.0)
    assert late.latency_ms <= 2.0 + 1e-9 or late.infeasible
    assert fresh.energy_mj <= late.energy_mj or late.infeasible


def test_feedback_learns_that_a_unit_is_slower_than_profiled():
    s = make_planner()
    budget = Demand(deadline_ms=6.0)
    first = s.decide(budget)
    for _ in range(20):
        d = s.decide(budget)
        if d.point.unit == first.point.unit and d.point.groups == first.point.groups:
            s.feedback(d, measured_latency_ms=d.latency_ms * 3)
    later = s.decide(budget)
    assert (later.point.unit, later.point.threads, later.point.groups) != (
        first.point.unit, first.point.threads, first.point.groups)


def test_contention_per_row_and_residuals_per_group_follow_observations_feedback_and_reset():
    s = make_planner()
    assert s.contention() is None
    s.observe(Observation(t=1.0, util={"gpu": 0.5}))
    key, rows = s.contention()
    gpu = np.array([p.unit == "gpu" for p in s.optimiser.table.points])
    assert np.all(rows[gpu] == pytest.approx(2.0)) and np.all(rows[~gpu] == 1.0)
    d = s.decide(Demand(deadline_ms=50.0))
    group = s.optimiser.table.group_of[d.index]
    s.feedback(d, d.latency_ms * 4)
    assert s.multiplier()[group] > 1.0
    s.reset_learning()
    assert np.allclose(s.multiplier(), 1.0) and s.contention()[0] == key


def test_a_co_runner_seen_at_a_high_clock_takes_more_of_a_slower_one():
    s = make_planner()
    s.unit_domain = {"gpu": "gpu", "cpu": "cpu"}
    seen = {"gpu": DomainReading(cur_hz=F[-1], min_hz=F[0], max_hz=F[-1])}
    s.observe(Observation(t=1.0, util={"gpu": 0.3}, domains=seen))
    _, rows = s.contention()
    table = s.optimiser.table
    at = {f: rows[[i for i, p in enumerate(table.points) if p.unit == "gpu" and p.setpoints.hz["gpu"] == f]]
          for f in F}
    assert np.all(at[F[-1]] == pytest.approx(1 / 0.7))  # seen there: its share as read
    assert np.all(at[F[1]] == pytest.approx(1 / (1 - 0.3 * 1.5)))  # fixed work: 1.5x the share at 2/3 clock
    assert np.all(at[F[0]] == pytest.approx(2.0))  # it would want 90 %, round-robin gives it half
    # Seen at the lowest clock: an accelerator's fixed work shrinks at higher clocks (a run that proves
    # otherwise is read back as its share there); a CPU co-runner is never assumed to shrink.
    low = {"gpu": DomainReading(cur_hz=F[0], min_hz=F[0], max_hz=F[-1]),
           "cpu": DomainReading(cur_hz=F[0], min_hz=F[0], max_hz=F[-1])}
    s.observe(Observation(t=2.0, util={"gpu": 0.3, "cpu": 0.3}, domains=low))
    _, rows = s.contention()
    gpu_top = [i for i, p in enumerate(table.points) if p.unit == "gpu" and p.setpoints.hz["gpu"] == F[-1]]
    assert np.allclose(rows[gpu_top], 1 / (1 - 0.3 * F[0] / F[-1]))
    cpu = [i for i, p in enumerate(table.points) if p.unit == "cpu"]
    assert np.allclose(rows[cpu], [max(1.0, (table.points[i].threads + 0.3 * 2) / 2) for i in cpu])


def test_accelerator_load_right_after_our_own_run_is_not_counted_as_others():
    s = make_planner()
    s.observe(Observation(t=1.0, util={"gpu": 0.3}))
    s.observe(Observation(t=1.1, util={"gpu": 0.95}), own_busy={"gpu": 0.05}, held=["gpu"])
    assert s.others_util["gpu"] == pytest.approx(0.3)  # held: the 0.95 was our own run in the load window
    s.observe(Observation(t=1.2, util={"gpu": 0.6}))
    assert s.others_util["gpu"] == pytest.approx(0.6)  # no run of ours since: the reading is others'


def test_the_head_is_paced_so_the_queue_behind_it_keeps_its_deadlines():
    s = make_planner()
    alone = s.decide(Demand(deadline_ms=40.0, min_accuracy=0.96), now=0.0, arrival_t=0.0, remember=False)
    behind = [0.040] * 3  # three more, due with the head: all four must fit in 40 ms -> ~10 ms each
    paced = s.decide(Demand(deadline_ms=40.0, min_accuracy=0.96), now=0.0, arrival_t=0.0, remember=False,
                     behind=behind)
    assert alone.latency_ms > 10.0 >= paced.latency_ms
    # A pace nobody can keep falls back to the head's own deadline instead of failing it.
    crowded = s.decide(Demand(deadline_ms=40.0, min_accuracy=0.96), now=0.0, arrival_t=0.0, remember=False,
                       behind=[0.040] * 43)
    assert not crowded.infeasible and crowded.latency_ms <= 40.0


def test_idle_floor_is_learned_only_from_quiet_ticks_without_our_setpoints():
    s = make_planner()
    s.charge_idle = True
    for t in range(3):
        s.observe(Observation(t=float(t), util={"gpu": 0.0}, total_power_mw=1200.0))
    assert s.idle_floor_mw == pytest.approx(1200.0)
    s.observe(Observation(t=4.0, util={"gpu": 0.5}, total_power_mw=4000.0))  # a co-runner: not the floor
    s.observe(Observation(t=5.0, util={"gpu": 0.0}, total_power_mw=4000.0), own_busy={"gpu": 0.3})  # ours ran
    assert s.idle_floor_mw == pytest.approx(1200.0)


def test_idle_floor_follows_the_run_energy_meter_not_the_rail_sensors():
    # Run energy from a whole-board meter (2,000 mW idle) while the sensors see only SoC rails (600 mW):
    # the floor must be the meter's, or 1.4 W of idle power stays in every run's objective.
    s = make_planner()
    s.charge_idle = True
    for t in range(3):
        s.observe(Observation(t=float(t), util={"gpu": 0.0}, total_power_mw=600.0), power_mw=2000.0)
    assert s.idle_floor_mw == pytest.approx(2000.0)


def test_a_held_accelerator_reveals_a_co_runner_through_our_own_slow_run():
    s = make_planner()
    s.unit_domain = {"gpu": "gpu", "cpu": "cpu"}
    s.observe(Observation(t=1.0, util={"gpu": 1.0}), own_busy={"gpu": 0.4}, held=["gpu"])
    d = s.decide(Demand(deadline_ms=30.0, min_accuracy=0.96, objective=Objective.MIN_LATENCY))
    assert d.point.unit == "gpu" and d.point.setpoints.hz["gpu"] == F[-1] and s.contention() is None
    nominal = float(s.optimiser.table.latency_ms[d.index])  # d.latency_ms carries the safety margin
    s.feedback(d, nominal * 2.0)  # others held half the GPU at this clock
    assert s.others_util["gpu"] == pytest.approx(0.5, abs=0.02)
    assert s.others_hz["gpu"] == d.point.setpoints.hz["gpu"]
    assert np.allclose(s.multiplier(), 1.0)  # explained as contention, not learned as a clock-blind residual
    _, rows = s.contention()
    table = s.optimiser.table
    slower = [i for i, p in enumerate(table.points)
              if p.unit == "gpu" and p.setpoints.hz["gpu"] < d.point.setpoints.hz["gpu"]]
    # Fixed work would want more of a slower GPU; round-robin gives one co-runner context half at most.
    assert slower and np.allclose(rows[slower], 2.0)
    s.feedback(d, nominal)  # back to its idle speed: the co-runner left
    assert s.others_util["gpu"] == pytest.approx(0.0, abs=0.02)


def test_an_accelerator_without_a_load_file_keeps_the_share_its_slow_runs_revealed():
    # The XU3's Mali on devfreq kernels has no load file: our runs are the only evidence of a co-runner,
    # so what they showed must outlive the next tick, and a run after an idle tick still counts.
    s = make_planner()
    s.unit_domain = {"gpu": "gpu", "cpu": "cpu"}
    s.observe(Observation(t=1.0, util={"cpu": 0.0}, domains={"gpu": DomainReading(F[0], F[0], F[-1])}))
    d = s.decide(Demand(deadline_ms=30.0, min_accuracy=0.96, objective=Objective.MIN_LATENCY))
    assert d.point.unit == "gpu"
    s.feedback(d, float(s.optimiser.table.latency_ms[d.index]) * 2.0)
    s.observe(Observation(t=1.1, util={"cpu": 0.0}, domains={"gpu": DomainReading(F[0], F[0], F[-1])}))
    assert s.others_util["gpu"] == pytest.approx(0.5, abs=0.02)
    assert s.others_hz["gpu"] == d.point.setpoints.hz["gpu"]  # the clock it was seen at, not the idle one
    assert s.contention() is not None
    # Once we stop running there nothing shows the co-runner gone: the share fades, so the GPU is tried again.
    s.observe(Observation(t=1.0 + s.unread_half_life_s, util={"cpu": 0.0}))
    assert s.others_util["gpu"] == pytest.approx(0.25, abs=0.01)
    s.observe(Observation(t=1.0 + 10 * s.unread_half_life_s, util={"cpu": 0.0}))
    assert s.contention() is None


def test_runs_that_confirm_a_revealed_share_stop_it_fading():
    # Without a load file, a run that keeps to the prediction made with the co-runner is the only sign that
    # it is still there. Left to fade regardless, the share fell below the truth every couple of seconds.
    s = make_planner()
    s.unit_domain = {"gpu": "gpu", "cpu": "cpu"}
    gpu = {"gpu": DomainReading(F[0], F[0], F[-1])}
    s.observe(Observation(t=1.0, util={"cpu": 0.0}, domains=gpu))
    d = s.decide(Demand(deadline_ms=30.0, min_accuracy=0.96, objective=Objective.MIN_LATENCY))
    nominal = float(s.optimiser.table.latency_ms[d.index])
    s.feedback(d, nominal * 2.0)
    revealed = s.others_util["gpu"]
    s.observe(Observation(t=2.0, util={"cpu": 0.0}, domains=gpu))
    assert s.others_util["gpu"] < revealed  # fading: nothing confirmed it for a second
    contention = float(s.contention()[1][d.index])
    s.feedback(d, nominal * contention)  # a run exactly as predicted with the co-runner
    assert s.others_util["gpu"] == pytest.approx(revealed)
    s.observe(Observation(t=2.0 + s.unread_half_life_s, util={"cpu": 0.0}, domains=gpu))
    assert s.others_util["gpu"] == pytest.approx(revealed / 2, rel=0.02)  # fading again, from the confirmation


def test_a_run_that_cannot_tell_a_faint_share_from_none_does_not_confirm_it():
    s = make_planner()
    s.unit_domain = {"gpu": "gpu", "cpu": "cpu"}
    gpu = {"gpu": DomainReading(F[0], F[0], F[-1])}
    s.observe(Observation(t=1.0, util={"cpu": 0.0}, domains=gpu))
    d = s.decide(Demand(deadline_ms=30.0, min_accuracy=0.96, objective=Objective.MIN_LATENCY))
    nominal = float(s.optimiser.table.latency_ms[d.index])
    s.feedback(d, nominal * 1.2)  # a co-runner with a sixth of the GPU: within tolerance of none at all
    s.observe(Observation(t=1.0 + 3 * s.unread_half_life_s, util={"cpu": 0.0}, domains=gpu))
    faded = s.others_util["gpu"]
    s.feedback(d, nominal)
    assert s.others_util["gpu"] <= faded


def test_lockstep_threads_beside_a_busy_core_are_learned_and_avoided_only_while_it_is_busy():
    # Two threads next to a busy process on a 2-core CPU: one shares a core and every barrier waits for it.
    s = make_planner()
    budget = Demand(deadline_ms=40.0, objective=Objective.MIN_LATENCY)
    cpu_only = {"gpu": 0.95}  # keep the GPU out of the way
    s.observe(Observation(t=1.0, util={"cpu": 0.5, **cpu_only}))
    d = s.decide(budget)
    assert d.point.unit == "cpu" and d.point.threads == 2  # the share model alone: 1.5x, still the fastest
    contention = float(s.contention()[1][d.index])
    s.feedback(d, float(s.optimiser.table.latency_ms[d.index]) * contention * 20.0)
    assert np.allclose(s.multiplier(), 1.0)  # not charged to the group: it is the situation
    again = s.decide(budget)
    assert again.point.unit == "cpu" and again.point.threads == 1
    s.observe(Observation(t=1.1, util={"cpu": 0.0, **cpu_only}))  # the busy process left
    assert s.decide(budget).point.threads == 2
    s.observe(Observation(t=1.2, util={"cpu": 0.5, **cpu_only}))  # back: remembered
    assert s.decide(budget).point.threads == 1
    s.observe(Observation(t=1.2 + 10 * s.lockstep_half_life_s, util={"cpu": 0.5, **cpu_only}))
    assert s.decide(budget).point.threads == 2  # faded: tried again
    s.reset_learning()
    assert s._lockstep_now() == {}


def test_a_single_thread_beside_a_busy_core_is_not_lockstep():
    s = make_planner()
    s.observe(Observation(t=1.0, util={"cpu": 0.5, "gpu": 0.95}))
    d = s.decide(Demand(deadline_ms=40.0, objective=Objective.MIN_LATENCY))
    one = next(i for i, p in enumerate(s.optimiser.table.points) if p.unit == "cpu" and p.threads == 1
               and p.groups == d.point.groups)
    run = Decision(s.optimiser.table.points[one], one, 1.0, 1.0, 0.9, False)
    s.feedback(run, float(s.optimiser.table.latency_ms[one]) * 20.0)
    assert s._lockstep_now() == {}  # it fit: a slow single thread is the model's error, learned as a residual
    assert s.multiplier().max() > 1.0


def test_dispatch_overhead_is_learned_and_paid_by_every_point():
    s = make_planner()
    s.observe(Observation(t=1.0, util={"gpu": 0.95}))
    budget = Demand(deadline_ms=6.0, objective=Objective.MIN_ENERGY)
    before = s.decide(budget)
    assert not before.infeasible
    slack = budget.deadline_ms - before.latency_ms
    for _ in range(20):
        s.dispatched(slack + 0.5)  # what getting from the decision to the end of the run costs besides the run
    s.dispatched(float("nan"))  # ignored
    assert s.optimiser.dispatch_ms == pytest.approx(slack + 0.5)
    after = s.decide(budget)
    assert after.index != before.index or after.infeasible
    assert after.latency_ms <= budget.deadline_ms or after.infeasible


def test_an_infeasible_reason_says_what_was_asked_and_how_long_it_waited():
    # A 0.5 ms request that waited 0.49 ms was refused as "deadline 1e-06 ms": the clamp, not the budget.
    s = make_planner()
    late = s.decide(Demand(deadline_ms=0.5), now=10.0006, arrival_t=10.0)
    assert late.infeasible
    assert "no time left" in late.reason and "1e-06" not in late.reason
    assert "asked for 0.5 ms" in late.reason and "waited 0.6 ms" in late.reason
    short = s.decide(Demand(deadline_ms=1.0), now=10.0002, arrival_t=10.0)
    assert short.infeasible and "deadline 0.8 ms" in short.reason and "waited 0.2 ms" in short.reason
    on_time = s.decide(Demand(deadline_ms=0.1))
    assert on_time.infeasible and "waited" not in on_time.reason
