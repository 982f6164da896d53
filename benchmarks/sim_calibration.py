"""Calibrate the simulated TX2 on the real DVFS grids and check it end to end; print public-figure checks.

Usage::

    python benchmarks/sim_calibration.py [--data tests/fixtures/tx2] [--write] [--stride 1]

1. Fit the per-rail power model to ``tx2-power-grid-{cpubench,membench}.csv`` and print the fit's
   MAPE per rail and for VDD_IN (``--write`` stores the coefficients the simulator ships).
2. Replay every grid row on ``sim:jetson-tx2`` through the real drivers: pin the A57 cluster, GPU
   and EMC with ``Board.apply``, load the board as the benchmark did (its measured CPU, GPU and
   memory-bus utilisation), let it run 1 s of virtual time, read the rails through the INA3221
   driver 5 times 20 ms apart and compare the median with the grid. Sensor noise, quantisation,
   the sensor refresh and the thermal state (leakage) are all in the loop.
3. Print idle and full-load simulated power of every catalogue board next to the public figures.
4. Print how fast virtual time runs: simulated inferences per wall second, virtual s per wall s.

Every figure printed here is simulated except the grid values it is compared against.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from governor.core.types import Setpoints
from governor.drivers.catalogue import board_names, load_board
from governor.sim import SimExecutor, grouped_alexnet, open_sim_board
from governor.sim.boards import TX2_FIT_RESOURCE, board_physics, load_tx2_fit
from governor.sim.calibrate import RAILS, Grid, bench_ratio, fit_tx2, mape, predict_rails, read_grid
from governor.sim.dvfs import DomainControl
from governor.sim.engine import Engine
from governor.sim.scenario import CoRunner, Scenario

REPO = Path(__file__).resolve().parents[1]
BENCHES = ("cpubench", "membench")


def fit_report(grids: list[Grid], write: bool) -> None:
    fit = fit_tx2(grids)
    print("== 1. fitted model on the grids (MAPE %, offline evaluation) ==")
    for grid in grids:
        pred = predict_rails(fit, grid)
        cells = "  ".join(f"{r}={mape(pred[r], grid.mw[r]):5.2f}" for r in (*RAILS, "VDD_IN"))
        print(f"  {grid.bench:9s} {cells}")
    if write:
        target = REPO / "governor" / "sim" / TX2_FIT_RESOURCE
        target.write_text(json.dumps(fit.to_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(f"  wrote {target.relative_to(REPO)}")


def _replay_load(grid: Grid, i: int) -> Scenario:
    fit = load_tx2_fit()
    return Scenario.constant([
        CoRunner("a57", float(grid.a57_busy_cores[i]) / 4, stall_ratio=bench_ratio(fit, grid.bench), fixed_work=False),
        CoRunner("gpu", float(grid.gpu_util[i]), stall_ratio=fit.rails["VDD_SYS_GPU"]["ratio_display"],
                 fixed_work=False),
        CoRunner("memory", 0.0, traffic_bytes_per_s=float(grid.emc_util[i]) * 32 * float(grid.emc_hz[i])),
    ], name=f"{grid.bench}-row{i}")


def _setpoints(grid: Grid, i: int) -> Setpoints:
    return Setpoints({"cpu-a57": int(grid.cpu_hz[i]), "gpu": int(grid.gpu_hz[i]), "emc": int(grid.emc_hz[i])})


def replay(grid: Grid, stride: int, seed: int) -> dict[str, float]:
    """MAPE % per rail of the simulated board read through the drivers, over every ``stride``-th row."""
    with open_sim_board("sim:jetson-tx2", seed=seed) as sim:
        board = sim.open_drivers()
        rows = range(0, len(grid), stride)
        middle = len(grid) // 2
        board.apply(_setpoints(grid, middle))
        sim.set_scenario(_replay_load(grid, middle))
        sim.advance(600.0)  # warm up: the grid ran for hours, so the board was warm
        measured: dict[str, list[float]] = {r: [] for r in (*RAILS, "VDD_IN")}
        for i in rows:
            board.apply(_setpoints(grid, i))
            sim.set_scenario(_replay_load(grid, i))
            sim.advance(1.0)
            reads = []
            for _ in range(5):
                sim.advance(0.02)
                reads.append(board.sample())
            assert all(obs.simulated for obs in reads)
            for rail in measured:
                measured[rail].append(statistics.median(obs.power_mw[rail] for obs in reads))
        idx = np.array(list(rows))
        return {r: mape(np.array(v), grid.mw[r][idx]) for r, v in measured.items()}


def public_figures() -> None:
    print("== 3. simulated board power vs public figures (mW; full = every unit busy at top OPPs) ==")
    for name in board_names():
        spec = load_board(name)
        physics = board_physics(spec)
        engine = Engine(spec, physics)
        idle = engine.truth().total_mw
        engine.controls = {d.name: DomainControl(governor="performance") for d in spec.domains}
        emc_top = max((d.table_hz[-1] for d in spec.domains if d.kind == "emc"), default=physics.fixed_emc_hz)
        engine.scenario = Scenario.constant([CoRunner(u.name, 1.0) for u in spec.units]
                                            + [CoRunner("memory", 0.0, traffic_bytes_per_s=0.4 * 32 * emc_top)])
        engine.advance(5.0)
        print(f"  {name:18s} idle {idle:7.0f}  full {engine.truth().total_mw:7.0f}  ({physics.sources[-1]})")
        if name == "jetson-nano":  # nvpmodel 5 W: cpu0-1 online, CPU <= 918 MHz, GPU <= 640 MHz
            engine.online = frozenset({0, 1})
            engine.controls = {"cpu": DomainControl("performance", max_hz=921.6e6),
                               "gpu": DomainControl("performance", max_hz=614.4e6)}
            engine.advance(10.0)
            print(f"  {'  nano 5 W mode':18s}               full {engine.truth().total_mw:7.0f}  (budget 5 W)")


def speed(runs: int = 500) -> None:
    print("== 4. virtual-time speed (sim:jetson-tx2, AlexNet-CIFAR k=4 on the GPU at the idle clocks) ==")
    with open_sim_board("sim:jetson-tx2") as sim:
        board, executor = sim.open_drivers(), SimExecutor(sim, grouped_alexnet(4))
        for label, read in (("runs only", False), ("runs + a driver sample each", True)):
            started, t0 = time.perf_counter(), sim.engine.t
            for _ in range(runs):
                executor.run("gpu", k=4)
                if read:
                    board.sample()
            wall = time.perf_counter() - started
            print(f"  {label:28s} {runs / wall:7.0f} inferences/s wall, {(sim.engine.t - t0) / wall:6.2f}x real time")
        started = time.perf_counter()
        sim.advance(600.0)
        print(f"  {'idle advance (600 s)':28s} {600.0 / (time.perf_counter() - started):7.0f}x real time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "tests" / "fixtures" / "tx2")
    parser.add_argument("--write", action="store_true", help="store the fitted coefficients in the package")
    parser.add_argument("--stride", type=int, default=1, help="replay every N-th grid row (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    grids = [read_grid(args.data / f"tx2-power-grid-{b}.csv") for b in BENCHES]
    fit_report(grids, args.write)
    print("== 2. sim:jetson-tx2 through the drivers (MAPE %, simulated sensors vs the real grid) ==")
    for grid in grids:
        started = time.perf_counter()
        scores = replay(grid, args.stride, args.seed)
        cells = "  ".join(f"{r}={v:5.2f}" for r, v in scores.items())
        print(f"  {grid.bench:9s} {cells}  ({len(range(0, len(grid), args.stride))} rows, "
              f"{time.perf_counter() - started:.1f} s wall)")
    public_figures()
    speed()


if __name__ == "__main__":
    main()
