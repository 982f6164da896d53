"""The two clocks: virtual time for benchmarks (faster than real), real time for the live demo."""

import time

import pytest

from governor.sim import RealClock, Scenario, SimExecutor, VirtualClock, grouped_alexnet, open_sim_board


def test_virtual_time_runs_far_faster_than_real_time():
    with open_sim_board("sim:jetson-tx2", scenario="random") as sim:
        board = sim.open_drivers()
        started = time.perf_counter()
        sim.advance(300.0)
        wall = time.perf_counter() - started
        assert board.sample().t == 300.0
        assert wall < 30.0  # >= 10x real time even on a loaded 2-core machine


def test_virtual_clock_only_moves_forward_and_real_clock_reads_its_source():
    clock = VirtualClock()
    assert clock.advance(1.5) == 1.5
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1.0)
    ticks = iter([10.0, 10.0, 12.5])
    real = RealClock(source=lambda: next(ticks))
    assert real() == 0.0 and real() == 2.5


def test_a_real_time_board_follows_the_wall_clock_on_each_read():
    with open_sim_board("sim:jetson-nano", clock="real") as sim:
        board = sim.open_drivers()
        first = board.sample()
        time.sleep(0.2)
        second = board.sample()
        assert second.t - first.t == pytest.approx(0.2, abs=0.15)
        assert sim.engine.t == pytest.approx(second.t, abs=0.05)
        with pytest.raises(RuntimeError, match="virtual clock"):
            sim.advance(1.0)


def test_a_background_thread_keeps_a_live_board_changing():
    with open_sim_board("sim:jetson-nano", clock="real") as sim:
        sim.set_scenario(Scenario.demo([u.name for u in sim.spec.units], step_s=0.1))
        sim.start(period_s=0.02)
        board = sim.open_drivers()
        seen = []
        for _ in range(6):
            time.sleep(0.06)
            obs = board.sample()
            seen.append((obs.t, obs.total_power_mw, tuple(sorted(obs.util.items()))))
        sim.stop()
        assert not sim.running
        assert len({s[0] for s in seen}) == 6 and len({s[1] for s in seen}) > 1 and len({s[2] for s in seen}) > 1
        assert all(board.sample().simulated for _ in range(2))


def test_a_real_time_run_takes_its_latency_in_wall_time():
    with open_sim_board("sim:jetson-nano", clock="real") as sim:
        executor = SimExecutor(sim, grouped_alexnet(4))
        started = time.perf_counter()
        run = executor.run("a57", k=4, threads=4)
        wall_ms = (time.perf_counter() - started) * 1000
        assert run.simulated and run.latency_ms > 10
        assert wall_ms >= 0.8 * run.latency_ms
