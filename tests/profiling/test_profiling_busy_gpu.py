"""Board power with the GPU busy (issue 19.1): the stall-coupled power shape and the grids it is judged on.

A busy GPU couples its clock with the memory clock: the run stalls a fraction that depends on both,
and the GPU and DRAM draw accordingly. The simulated TX2 (SIMULATED) produces such grids through the
real drivers; on them the stall-coupled shape must beat the plain polynomial, and the profiler must
offer it only with enough points and only where the axes name a memory clock.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from governor.core.perf.features import Axes, CandidateSpec, KBasis, memory_column, stall_columns
from governor.core.perf.fit import evaluate, fit
from governor.core.perf.model import candidates_for, fit_target
from governor.core.perf.schema import SpecRecord
from governor.sim.grids import KERNELS, gpu_busy_grid, read_settings, write_grid

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tx2" / "tx2-power-grid-cpubench.csv"
AXES = Axes(("cpu", "gpu", "emc"), (2_035_200_000.0, 1_300_500_000.0, 1_866_000_000.0), kmax=1)


@pytest.fixture(scope="module")
def busy_grid():
    """Every third setting of the real grid, a compute-bound GPU kernel (memory-bound only at low EMC clocks)."""
    settings = read_settings(FIXTURE)[::3]
    rows = gpu_busy_grid("gpu-compute", settings)
    grid = np.array([[r.cpu_khz * 1000.0, r.gpu_hz, r.emc_hz, 1.0] for r in rows])
    return grid, np.array([r.power_mw for r in rows]), np.array([r.latency_ms for r in rows])


def test_the_simulated_grid_couples_gpu_and_memory_clocks(busy_grid):
    grid, power, latency = busy_grid
    assert len(power) == 382 and np.all(power > 1000) and np.all(power < 15_000)
    top_gpu, low_emc, top_emc = grid[:, 1] == grid[:, 1].max(), grid[:, 2] == grid[:, 2].min(), \
        grid[:, 2] == grid[:, 2].max()
    # at the lowest memory clock the kernel waits on DRAM: raising the GPU clock barely speeds it up
    slow = latency[top_gpu & low_emc].mean() / latency[top_gpu & top_emc].mean()
    assert slow > 2.0
    # and the GPU's power gain from its own clock depends on the memory clock: not a sum of one-clock terms
    by_emc = []
    for emc in (grid[:, 2].min(), grid[:, 2].max()):
        rows = grid[:, 2] == emc
        hi = power[rows & (grid[:, 1] == grid[:, 1].max())].mean()
        lo = power[rows & (grid[:, 1] == grid[:, 1].min())].mean()
        by_emc.append(hi - lo)
    assert by_emc[1] > 1.5 * by_emc[0]


def test_the_stall_shape_fits_a_busy_gpu_better_than_the_plain_polynomial(busy_grid):
    grid, power, _ = busy_grid
    g, k = AXES.normalise(grid)
    train = np.random.default_rng(0).choice(len(power), 48, replace=False)

    def error(spec: CandidateSpec) -> float:
        params = fit(spec, g[train], k[train], 1, power[train])
        return float(np.mean(np.abs(evaluate(spec, params, g, k, 1)[:, 0] / power - 1)))

    plain = min(error(CandidateSpec("poly", KBasis("const"), powers=(1, 2, 3), pairs=p)) for p in (1, 2))
    coupled = min(error(CandidateSpec("poly", KBasis("const"), powers=(1, 2, 3), couple=beta, memory=2))
                  for beta in (0.03, 0.1, 0.3, 1.0))
    assert coupled < 0.7 * plain, (coupled, plain)


def test_stall_columns_follow_their_formula_and_leave_out_the_redundant_one():
    g = np.array([[0.5, 1.0, 0.25], [1.0, 0.5, 1.0]])  # cpu, gpu, emc
    cols = stall_columns(g, memory=2, beta=0.5)
    assert len(cols) == 6  # three per non-memory clock: g_d s, g_d^3 s, g_m^3 s
    s_gpu = 0.5 * g[:, 1] / (g[:, 2] + 0.5 * g[:, 1])
    np.testing.assert_allclose(cols[3], g[:, 1] * s_gpu)
    np.testing.assert_allclose(cols[5], g[:, 2] ** 3 * s_gpu)
    # g_m s is beta (g_d - g_d s): dropping it keeps the design of full rank
    np.testing.assert_allclose(g[:, 2] * s_gpu, 0.5 * (g[:, 1] - cols[3]))


def test_the_library_offers_stall_shapes_only_with_a_memory_clock():
    bases = [KBasis("const")]
    assert memory_column(AXES) == 2
    assert memory_column(Axes(("cpu", "gpu"), (1e9, 1e9))) == -1
    live = Axes(("cpu", "emc", "gpu"), (1e9, 1e9, 1e9), live=(True, False, True))
    assert memory_column(live) == -1  # a memory clock held still carries no coupling
    coupled = [s for s in candidates_for("power", bases, memory=2) if s.couple]
    assert coupled and all(s.memory == 2 and s.form == "poly" for s in coupled)
    assert not [s for s in candidates_for("power", bases) if s.couple]
    assert not [s for s in candidates_for("latency", bases, memory=2) if s.couple]


def test_few_points_keep_to_the_plain_shapes_and_enough_points_choose_the_stall_shape(busy_grid):
    grid, power, _ = busy_grid
    rng = np.random.default_rng(1)
    few = rng.choice(len(power), 24, replace=False)
    model = fit_target("power_mw", "default", AXES, grid[few], power[few], [KBasis("const")])
    assert not any(m.spec.couple for m in model.members)
    many = rng.choice(len(power), 60, replace=False)
    model = fit_target("power_mw", "default", AXES, grid[many], power[many], [KBasis("const")])
    assert model.members[0].spec.couple > 0


def test_a_stall_spec_round_trips_through_a_profile_record_and_old_records_still_read():
    spec = CandidateSpec("poly", KBasis("const"), powers=(1, 2, 3), pairs=1, couple=0.3, memory=2)
    data = json.loads(json.dumps(spec.to_dict()))
    assert SpecRecord.model_validate(data) and CandidateSpec.from_dict(data) == spec
    plain = CandidateSpec("poly", KBasis("const"), powers=(1, 2, 3))
    assert "couple" not in plain.to_dict()  # profiles written before stay as they were
    assert CandidateSpec.from_dict(plain.to_dict()) == plain


def test_grid_files_say_they_are_simulated(tmp_path, busy_grid):
    settings = read_settings(FIXTURE)[:5]
    path = write_grid(tmp_path / "tx2-gpu-compute-sim.csv", gpu_busy_grid("gpu-compute", settings))
    lines = path.read_text().splitlines()
    assert lines[0] == "cpu_khz,gpu_hz,emc_hz,vdd_in_mw,latency_ms,simulated" and len(lines) == 6
    assert all(line.endswith(",1") for line in lines[1:])
    with pytest.raises(KeyError):
        gpu_busy_grid("no-such-kernel", settings)
    assert set(KERNELS) == {"gpu-compute", "gpu-mixed", "gpu-memory"}
