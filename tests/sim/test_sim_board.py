"""Simulated boards end to end: setpoints go in through the real drivers, physics comes back out."""

import itertools
import statistics

import pytest

from governor.core.physics import run_cost
from governor.core.types import OperatingPoint, Setpoints
from governor.drivers.catalogue import board_names
from governor.sim import CoRunner, Scenario, SimExecutor, grouped_alexnet, open_sim_board

NET = grouped_alexnet(4)
MHZ = 1_000_000


@pytest.fixture
def tx2():
    with open_sim_board("sim:jetson-tx2", seed=1) as sim:
        yield sim, sim.open_drivers()


def _pin(board, **hz):
    applied = board.apply(Setpoints(hz))
    assert not applied.errors, applied.errors
    return applied


def test_cpu_clock_written_through_drivers_sets_latency_and_power(tx2):
    sim, board = tx2
    _pin(board, emc=1_866_000_000)
    latency, cpu_mw = [], []
    for mhz in (345.6, 1113.6, 2035.2):
        applied = _pin(board, **{"cpu-a57": int(mhz * MHZ)})
        assert applied["cpu-a57"].cur_hz == int(mhz * MHZ)  # the kernel reacted to the limits at once
        runs = [SimExecutor(sim, NET).run("a57", k=4, threads=4) for _ in range(5)]
        latency.append(statistics.median(r.latency_ms for r in runs))
        cpu_mw.append(board.sample().power_mw["VDD_SYS_CPU"])
    assert latency[0] > latency[1] > latency[2]
    assert cpu_mw[0] < cpu_mw[1] < cpu_mw[2]


def test_latency_is_the_documented_roofline_at_the_applied_clocks(tx2):
    sim, board = tx2
    _pin(board, **{"cpu-a57": 1_420_800_000, "gpu": 624_750_000, "emc": 800_000_000})
    executor = SimExecutor(sim, NET)
    phys = sim.physics
    for unit, f, threads in (("a57", 1_420_800_000, 2), ("gpu", 624_750_000, 1)):
        expected = run_cost(NET, 3, phys.units[unit], f, threads, phys.emc_bytes_per_s(800_000_000)).total_s
        assert executor.run(unit, k=3, threads=threads).latency_ms == pytest.approx(expected * 1000, rel=1e-9)


def test_gpu_and_memory_clocks_and_groups_move_latency_the_way_physics_says(tx2):
    sim, board = tx2
    executor = SimExecutor(sim, NET)
    by_gpu, by_emc = [], []
    for gpu_hz in (114_750_000, 624_750_000, 1_300_500_000):
        _pin(board, gpu=gpu_hz, emc=1_866_000_000)
        by_gpu.append(executor.run("gpu", k=4).latency_ms)
    for emc_hz in (40_800_000, 408_000_000, 1_866_000_000):
        _pin(board, gpu=1_300_500_000, emc=emc_hz)
        by_emc.append(executor.run("gpu", k=4).latency_ms)
    by_k = [executor.run("gpu", k=k).latency_ms for k in NET.groups]
    assert by_gpu[0] > by_gpu[1] > by_gpu[2]
    assert by_emc[0] > by_emc[1] >= by_emc[2]
    assert by_k == sorted(by_k)


def test_a_co_runner_slows_the_workload_as_time_sharing_would(tx2):
    sim, board = tx2
    _pin(board, **{"cpu-a57": 2_035_200_000, "emc": 1_866_000_000})
    alone = SimExecutor(sim, NET).run("a57", k=2, threads=4).latency_ms
    sim.set_scenario(Scenario.constant([CoRunner("a57", 0.5, stall_ratio=0.0)]))
    shared = SimExecutor(sim, NET).run("a57", k=2, threads=4).latency_ms
    assert shared == pytest.approx(2 * alone, rel=1e-6)


def test_a_hot_workload_held_long_enough_is_throttled_and_recovers():
    with open_sim_board("sim:jetson-nano", ambient_c=55.0) as sim:
        board = sim.open_drivers()
        top = {d.name: d.table_hz[-1] for d in sim.spec.domains}
        _pin(board, **top)
        sim.set_scenario(Scenario.constant([CoRunner("a57", 1.0), CoRunner("gpu", 1.0)]))
        sim.advance(30.0)
        assert board.sample().domains["cpu"].cur_hz == top["cpu"]  # not yet hot
        sim.advance(570.0)
        hot = board.sample()
        assert hot.temps_c["CPU-therm"] > 90.0
        assert hot.domains["gpu"].cur_hz < top["gpu"]
        assert hot.domains["cpu"].cur_hz < top["cpu"]
        assert hot.domains["cpu"].max_hz < top["cpu"]  # the cooling device shows in scaling_max_freq
        sim.set_scenario(Scenario.idle())
        sim.advance(600.0)
        cool = board.sample()
        assert cool.domains["cpu"].max_hz == top["cpu"] and cool.domains["gpu"].cur_hz == top["gpu"]


def test_settle_makes_a_measurement_independent_of_what_ran_before(tx2):
    sim, board = tx2
    top = {"cpu-a57": 2_035_200_000, "gpu": 1_300_500_000, "emc": 1_866_000_000}
    slow = {"cpu-a57": 345_600_000, "gpu": 114_750_000, "emc": 204_000_000}

    def energy_at_slow_clocks(settle):
        _pin(board, **slow)
        if settle:
            sim.settle()
        return SimExecutor(sim, NET).run("gpu", k=4).energy_mj

    cold = energy_at_slow_clocks(settle=True)
    _pin(board, **top)
    sim.set_scenario(Scenario.constant([CoRunner("a57", 1.0), CoRunner("gpu", 1.0)]))
    sim.advance(600.0)  # heat the board: leakage rises with temperature
    sim.set_scenario(Scenario.idle())
    assert energy_at_slow_clocks(settle=False) > 1.1 * cold
    assert energy_at_slow_clocks(settle=True) == pytest.approx(cold, rel=1e-3)


def _trace(seed):
    with open_sim_board("sim:jetson-tx2", seed=seed, scenario="random") as sim:
        board = sim.open_drivers()
        out = []
        for _ in range(20):
            sim.advance(0.1)
            obs = board.sample()
            out.append((dict(obs.power_mw), dict(obs.temps_c), {k: v.cur_hz for k, v in obs.domains.items()}))
        return out


def test_a_seed_makes_runs_repeatable():
    assert _trace(3) == _trace(3)
    assert _trace(3) != _trace(4)


def test_ina231_refreshes_every_264_ms_and_ina3221_every_step():
    with open_sim_board("sim:odroid-xu3", scenario="random", seed=2) as sim:
        board = sim.open_drivers()
        changes, last = [], None
        for _ in range(120):
            sim.advance(0.01)
            value = board.sample().power_mw["VDD_ARM"]
            if value != last:
                changes.append(sim.engine.t)
                last = value
        gaps = [b - a for a, b in itertools.pairwise(changes[1:])]  # the first change is the first read
        assert 3 <= len(changes) <= 6 and gaps
        assert all(g == pytest.approx(0.263808, abs=0.011) for g in gaps)
    with open_sim_board("sim:jetson-tx2", scenario="random", seed=2) as sim:
        board = sim.open_drivers()
        values = []
        for _ in range(20):
            sim.advance(0.01)
            values.append(board.sample().power_mw["VDD_IN"])
        moved = sum(a != b for a, b in itertools.pairwise(values))
        assert moved >= 12  # a 1 ms sensor has refreshed before every 10 ms read (equal values are noise ties)


def test_power_noise_is_small_and_unbiased(tx2):
    sim, board = tx2
    _pin(board, **{"cpu-a57": 1_113_600_000})
    sim.set_scenario(Scenario.constant([CoRunner("a57", 0.6)]))
    sim.advance(5.0)
    readings = []
    for _ in range(200):
        sim.advance(0.005)
        readings.append(board.sample().power_mw["VDD_IN"])
    truth = sim.truth().rails_mw["VDD_IN"]
    spread = statistics.pstdev(readings) / statistics.mean(readings)
    assert 0.002 < spread < 0.015
    assert statistics.mean(readings) == pytest.approx(truth, rel=0.01)


def test_everything_the_simulator_produces_is_labelled_simulated(tx2):
    sim, board = tx2
    assert sim.simulated and board.simulated and sim.truth().simulated
    assert board.sample().simulated
    executor = SimExecutor(sim, NET)
    assert executor.simulated and executor.run("gpu", k=1).simulated
    point = OperatingPoint(unit="a57", threads=2, setpoints=Setpoints({"cpu-a57": 2_035_200_000}), groups=2)
    sample = executor.run_point(point)
    assert sample.simulated and sample.latency_ms > 0 and sample.energy_mj > 0


def test_offlined_cpus_slow_the_cluster_and_leave_proc_stat(tx2):
    sim, board = tx2
    _pin(board, **{"cpu-a57": 2_035_200_000})
    executor = SimExecutor(sim, NET)
    four = executor.run("a57", k=4, threads=4).latency_ms
    assert board.hotplug.set_online({1, 2}) == frozenset({1, 2})  # cpus 3-5 (three of the four A57) go off
    sim.advance(0.1)
    one = executor.run("a57", k=4, threads=4).latency_ms
    assert one > 2 * four
    stat = sim.sysfs.read("proc/stat")
    assert "cpu3 " not in stat and "cpu0 " in stat


@pytest.mark.parametrize("name", board_names())
def test_every_catalogue_board_runs_behind_its_drivers(name):
    with open_sim_board(f"sim:{name}") as sim:
        board = sim.open_drivers()
        expected = {"thermal"} if not sim.spec.thermal else set()  # a host declares no thermal zones
        assert set(board.unavailable) <= expected, board.unavailable
        executor = SimExecutor(sim, NET)
        for unit in sim.spec.units:
            assert executor.run(unit.name, k=2, threads=2).latency_ms > 0
        obs = board.sample()
        assert obs.simulated and obs.domains and not obs.unavailable
        assert (obs.total_power_mw is not None) == bool(sim.spec.power)


def test_a_run_loads_its_unit_and_shows_in_the_next_sample(tx2):
    sim, board = tx2
    _pin(board, gpu=1_300_500_000, emc=1_866_000_000)
    idle = board.sample()
    executor = SimExecutor(sim, grouped_alexnet(4, batch=64))
    run = executor.run("gpu", k=4)
    busy = board.sample()
    assert busy.t == pytest.approx(idle.t + run.latency_ms / 1000)
    assert busy.util["gpu"] > 0.9 and idle.util["gpu"] < 0.1
    assert busy.power_mw["VDD_SYS_GPU"] > idle.power_mw["VDD_SYS_GPU"] + 500


def test_limits_written_after_a_run_survive_the_kernel_publishing_that_run():
    # A run leaves its results to be published on the next read; a limit written in between (the daemon
    # handing a cluster back to its governor) is software's new request and must not be overwritten.
    with open_sim_board("sim:odroid-xu3", seed=1) as sim:
        board = sim.open_drivers()
        a15 = board.domains["cpu-a15"]
        lo, hi = a15.read().min_hz, a15.read().max_hz
        _pin(board, **{"cpu-a15": lo})
        SimExecutor(sim, NET).run("a15", k=1, threads=4)
        a15.set_range(lo, hi)
        assert board.sample().domains["cpu-a15"].max_hz == hi


def test_a_greedy_gpu_co_runner_gets_only_its_round_robin_slice(tx2):
    # GPU runlists time-slice contexts round-robin: a co-runner wanting 90 % of the engine still leaves
    # our context half of it, so the run takes twice as long, not ten times; a light one keeps its share.
    sim, board = tx2
    _pin(board, gpu=1_300_500_000, emc=1_866_000_000)
    alone = SimExecutor(sim, NET).run("gpu", k=4).latency_ms
    sim.set_scenario(Scenario.constant([CoRunner("gpu", 0.9, stall_ratio=0.0, fixed_work=False)]))
    greedy = SimExecutor(sim, NET).run("gpu", k=4).latency_ms
    sim.set_scenario(Scenario.constant([CoRunner("gpu", 0.25, stall_ratio=0.0, fixed_work=False)]))
    light = SimExecutor(sim, NET).run("gpu", k=4).latency_ms
    assert greedy == pytest.approx(2 * alone, rel=1e-6)
    assert light == pytest.approx(alone / 0.75, rel=1e-6)
