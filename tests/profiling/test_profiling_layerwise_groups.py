"""Unmeasured group counts: the layer-wise model extends a profile measured at some k to the others."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from profiling_synth import ArraySource

from governor.cli.main import main
from governor.core.perf.layerwise import LayerAcrossK, fit_network, predict_levels, predict_unmeasured
from governor.core.perf.sampling import ActiveSampler, SamplerSettings, run_sampler
from governor.core.perf.schema import parse_profile, profile_model
from governor.core.perf.space import Space

OPP = {"cpu": (0.5e9, 1.0e9, 1.5e9, 2.0e9), "emc": (0.8e9, 1.6e9)}
# three layers, G = 8: a dense first layer (MACs linear in k), a nested one (MACs ~ k(k+1)/2) and a
# classifier with a fixed output width
SHAPES = (LayerAcrossK(tuple(8 * k for k in range(1, 9)), tuple(3e4 * k for k in range(1, 9))),
          LayerAcrossK(tuple(16 * k for k in range(1, 9)), tuple(2e4 * k * (k + 1) / 2 for k in range(1, 9))),
          LayerAcrossK((10,) * 8, tuple(1e3 * k for k in range(1, 9))))


def _latency_ms(grid: np.ndarray) -> np.ndarray:
    """A network whose compute follows the shapes' MACs at the CPU clock, plus DRAM time and overhead."""
    k = grid[:, -1].astype(int)
    macs = sum(np.asarray(s.macs)[k - 1] for s in SHAPES)
    return 0.2 + macs / 1e5 * (2.0e9 / grid[:, 0]) + 0.3 * (1.6e9 / grid[:, 1])


def _power_mw(grid: np.ndarray) -> np.ndarray:
    return 800 + 600 * (grid[:, 0] / 2.0e9) ** 2 + 40 * grid[:, -1]


def test_a_profile_measured_at_k_1_and_g_predicts_the_held_out_k_on_a_simulated_board() -> None:
    full = Space.cartesian(OPP, ("cpu",), range(1, 9))
    seen = np.isin(full.grid[:, -1], (1, 8))
    space = Space(full.domains, full.grid[seen], full.mapping_of[seen], full.mappings, full.opp_hz)
    source = ArraySource(space, latency_ms=_latency_ms(space.grid), power_mw=_power_mw(space.grid))
    model = run_sampler(source, ActiveSampler(space, SamplerSettings(max_points=16)))
    extended = predict_unmeasured(model, SHAPES, range(2, 8))
    held = full.grid[~seen]
    truth = _latency_ms(held)
    mean, std = extended.predict("latency_ms", "cpu", held)
    assert np.mean(np.abs(mean / truth - 1)) < 0.03
    # the plain frequency model, which never saw k = 2..7, does worse there
    raw = model.predict("latency_ms", "cpu", held)[0]
    assert np.mean(np.abs(raw / truth - 1)) > 2 * np.mean(np.abs(mean / truth - 1))
    assert np.all(std > 0)
    energy, _ = extended.predict("energy_mj", "cpu", held)
    assert np.mean(np.abs(energy / (truth * _power_mw(held) / 1000) - 1)) < 0.05
    assert extended.is_predicted("cpu", held[:, -1]).all()
    assert not extended.is_predicted("cpu", [1, 8]).any()
    assert extended.predicted_groups == (2, 3, 4, 5, 6, 7)
    assert sorted({int(k) for k in extended.opp_grid()[:, -1]}) == list(range(1, 9))


def test_with_three_measured_k_the_fit_picks_the_core_by_held_out_error() -> None:
    ks = [1, 4, 8]
    truth = 0.1 + 1e-5 * np.array([sum(s.macs[k - 1] for s in SHAPES) for k in range(1, 9)])
    best, alive = fit_network(SHAPES, ks, truth[np.array(ks) - 1])
    assert best.core == "linear" and best.loo_error < 1e-9 and len(alive) == 1
    pred = predict_levels(SHAPES, ks, list(truth[np.array(ks) - 1]), [2, 3, 5, 6, 7])
    for k, (mean, std) in pred.items():
        assert mean == pytest.approx(truth[k - 1], rel=1e-6) and std == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("groups", [[0], [9], [3, 12]])
def test_group_counts_outside_1_to_g_are_refused(groups: list[int]) -> None:
    with pytest.raises(ValueError, match=r"outside this model's 1\.\.8"):
        predict_levels(SHAPES, [1, 8], [1.0, 2.0], groups)


def test_measured_k_are_not_predicted_and_one_measured_k_is_not_enough() -> None:
    space = Space.cartesian(OPP, ("cpu",), (1, 8))
    model = run_sampler(ArraySource(space, latency_ms=_latency_ms(space.grid)),
                        ActiveSampler(space, SamplerSettings(max_points=8)))
    with pytest.raises(ValueError, match="were measured"):
        predict_unmeasured(model, SHAPES, [1, 2])
    one = Space.cartesian(OPP, ("cpu",), (4,))
    model = run_sampler(ArraySource(one, latency_ms=_latency_ms(one.grid)),
                        ActiveSampler(one, SamplerSettings(max_points=8)))
    with pytest.raises(ValueError, match="at least two measured"):
        predict_unmeasured(model, SHAPES, [2])


def _profile(model: Path, tmp_path: Path, *extra: str) -> tuple[int, Path]:
    out = tmp_path / "p.json"
    rc = main(["profile", str(model), "--board", "sim:jetson-nano", "--max-points", "16", "--out", str(out),
               "--quiet", *extra])
    return rc, out


def test_governor_profile_writes_predicted_groups_apart_from_the_measured_points(
        quick_digits_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = _profile(quick_digits_model, tmp_path, "--groups", "1,4")
    assert rc == 0
    assert "predicted, not measured (layer-wise model)" in capsys.readouterr().out
    raw = json.loads(out.read_text())
    assert {p["groups"] for p in raw["points"]} <= {1, 4}  # predictions are never reported as measured
    assert raw["space"]["groups"] == [1, 4]
    predicted = raw["predicted"]
    assert {r["groups"] for r in predicted} == {2, 3} and all(r["method"] == "layerwise" for r in predicted)
    model = profile_model(parse_profile(out.read_text(), str(out)))
    mapping = predicted[0]["mapping"]
    grid = np.array([[*(max(fs) for fs in model.opp_hz), float(k)] for k in (1, 2, 3, 4)])
    mean, std = model.predict("latency_ms", mapping, grid)
    assert mean[0] < mean[1] < mean[2] < mean[3] and np.all(std > 0)
    assert model.is_predicted(mapping, grid[:, -1]).tolist() == [False, True, True, False]


def test_a_profile_of_every_k_keeps_the_old_layout(quick_digits_model: Path, tmp_path: Path) -> None:
    rc, out = _profile(quick_digits_model, tmp_path)
    assert rc == 0 and "predicted" not in json.loads(out.read_text())


@pytest.mark.parametrize(("extra", "message"), [
    (["--groups", "1,4", "--predict-groups", "9"], "has groups 1..4"),
    (["--groups", "1,4", "--predict-groups", "4"], "those are measured"),
    (["--groups", "1,9"], "has groups 1..4"),
])
def test_bad_group_counts_are_named_before_anything_is_measured(
        quick_digits_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
        message: str) -> None:
    rc, out = _profile(quick_digits_model, tmp_path, *extra)
    assert rc != 0 and message in capsys.readouterr().err and not out.exists()


def test_predict_groups_none_predicts_nothing(quick_digits_model: Path, tmp_path: Path) -> None:
    rc, out = _profile(quick_digits_model, tmp_path, "--groups", "1,4", "--predict-groups", "none")
    assert rc == 0 and "predicted" not in json.loads(out.read_text())
