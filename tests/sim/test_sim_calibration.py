"""The TX2 power fit on the real grids (tests/fixtures/tx2), and that the simulator runs the fitted model."""

from pathlib import Path

import numpy as np
import pytest

from governor.core.physics import rail_mw
from governor.drivers.catalogue import load_board
from governor.sim.boards import load_tx2_fit
from governor.sim.calibrate import (
    DENVER_IDLE_HZ,
    RAILS,
    bench_ratio,
    fit_tx2,
    mape,
    predict_rails,
    rail_models,
    read_grid,
)

# Real TX2 measurements, copied into the repository with their source named (tests/fixtures/tx2/README.md).
DATA = Path(__file__).resolve().parents[1] / "fixtures" / "tx2"
BENCHES = ("cpubench", "membench")


@pytest.fixture(scope="module")
def grids():
    paths = [DATA / f"tx2-power-grid-{b}.csv" for b in BENCHES]
    missing = [p for p in paths if not p.exists()]
    assert not missing, f"the real TX2 grids are missing from the repository: {missing}"
    return [read_grid(p) for p in paths]


@pytest.fixture(scope="module")
def fresh(grids):
    return fit_tx2(grids)


def test_fit_meets_the_mape_targets_on_both_grids(grids, fresh):
    fit = fresh
    for grid in grids:
        predicted = predict_rails(fit, grid)
        assert mape(predicted["VDD_IN"], grid.mw["VDD_IN"]) < 5.0, grid.bench
        for rail in RAILS:
            assert mape(predicted[rail], grid.mw[rail]) < 10.0, (grid.bench, rail)


def test_shipped_fit_is_what_the_grids_give(grids, fresh):
    shipped = load_tx2_fit()
    for grid in grids:
        a, b = predict_rails(fresh, grid)["VDD_IN"], predict_rails(shipped, grid)["VDD_IN"]
        assert np.max(np.abs(a / b - 1)) < 0.01


def test_fitted_model_moves_the_right_way():
    fit = load_tx2_fit()
    cpu = fit.rails["VDD_SYS_CPU"]
    assert cpu["c_active"] > 0 and 0 <= cpu["stall_saving"] <= 1
    assert bench_ratio(fit, "membench") > bench_ratio(fit, "cpubench")  # membench waits on DRAM more
    assert fit.input_gain > 1.0  # regulator losses: input exceeds the rails it feeds


def test_simulator_rails_evaluate_exactly_the_fitted_forms(grids):
    fit = load_tx2_fit()
    spec = load_board("jetson-tx2")
    rails = {r.name: r for r in rail_models(fit, {d.name: [float(f) for f in d.table_hz] for d in spec.domains})}
    grid = grids[1]
    vector = predict_rails(fit, grid)
    for i in range(0, len(grid), 97):
        f_cpu, f_emc = grid.cpu_hz[i], grid.emc_hz[i]
        r_cpu, r_gpu = bench_ratio(fit, grid.bench), fit.rails["VDD_SYS_GPU"]["ratio_display"]
        freqs = {"cpu-a57": f_cpu, "cpu-denver": DENVER_IDLE_HZ, "gpu": grid.gpu_hz[i], "emc": f_emc}
        powered = {"cpu-a57": 4, "cpu-denver": 2, "gpu": 1, "emc": 1}
        activity = {"cpu-a57": grid.a57_busy_cores[i], "gpu": grid.gpu_util[i], "emc": grid.emc_util[i]}
        stall = {"cpu-a57": r_cpu * f_cpu / (r_cpu * f_cpu + f_emc),
                 "gpu": r_gpu * grid.gpu_hz[i] / (r_gpu * grid.gpu_hz[i] + f_emc)}
        for name in RAILS:
            simulated = rail_mw(rails[name], freqs, powered, activity, stall, 1.0)
            assert simulated == pytest.approx(vector[name][i], rel=1e-9)
