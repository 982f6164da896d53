"""Every policy replays a trace through the real daemon on sim:jetson-nano and behaves as its definition says."""

import numpy as np
import pytest

from governor.core.decision.optimiser import DecisionTable
from governor.core.types import OperatingPoint, Setpoints
from governor.drivers.catalogue import load_board
from governor.evaluate import POLICIES, generate_trace, make_policies
from governor.evaluate.metrics import summarise
from governor.evaluate.oracle import TrueContention, best_static, feasible
from governor.evaluate.policies import Ondemand, Schedutil
from governor.evaluate.replay import RequestRecord, replay, window_util
from governor.evaluate.traces import Arrival
from governor.sim import CoRunner, Phase, Scenario


@pytest.fixture(scope="module")
def run_policy(make_ctx, setup):
    """Replay once per (policy, trace) for the whole module: the assertions below only read the result."""
    done = {}

    def get(name, kind, requests):
        if (name, kind, requests) not in done:
            ctx = make_ctx(generate_trace(kind, requests=requests, seed=0))
            done[name, kind, requests] = (ctx, replay(make_policies([name])[0], ctx, setup))
        return done[name, kind, requests]

    return get


@pytest.mark.parametrize("name", list(POLICIES))
def test_each_policy_serves_a_short_trace_end_to_end(name, run_policy):
    ctx, run = run_policy(name, "corunner", 30)
    assert run.errors == [] and len(run.records) == 30
    assert all(r.simulated for r in run.records) and run.simulated
    assert run.board_energy_mj > 0 and run.duration_s >= ctx.trace.end_s - 1e-9
    assert run.ticks and all(t.power_mw and t.power_mw > 0 for t in run.ticks)
    assert {r.k for r in run.records} == {4}  # the corunner trace asks for the full network
    assert all(r.finish_s > r.start_s >= r.arrival_s - 1e-12 for r in run.records)


def test_performance_pins_every_domain_at_its_top(run_policy):
    ctx, run = run_policy("performance", "corunner", 30)
    assert all(dict(r.setpoints_hz) == ctx.top_hz for r in run.records)
    assert all(dict(t.clocks_hz) == ctx.top_hz for t in run.ticks)


def test_groups_only_keeps_top_clocks_and_drops_the_group_the_floor_allows(run_policy):
    ctx, run = run_policy("groups-only", "bursty", 40)
    assert all(dict(r.setpoints_hz) == ctx.top_hz for r in run.records)
    assert {r.k for r in run.records} == {3}  # floor G-1: the cheaper sub-network meets every deadline at top clocks
    base = ctx.profile.table.points[ctx.baseline_row]
    assert {(r.unit, r.threads) for r in run.records} == {(base.unit, base.threads)}


def test_dvfs_only_runs_the_full_network_on_the_baseline_mapping_below_top_clocks(run_policy):
    ctx, run = run_policy("dvfs-only", "bursty", 40)
    base = ctx.profile.table.points[ctx.baseline_row]
    assert {(r.unit, r.threads, r.k) for r in run.records} == {(base.unit, base.threads, 4)}
    domain = ctx.spec.unit(base.unit).domain
    assert any(r.setpoints_hz[domain] < ctx.top_hz[domain] for r in run.records)


@pytest.mark.parametrize("name", ["schedutil", "ondemand"])
def test_kernel_governors_move_clocks_themselves_and_the_daemon_writes_none(name, run_policy):
    ctx, run = run_policy(name, "steady", 40)
    assert all(not r.setpoints_hz for r in run.records)
    gpu = [t.clocks_hz["gpu"] for t in run.ticks]
    assert len(set(gpu)) > 1 and min(gpu[1:]) < ctx.top_hz["gpu"]


def test_best_static_runs_one_point(run_policy):
    _ctx, run = run_policy("best-static", "corunner", 30)
    assert len({(r.unit, r.threads, r.k, tuple(sorted(r.setpoints_hz.items()))) for r in run.records}) == 1


def test_oracle_meets_every_feasible_deadline_and_never_slows_down_under_the_corunner(run_policy):
    ctx, run = run_policy("oracle", "corunner", 30)
    flags = feasible(ctx.profile.table, ctx.contention, ctx.trace.arrivals)
    (m,) = summarise([run], {}, flags)
    assert m.feasible_met_pct == 100.0
    busy = next(p for p in ctx.trace.scenario.phases if p.corunners)
    inside = [r for r in run.records if busy.start_s <= r.arrival_s < busy.end_s]
    before = [r for r in run.records if r.arrival_s < busy.start_s]
    assert inside and before
    assert min(r.setpoints_hz["gpu"] for r in inside) >= max(r.setpoints_hz["gpu"] for r in before)


def test_ours_meets_at_least_the_deadlines_of_performance_for_less_energy(run_policy):
    ctx, ours = run_policy("ours", "steady", 40)
    _, perf = run_policy("performance", "steady", 40)
    flags = feasible(ctx.profile.table, ctx.contention, ctx.trace.arrivals)
    m_ours, m_perf = summarise([ours, perf], {}, flags, floor_mw=1000.0)
    assert m_ours.deadlines_met_pct >= m_perf.deadlines_met_pct
    assert m_ours.energy_per_request_mj < m_perf.energy_per_request_mj
    assert m_ours.active_energy_per_request_mj < m_perf.active_energy_per_request_mj


# -- the pieces, on hand-made inputs -----------------------------------------------------------------
def _table(points, latency, energy, accuracy):
    return DecisionTable(tuple(points), np.array(latency, float), np.array(energy, float), np.array(accuracy, float))


def _point(hz, k=4):
    return OperatingPoint("gpu", 1, Setpoints({"gpu": hz}), k)


def test_true_contention_follows_the_simulators_fixed_work_rule():
    spec = load_board("jetson-nano")
    top = max(spec.domain("gpu").table_hz)
    table = _table([_point(top), _point(top // 2)], [1, 2], [1, 1], [0.8, 0.8])
    scenario = Scenario((Phase(1.0, 2.0, (CoRunner("gpu", 0.5),)),))
    contention = TrueContention(table, spec, scenario)
    assert contention.multiplier(0.0, 0.5).tolist() == [1.0, 1.0]
    m = contention.multiplier(1.2, 1.3)
    assert m[0] == pytest.approx(2.0)  # half the unit at its top clock
    assert m[1] == pytest.approx(2.0)  # at half clock it wants all of it; round-robin gives it half
    assert contention.multiplier(0.5, 1.5).tolist() == pytest.approx(m.tolist())  # worst case over the window


def test_best_static_meets_most_budgets_then_spends_least():
    spec = load_board("jetson-nano")
    table = _table([_point(1), _point(2), _point(3, k=1)], [10.0, 4.0, 1.0], [1.0, 3.0, 0.5], [0.8, 0.8, 0.6])
    contention = TrueContention(table, spec, Scenario.idle())
    arrivals = tuple(Arrival(i, i * 0.1, 5.0, 0.75) for i in range(5))
    assert best_static(table, contention, arrivals) == 1  # row 0 too slow, row 2 below the accuracy floor
    relaxed = tuple(Arrival(i, i * 0.1, 50.0, 0.75) for i in range(5))
    assert best_static(table, contention, relaxed) == 0  # everything meets: the cheapest that keeps the floor
    assert feasible(table, contention, (Arrival(0, 0.0, 3.0, 0.75), Arrival(1, 0.1, 3.0, None))) == [False, True]


def test_governor_rules():
    table = (100, 200, 400, 800)
    assert Schedutil().target_hz(table, 400, 0.5) == pytest.approx(250.0)  # 1.25 x util x current clock
    assert Ondemand().target_hz(table, 400, 0.96) == 800
    assert Ondemand().target_hz(table, 400, 0.5) == pytest.approx(450.0)
    sched = Schedutil()
    assert 0 < sched.smooth(0.0, 1.0) < 0.5  # PELT-like: one 10 ms window moves util less than half way


def test_window_util_counts_our_runs_and_the_corunners():
    spec = load_board("jetson-nano")
    run = RequestRecord(0, 0.0, 10.0, None, 0.05, 0.10, "gpu", 1, 4, {}, 50.0, 1.0, 0.8, False)
    clocks = {"gpu": max(spec.domain("gpu").table_hz), "cpu": max(spec.domain("cpu").table_hz)}
    util = window_util(spec, [run], 0.0, 0.1, clocks, Scenario.idle())
    assert util["gpu"] == pytest.approx(0.5) and util["cpu"] == 0.0
    busy = Scenario.constant([CoRunner("gpu", 0.4)])
    assert window_util(spec, [run], 0.0, 0.1, clocks, busy)["gpu"] == pytest.approx(0.5 + 0.4 * 0.5)
