"""The pure physics: roofline latency, power terms, voltage curves, RC heat."""

import math

import pytest

from governor.core.physics import (
    LayerWork,
    PowerTerm,
    RailModel,
    RcNode,
    UnitPerf,
    VoltageCurve,
    Workload,
    leakage_gain,
    rail_mw,
    rc_step,
    run_cost,
    soft_roofline,
    term_mw,
)

CPU = UnitPerf(macs_per_cycle=4, efficiency=0.25, cores=4, parallel_fraction=0.9, overlap_p=2, bytes_per_cycle=6)
NET = Workload("net", {1: (LayerWork(5e6, 4e5), LayerWork(1e6, 2e6)), 2: (LayerWork(1e7, 8e5), LayerWork(2e6, 4e6))})


def test_soft_roofline_lies_between_max_and_sum():
    for tc, tm in [(1.0, 1.0), (3.0, 0.5), (0.0, 2.0)]:
        for p in (1.0, 2.0, 8.0):
            t = soft_roofline(tc, tm, p)
            assert max(tc, tm) - 1e-12 <= t <= tc + tm + 1e-12
    assert soft_roofline(2.0, 3.0, 1.0) == pytest.approx(5.0)
    assert soft_roofline(2.0, 3.0, 200.0) == pytest.approx(3.0, rel=1e-2)


def test_latency_falls_with_unit_and_memory_clock_and_rises_with_groups():
    by_f = [run_cost(NET, 1, CPU, f, 4, 10e9).total_s for f in (0.5e9, 1e9, 2e9)]
    by_bw = [run_cost(NET, 1, CPU, 1e9, 4, bw).total_s for bw in (1e9, 4e9, 16e9)]
    assert by_f == sorted(by_f, reverse=True) and by_f[0] > by_f[-1]
    assert by_bw == sorted(by_bw, reverse=True) and by_bw[0] > by_bw[-1]
    assert run_cost(NET, 2, CPU, 1e9, 4, 10e9).total_s > run_cost(NET, 1, CPU, 1e9, 4, 10e9).total_s


def test_threads_speed_up_by_amdahl_and_stall_tracks_memory_share():
    one, four = (run_cost(NET, 1, CPU, 1e9, n, 1e15) for n in (1, 4))
    assert one.compute_s / four.compute_s == pytest.approx(1 / (0.1 + 0.9 / 4))
    starved = run_cost(NET, 1, CPU, 2e9, 4, 0.5e9)
    assert starved.stall > run_cost(NET, 1, CPU, 2e9, 4, 50e9).stall
    assert 0.0 <= starved.stall <= 1.0


def test_bad_inputs_get_clear_errors():
    with pytest.raises(ValueError, match="no k=3"):
        NET.layers(3)
    with pytest.raises(ValueError, match="positive"):
        run_cost(NET, 1, CPU, 0.0, 1, 1e9)
    with pytest.raises(ValueError, match="ascend"):
        VoltageCurve((2.0, 1.0), (0.8, 0.9))


def test_voltage_curve_interpolates_and_holds_the_ends():
    curve = VoltageCurve((1e8, 1e9, 2e9), (0.8, 0.8, 1.1))
    assert curve(5e7) == 0.8 and curve(3e9) == 1.1
    assert curve(1.5e9) == pytest.approx(0.95)


def test_power_is_static_plus_cv2f_activity():
    curve = VoltageCurve((1e9, 2e9), (0.8, 1.0))
    term = PowerTerm("cpu", curve, leak_mw_per_v=100.0, c_clock_pf=10.0, c_active_pf=300.0, stall_saving=0.5)
    busy = term_mw(term, 2e9, 4, 4.0, 0.0, 1.0)
    assert busy == pytest.approx(100.0 + 1.0 * 2.0 * (10.0 * 4 + 300.0 * 4))
    assert term_mw(term, 2e9, 4, 4.0, 1.0, 1.0) < busy  # a stalled core switches less
    assert term_mw(term, 1e9, 4, 4.0, 0.0, 1.0) < busy
    assert term_mw(term, 0.0, 4, 4.0, 0.0, 1.0) == 0.0  # a domain that is off draws nothing
    rail = RailModel("VDD_CPU", 50.0, (term,))
    hot = rail_mw(rail, {"cpu": 2e9}, {"cpu": 4}, {"cpu": 4.0}, {}, leakage_gain(70.0, 40.0, 30.0))
    assert hot == pytest.approx(50.0 * 2 + 100.0 * 2 + 2.0 * (40 + 1200))


def test_rc_step_is_exact_exponential_for_any_step():
    node = RcNode(r_c_per_w=5.0, tau_s=10.0)
    one = rc_step(25.0, 25.0, 4.0, node, 10.0)
    assert one == pytest.approx(45.0 - 20.0 * math.exp(-1))
    many = 25.0
    for _ in range(100):
        many = rc_step(many, 25.0, 4.0, node, 0.1)
    assert many == pytest.approx(one)
    assert rc_step(25.0, 25.0, 4.0, node, 1e9) == pytest.approx(45.0)
