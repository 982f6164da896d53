"""Profile files round-trip exactly; corrupt, foreign or wrong-version files get clear errors."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from profiling_synth import ArraySource, power_mw, roofline_ms, space

from governor.core.perf.sampling import ActiveSampler, SamplerSettings, run_sampler
from governor.core.perf.schema import (
    ProfileError,
    Provenance,
    build_profile_doc,
    dump_profile,
    parse_profile,
    profile_model,
)


@pytest.fixture(scope="module")
def profile_text() -> str:
    sp = space(groups=(1, 2, 3))
    settings = SamplerSettings(max_points=36)
    sampler = ActiveSampler(sp, settings)
    fitted = run_sampler(ArraySource(sp, latency_ms=roofline_ms(sp.grid), power_mw=power_mw(sp.grid)), sampler)
    provenance = Provenance(board="jetson-tx2", kernel="4.9.253-tegra", jetpack="4.6.4", sensor="ina3221 VDD_IN",
                            date="2025-01-02T03:04:05+00:00", simulated=False, source="replay:grid.csv")
    doc = build_profile_doc("alexnet-g4", provenance, sp, settings, sampler.status(), sampler.measured, fitted)
    return dump_profile(doc)


def _edited(text: str, edit: Any) -> str:
    raw = json.loads(text)
    edit(raw)
    return json.dumps(raw)


def test_a_profile_round_trips_to_identical_predictions(profile_text: str) -> None:
    doc = parse_profile(profile_text, "p.json")
    assert dump_profile(doc) == profile_text
    model = profile_model(doc)
    sp = space(groups=(1, 2, 3))
    assert set(model.targets) == {"latency_ms", "power_mw", "energy_mj"}
    mean, std = model.predict("latency_ms", "gpu", sp.grid)
    assert np.mean(np.abs(mean / roofline_ms(sp.grid) - 1)) < 0.01 and np.all(std > 0)
    again = profile_model(parse_profile(dump_profile(parse_profile(profile_text, "p.json")), "p2.json"))
    for target in ("latency_ms", "power_mw", "energy_mj"):
        expected = model.predict(target, "gpu", sp.grid)
        np.testing.assert_array_equal(again.predict(target, "gpu", sp.grid)[1], expected[1])


def test_provenance_and_measured_points_are_kept(profile_text: str) -> None:
    doc = parse_profile(profile_text, "p.json")
    assert doc.provenance.board == "jetson-tx2" and doc.provenance.jetpack == "4.6.4"
    assert doc.provenance.simulated is False
    assert len(doc.points) == doc.sampling.measured <= 36
    assert doc.sampling.stopped == "target"
    assert all(p.latency_ms and p.power_mw for p in doc.points)


def test_dense_table_covers_every_opp_combination_and_finds_rows(profile_text: str) -> None:
    model = profile_model(parse_profile(profile_text, "p.json"))
    table = model.dense_table()
    assert len(table.grid) == 3 * 6 * 6 * 3
    row = table.row("gpu", {"cpu": 2035.2e6, "gpu": 1300.5e6, "emc": 1866e6}, 3)
    assert table.grid[row].tolist() == [2035.2e6, 1300.5e6, 1866e6, 3.0]
    single = model.predict("energy_mj", "gpu", table.grid[row:row + 1])[0][0]
    assert table.mean["energy_mj"][row] == pytest.approx(single)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda raw: raw.update(schema_version=0), "schema version 0 is not supported.*re-run `governor profile`"),
        (lambda raw: raw.update(schema_version=9), "schema version 9 is not supported.*upgrade dnn-governor"),
        (lambda raw: raw.pop("format"), "not a dnn-governor-profile file"),
        (lambda raw: raw.pop("provenance"), "field 'provenance': Field required"),
        (lambda raw: raw["models"][0]["members"][0].update(params=[1.0]), "needs .* parameters per fit"),
        (lambda raw: raw["points"][0]["setpoints_hz"].pop("emc"), "point 0 does not match the space"),
        (lambda raw: raw["points"][0].update(simulated=True), "points are simulated but provenance.simulated"),
        (lambda raw: raw["models"][0]["members"][0]["spec"].update(form="magic"), "form"),
        (lambda raw: raw["models"][0]["members"][0]["fold_leverage"].pop(), "folds but .* fold leverages"),
        (lambda raw: raw["models"][0]["members"][0]["fold_leverage"].__setitem__(0, 1.5), "fold_leverage"),
    ],
)
def test_broken_profiles_say_what_is_wrong(profile_text: str, edit: Any, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        parse_profile(_edited(profile_text, edit), "p.json")


def test_a_truncated_file_is_reported_as_corrupt(profile_text: str) -> None:
    with pytest.raises(ProfileError, match=r"p.json: not valid JSON .*corrupt"):
        parse_profile(profile_text[: len(profile_text) // 2], "p.json")


def test_a_profile_written_before_fold_leverages_loads_and_counts_every_coefficient(profile_text: str) -> None:
    def strip(raw: dict[str, Any]) -> None:
        for m in raw["models"]:
            for member in m["members"]:
                member.pop("fold_leverage")

    old = profile_model(parse_profile(_edited(profile_text, strip), "old.json"))
    new = profile_model(parse_profile(profile_text, "p.json"))
    key = ("latency_ms", "gpu")
    best = old.models[key].members[0]
    assert not best.fold_leverage and new.models[key].members[0].fold_leverage
    assert old.models[key].residual_dof == old.models[key].n_points - len(best.params)
    sp = space(groups=(1, 2, 3))
    old_mean, old_sd = old.predict("latency_ms", "gpu", sp.grid)
    new_mean, _ = new.predict("latency_ms", "gpu", sp.grid)
    np.testing.assert_array_equal(old_mean, new_mean)  # the means do not depend on it
    assert np.all(np.isfinite(old_sd)) and np.all(old_sd > 0)
