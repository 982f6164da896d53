"""The model forms recover known physics, and the ensembles report honest uncertainty."""

from __future__ import annotations

import numpy as np
import pytest
from profiling_synth import CPU_HZ, EMC_HZ, GPU_HZ, full_grid, power_mw, roofline_ms

from governor.core.perf.features import Axes, CandidateSpec, KBasis
from governor.core.perf.fit import evaluate, fit, leverage
from governor.core.perf.model import TargetModel, fit_target, group_bases, target_kind

AXES = Axes(("cpu", "gpu", "emc"), (max(CPU_HZ), max(GPU_HZ), max(EMC_HZ)), kmax=1)
GRID = full_grid(CPU_HZ, GPU_HZ, EMC_HZ, (1.0,))


def _normalised(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return AXES.normalise(grid)


def test_roofline_recovers_fixed_compute_memory_and_overhead_times() -> None:
    g, k = _normalised(GRID)
    truth = np.array([0.5, 0.1, 2.0, 1.0])  # fixed ms, then ms at top clock of cpu, gpu, emc
    y = truth[0] + g**-1 @ truth[1:]
    params = fit(CandidateSpec("roofline"), g, k, 1, y)
    np.testing.assert_allclose(params, truth, rtol=1e-6, atol=1e-9)


def test_saturated_roofline_recovers_the_overlap_exponent() -> None:
    g, k = _normalised(GRID)
    y = 0.4 + 0.05 / g[:, 0] + ((2.0 / g[:, 1]) ** 3 + (1.0 / g[:, 2]) ** 3) ** (1 / 3)
    params = fit(CandidateSpec("saturated"), g, k, 1, y)
    fixed, additive, overlap, p = params[0], params[1:4], params[4:7], params[-1]
    assert p == pytest.approx(3.0, rel=1e-3)
    assert fixed == pytest.approx(0.4, rel=1e-3)
    np.testing.assert_allclose(additive, [0.05, 0.0, 0.0], atol=1e-3)
    np.testing.assert_allclose(overlap[1:], [2.0, 1.0], rtol=1e-3)


def test_layered_roofline_recovers_two_classes_of_layers_where_one_norm_cannot() -> None:
    g, k = _normalised(GRID)
    # a compute-bound class (convolutions) and a memory-bound one (fully connected layers), each a p = 2 norm
    y = (0.2 + np.hypot(3.0 / g[:, 1], 0.3 / g[:, 2]) + np.hypot(0.4 / g[:, 1], 2.0 / g[:, 2]))

    def error(spec: CandidateSpec) -> float:
        params = fit(spec, g, k, 1, y)
        return float(np.max(np.abs(evaluate(spec, params, g, k, 1)[:, 0] / y - 1)))

    assert error(CandidateSpec("layered")) < 1e-4
    assert error(CandidateSpec("saturated")) > 20 * error(CandidateSpec("layered"))
    assert CandidateSpec.from_dict(CandidateSpec("layered").to_dict()) == CandidateSpec("layered")


def test_power_polynomial_recovers_cubic_dynamic_power_per_domain() -> None:
    cpu_levels = (345.6e6, 806.4e6, 1267.2e6, 1728e6, 2035.2e6)  # a cubic needs 4+ levels per domain
    g, k = _normalised(full_grid(cpu_levels, GPU_HZ, EMC_HZ, (1.0,)))
    y = 1500 + 900 * g[:, 0] ** 3 + 150 * g[:, 1] ** 3 + 300 * g[:, 2] + 200 * g[:, 2] ** 2
    params = fit(CandidateSpec("poly", powers=(1, 2, 3)), g, k, 1, y)
    expected = [1500, 0, 0, 900, 0, 0, 150, 300, 200, 0]  # constant, then (g, g^2, g^3) per domain
    np.testing.assert_allclose(params, expected, atol=0.05)  # mW; the ridge only conditions


def test_a_sensor_outlier_does_not_drag_the_fit() -> None:
    g, k = _normalised(GRID)
    y = power_mw(GRID)
    spoiled = y.copy()
    spoiled[7] *= 1.3
    spec = CandidateSpec("poly", powers=(1, 2, 3), pairs=True)
    clean = evaluate(spec, fit(spec, g, k, 1, y), g, k, 1)[:, 0]
    robust = evaluate(spec, fit(spec, g, k, 1, spoiled), g, k, 1)[:, 0]
    assert np.median(np.abs(robust / clean - 1)) < 0.002


def test_latency_ensemble_extrapolates_and_knows_where_it_has_no_data() -> None:
    y = roofline_ms(GRID)
    noisy = y * (1 + 0.005 * np.random.default_rng(1).standard_normal(len(y)))
    fast = GRID[:, 1] >= 930e6  # only the two top GPU clocks are measured
    model = fit_target("latency_ms", "gpu", AXES, GRID[fast], noisy[fast], group_bases([1]))
    mean, std = model.predict(GRID, noise=False)
    assert np.mean(np.abs(mean / y - 1)) < 0.01  # the physics carries to the slow clocks
    slowest = GRID[:, 1] == min(GPU_HZ)
    assert np.mean(std[slowest] / mean[slowest]) > 2 * np.mean(std[fast] / mean[fast])
    assert np.mean(np.abs(mean - y) <= 3 * std) > 0.95  # the uncertainty covers the real error


def test_cross_validated_error_matches_the_error_on_unseen_points() -> None:
    rng = np.random.default_rng(3)
    y = power_mw(GRID) * (1 + 0.01 * rng.standard_normal(len(GRID)))
    seen = rng.permutation(len(GRID))[:60]
    model = fit_target("power_mw", "cpu", AXES, GRID[seen], y[seen], group_bases([1]))
    unseen = np.setdiff1d(np.arange(len(GRID)), seen)
    mean, _ = model.predict(GRID[unseen])
    actual = np.mean(np.abs(mean / y[unseen] - 1))
    assert 0.5 * actual < model.cv_mape < 2.0 * actual
    assert model.noise_rel == pytest.approx(0.01, rel=0.5)


def test_models_round_trip_through_plain_data_exactly() -> None:
    y = roofline_ms(GRID)
    model = fit_target("latency_ms", "gpu", AXES, GRID[::3], y[::3], group_bases([1]))
    again = TargetModel.from_dict(model.to_dict())
    for a, b in zip(model.predict(GRID), again.predict(GRID), strict=True):
        np.testing.assert_array_equal(a, b)


def test_predict_is_vectorised_over_ten_thousand_points() -> None:
    y = power_mw(GRID)
    model = fit_target("power_mw", "cpu", AXES, GRID, y, group_bases([1]))
    big = np.tile(GRID, (10_000 // len(GRID) + 1, 1))[:10_000]
    mean, std = model.predict(big)
    assert mean.shape == std.shape == (10_000,)
    assert np.all(std > 0)


def test_group_bases_offer_blackthorn_steps_only_when_they_differ_from_a_line() -> None:
    assert [b.kind for b in group_bases([4])] == ["const"]
    bases = group_bases(range(1, 9), channels_per_group=16)
    patterns = {tuple(b.columns(np.arange(1.0, 9.0), 8)[:, 1].round(6)) for b in bases if b.kind == "step"}
    assert len(patterns) == sum(b.kind == "step" for b in bases)  # no duplicates
    assert KBasis("step", width=64, channels=16).label in {b.label for b in bases}


@pytest.mark.parametrize(("name", "kind"), [("latency_ms", "latency"), ("VDD_SYS_CPU_mw", "power"),
                                            ("energy_mj", "energy")])
def test_target_kinds_follow_the_unit_suffix(name: str, kind: str) -> None:
    assert target_kind(name) == kind


def test_unknown_targets_and_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown target"):
        target_kind("throughput")
    g, k = _normalised(GRID[:5])
    with pytest.raises(ValueError, match="positive"):
        fit(CandidateSpec("roofline"), g, k, 1, np.array([1.0, 2.0, 0.0, 1.0, 1.0]))


def test_leverage_is_the_hat_diagonal_of_the_relative_fit_and_skips_coefficients_at_a_bound() -> None:
    g, k = _normalised(GRID)
    y = power_mw(GRID)
    spec = CandidateSpec("poly", KBasis("const"), powers=(1, 2, 3))
    params = fit(spec, g, k, 1, y)
    design = spec.columns(g, k, 1) / y[:, None]
    hat = np.diag(design @ np.linalg.pinv(design))
    np.testing.assert_allclose(leverage(spec, params, g, k, 1, y), hat, atol=1e-4)
    # a roofline whose CPU time is 0 (NNLS bound): three free coefficients, not four
    roof = CandidateSpec("roofline")
    latency = 0.5 + 2.0 / g[:, 1] + 1.0 / g[:, 2]
    theta = fit(roof, g, k, 1, latency)
    assert theta[1] == pytest.approx(0.0, abs=1e-9)
    assert float(np.sum(leverage(roof, theta, g, k, 1, latency))) == pytest.approx(3.0, abs=1e-3)
