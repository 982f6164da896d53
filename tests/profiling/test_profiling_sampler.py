"""The active sampler finds good models in few measurements; Blackthorn's layer-wise core works."""

from __future__ import annotations

import numpy as np
import pytest
from profiling_synth import ArraySource, power_mw, roofline_ms, space

from governor.core.perf.features import KBasis
from governor.core.perf.layerwise import LayerFit, LayerwiseModel, fit_layer, sample_layer
from governor.core.perf.model import fit_target
from governor.core.perf.sampling import ActiveSampler, SamplerSettings, run_sampler
from governor.core.perf.space import Space


def _mape(model, sp, target: str, truth: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    errors = []
    for m, mapping in enumerate(sp.mappings):
        rows = sp.mapping_of == m
        mean, _ = model.predict(target, mapping, sp.grid[rows])
        errors.append(np.abs(mean / truth[rows] - 1))
    return float(np.mean(np.concatenate(errors)))


def test_extremes_come_first_one_per_corner() -> None:
    sp = space(groups=(1, 2, 3, 4))
    sampler = ActiveSampler(sp, SamplerSettings(max_points=40))
    first = sampler.next_batch()
    assert len(first) == len(set(first)) == 16  # 2^4: cpu, gpu, emc and k
    unit = sp.unit_coords()[first]
    assert set(np.unique(unit).round(9)) == {0.0, 1.0}


def test_roofline_with_tile_steps_is_learnt_from_a_tenth_of_the_grid() -> None:
    sp = space(groups=tuple(range(1, 9)))
    truth = roofline_ms(sp.grid, step_width=2)  # compute grows in tiles of two groups
    noisy = truth * (1 + 0.002 * np.random.default_rng(0).standard_normal(len(truth)))
    source = ArraySource(sp, latency_ms=noisy)
    sampler = ActiveSampler(sp, SamplerSettings(max_points=len(sp.grid) // 10, target_mape_pct=0.5))
    model = run_sampler(source, sampler)
    assert sampler.status().stopped == "target"
    assert _mape(model, sp, "latency_ms", truth) < 0.005
    assert len(source.asked) == len(set(source.asked)) < len(sp.grid) // 10


def test_power_is_learnt_from_two_dozen_points() -> None:
    sp = space()
    truth = power_mw(sp.grid)
    source = ArraySource(sp, power_mw=truth * (1 + 0.005 * np.random.default_rng(2).standard_normal(len(truth))))
    sampler = ActiveSampler(sp, SamplerSettings(max_points=24, target_mape_pct=0.1))
    model = run_sampler(source, sampler)
    assert sampler.status().stopped == "max-points" and len(source.asked) == 24
    assert _mape(model, sp, "power_mw", truth) < 0.01


def test_every_mapping_gets_its_own_corners_and_models() -> None:
    sp = space(mappings=("gpu", "a57"))
    truth = roofline_ms(sp.grid) * np.where(sp.mapping_of == 1, 4.0, 1.0)
    sampler = ActiveSampler(sp, SamplerSettings(max_points=20, target_mape_pct=50))
    model = run_sampler(ArraySource(sp, latency_ms=truth), sampler)
    per_mapping = np.bincount(sp.mapping_of[list(sampler.measured)], minlength=2)
    assert np.all(per_mapping >= 8)
    assert set(model.models) == {("latency_ms", "gpu"), ("latency_ms", "a57")}


def test_energy_is_derived_from_latency_and_power_with_propagated_uncertainty() -> None:
    sp = space()
    latency, power = roofline_ms(sp.grid), power_mw(sp.grid)
    model = run_sampler(ArraySource(sp, latency_ms=latency, power_mw=power),
                        ActiveSampler(sp, SamplerSettings(max_points=30)))
    assert "energy_mj" in model.targets
    mean, std = model.predict("energy_mj", "gpu", sp.grid)
    assert np.mean(np.abs(mean / (latency * power / 1000) - 1)) < 0.02
    _, t_std = model.predict("latency_ms", "gpu", sp.grid)
    assert np.all(std / mean >= t_std / latency * 0.999)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_points"):
        SamplerSettings(max_points=1)
    with pytest.raises(ValueError, match="percentage"):
        SamplerSettings(target_mape_pct=0)


def test_blackthorn_sampler_finds_a_tile_staircase_in_a_dozen_benchmarks() -> None:
    calls: list[int] = []

    def measure(channels: int) -> float:
        calls.append(channels)
        return 0.05 + np.floor((channels - 1) / 64) * 0.02

    fit, xs, _ = sample_layer(measure)
    assert (fit.core, fit.width) == ("step", 64.0)
    assert fit.d == pytest.approx(0.05) and fit.h == pytest.approx(0.02)
    assert len(calls) == len(xs) <= 12


def test_blackthorn_prefers_a_line_when_the_layer_has_no_steps() -> None:
    fit, xs, _ = sample_layer(lambda c: 0.1 + 0.001 * c, lo=8, hi=512)
    assert fit.core == "linear" and fit.h == pytest.approx(0.001)
    assert len(xs) <= 8
    with pytest.raises(ValueError, match="two"):
        fit_layer([64], [1.0])


def test_layerwise_network_curve_lets_the_frequency_model_predict_unmeasured_group_counts() -> None:
    layers = LayerwiseModel(
        (LayerFit("step", 0.02, 0.010, width=64), LayerFit("step", 0.01, 0.004, width=32),
         LayerFit("linear", 0.005, 0.0001)),
        channels_per_group=(24, 40, 16), overhead_ms=0.1)
    sp = space(groups=tuple(range(1, 9)))
    g = sp.grid
    truth = layers.predict_groups(g[:, 3]) * (1.0 + 0.3 * 1.3e9 / g[:, 1] + 0.1 * 1.866e9 / g[:, 2])
    seen = np.isin(g[:, 3], (1, 2, 4, 6, 8))
    axes = sp.axes()
    with_curve = fit_target("latency_ms", "gpu", axes, g[seen], truth[seen], [layers.as_kbasis(8)])
    line_only = fit_target("latency_ms", "gpu", axes, g[seen], truth[seen], [KBasis("linear")])
    err = {name: np.mean(np.abs(m.predict(g[~seen])[0] / truth[~seen] - 1))
           for name, m in (("curve", with_curve), ("line", line_only))}
    assert err["curve"] < 0.003 and err["curve"] < err["line"] / 3, err


def test_a_domain_pinned_for_one_mapping_is_left_out_of_its_models() -> None:
    full = space()
    cpu_rows = full.grid[full.grid[:, 1] == full.grid[:, 1].min()]  # the A57 mapping leaves the GPU at its floor
    grid = np.vstack([full.grid, cpu_rows])
    mapping_of = np.concatenate([np.zeros(len(full.grid), np.int64), np.ones(len(cpu_rows), np.int64)])
    sp = Space(full.domains, grid, mapping_of, ("gpu", "a57"), full.opp_hz)
    truth = roofline_ms(grid) * np.where(mapping_of == 1, 3.0, 1.0)
    model = run_sampler(ArraySource(sp, latency_ms=truth), ActiveSampler(sp, SamplerSettings(max_points=40)))
    a57 = model.models[("latency_ms", "a57")]
    assert a57.axes.used == (0, 2)
    assert _mape(model, sp, "latency_ms", truth) < 0.01


def test_batches_never_repeat_a_point_even_when_no_model_disagrees() -> None:
    sp = space(groups=(1, 2))
    # steering by a quantity never measured: no model has a say, the distance alone spreads the picks
    settings = SamplerSettings(max_points=60, targets=("power_mw",), batch_fraction=0.5)
    source = ArraySource(sp, latency_ms=roofline_ms(sp.grid))
    run_sampler(source, ActiveSampler(sp, settings))
    assert len(source.asked) == len(set(source.asked)) == 60
