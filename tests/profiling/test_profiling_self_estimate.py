"""The profiler's predicted sd is honest: 2 sd covers about 95 % of new measurements, also from few points.

The CNN grids are the simulated TX2's per-layer physics (SIMULATED), 13 GPU x 4 EMC clocks, 0.3 % timing
jitter, 8 of 52 points measured per draw: the case where the bare jackknife was 2x too wide on most draws
and far too narrow on others (50-63 % inside 2 sd on the worst draws).
"""

from __future__ import annotations

import numpy as np
import pytest

from governor.core.perf.features import Axes
from governor.core.perf.model import fit_target, group_bases
from governor.core.perf.sampling import ActiveSampler, SamplerSettings, run_sampler
from governor.core.perf.space import Measurement, ProfilePoint, Space
from governor.core.physics import run_cost
from governor.drivers.catalogue import load_board
from governor.sim.boards import board_physics
from governor.sim.workloads import grouped_alexnet

JITTER = 0.003


class CnnLatency:
    """One network's latency on the simulated TX2 GPU, measured with relative jitter (SIMULATED)."""

    def __init__(self, batch: int, k: int, seed: int) -> None:
        self.phys = board_physics(load_board("jetson-tx2"))
        self.work, self.k, self.rng = grouped_alexnet(4, batch=batch), k, np.random.default_rng(seed)

    def clean_ms(self, gpu_hz: float, emc_hz: float) -> float:
        cost = run_cost(self.work, self.k, self.phys.units["gpu"], gpu_hz, 1, self.phys.emc_bytes_per_s(emc_hz))
        return cost.total_s * 1000.0

    def measure(self, point: ProfilePoint) -> Measurement:
        hz = point.setpoints.hz
        return Measurement(latency_ms=self.clean_ms(hz["gpu"], hz["emc"]) * (1 + JITTER * self.rng.standard_normal()),
                           simulated=True)


def _cnn_space() -> Space:
    tx2 = load_board("jetson-tx2")
    emc = sorted(tx2.domain("emc").table_hz)
    return Space.cartesian({"gpu": tx2.domain("gpu").table_hz, "emc": tuple(emc[i] for i in (2, 5, 8, 10))},
                           ("gpu",), (1,))


def _z_scores(batch: int, k: int, seed: int) -> np.ndarray:
    """(prediction - a second measurement) / predicted sd at every point, from 8 measured points."""
    space = _cnn_space()
    source = CnnLatency(batch, k, seed)
    sampler = ActiveSampler(space, SamplerSettings(max_points=8, target_mape_pct=0.1, targets=("latency_ms",)))
    model = run_sampler(source, sampler)
    again = np.array([source.clean_ms(r[0], r[1]) for r in space.grid]) * (
        1 + JITTER * np.random.default_rng(seed + 99_991).standard_normal(len(space.grid)))
    mean, std = model.predict("latency_ms", "gpu", space.grid)
    return np.asarray((mean - again) / std)


def test_two_sd_from_eight_points_covers_about_95_percent_of_new_measurements() -> None:
    z = np.concatenate([_z_scores(batch, k, seed=100 * d + i)
                        for i, (batch, k) in enumerate(((1, 4), (1, 1), (8, 4))) for d in range(10)])
    inside = float(np.mean(np.abs(z) <= 2))
    rms = float(np.sqrt(np.mean(z**2)))
    assert 0.90 <= inside <= 0.98
    assert rms <= 1.45  # the bare jackknife: 1.62 here, 0.5 on most draws and 3 on some


def test_the_sd_is_widened_for_few_residual_degrees_of_freedom_and_unbiased_for_leverage() -> None:
    from profiling_synth import CPU_HZ, EMC_HZ, GPU_HZ, full_grid, power_mw

    axes = Axes(("cpu", "gpu", "emc"), (max(CPU_HZ), max(GPU_HZ), max(EMC_HZ)), kmax=1)
    grid = full_grid(CPU_HZ, GPU_HZ, EMC_HZ, (1.0,))
    rng = np.random.default_rng(4)
    seen = rng.permutation(len(grid))[:14]
    model = fit_target("power_mw", "cpu", axes, grid[seen], power_mw(grid[seen]) * (1 + 0.01 * rng.standard_normal(14)),
                       group_bases([1]))
    best = model.members[0]
    # the leverages of a linear fit sum to its coefficients: the residual dof are what is left
    assert float(np.mean(best.fold_leverage)) * 14 == pytest.approx(len(best.params), abs=0.05)
    assert model.residual_dof == 14 - len(best.params)
    mean, sd = model.predict(grid)
    _, bare = model.spread(grid)
    _, fair = model.spread(grid, unbiased=True)
    assert np.all(np.sum(fair**2, axis=1) <= np.sum(bare**2, axis=1) + 1e-12)  # sqrt(1 - h) <= 1
    expected = np.sqrt(np.sum(fair**2, axis=1) + (model.noise_rel * mean) ** 2) * model.widening
    np.testing.assert_allclose(sd, expected, rtol=1e-12)
    assert model.widening > 1.0
