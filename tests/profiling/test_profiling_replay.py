"""Recorded tables: parsing, clear errors, and a replay source that serves only the rows asked for."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from governor.core.perf.sampling import ActiveSampler, SamplerSettings, run_sampler
from governor.core.perf.space import ProfilePoint
from governor.core.types import Setpoints
from governor.drivers.replay import ReplayError, ReplaySource, parse_table

CPU_KHZ = (345600, 960000, 1574400, 2035200)
GPU_MHZ = (114.75, 522.75, 930.75, 1300.5)
EMC_HZ = (204000000, 800000000, 1600000000)


def _table_text(groups: tuple[int, ...] = (1, 2, 3, 4)) -> str:
    lines = ["cpu_khz,gpu_MHz,emc_hz,mapping,groups,latency_ms,power_mw,vdd_sys_gpu_mw,samples"]
    for c, g, e, k in itertools.product(CPU_KHZ, GPU_MHZ, EMC_HZ, groups):
        latency = 0.2 + 2e8 / (c * 1e3) + k * (1.3e9 / (g * 1e6) + 0.5 * 1.866e9 / e)
        power = 1500 + 900 * (c / 2035200) ** 3 + 400 * (g / 1300.5) ** 3 + 300 * e / 1.866e9
        lines.append(f"{c},{g},{e},gpu,{k},{latency:.6f},{power:.3f},{power / 5:.3f},600")
    return "\n".join(lines) + "\n"


def test_frequency_units_are_converted_to_hz_and_other_columns_classified() -> None:
    table = parse_table(_table_text(), "t.csv")
    assert table.domains == ("cpu", "gpu", "emc")
    assert table.grid[0].tolist() == [345600e3, 114.75e6, 204e6, 1.0]
    assert set(table.values) == {"latency_ms", "power_mw", "vdd_sys_gpu_mw"}
    assert table.ignored == ("samples",)


def test_replay_serves_only_the_rows_the_profiler_asks_for() -> None:
    table = parse_table(_table_text(), "t.csv")
    space, _ = table.space()
    source = ReplaySource(table)
    sampler = ActiveSampler(space, SamplerSettings(max_points=40, target_mape_pct=0.01))
    model = run_sampler(source, sampler)
    assert len(source.served) == len(set(source.served)) == len(sampler.measured) <= 40
    assert len(table.grid) == 192 and sampler.status().stopped == "target"
    measured_rows = {table.key(r) for r in source.served}
    assert measured_rows == {table.key(int(r)) for r in _rows_of(space, sampler.measured, table)}
    mean, _ = model.predict("latency_ms", "gpu", table.grid)
    assert np.mean(np.abs(mean / table.values["latency_ms"] - 1)) < 0.01
    assert ("vdd_sys_gpu_mw", "gpu") in model.models


def _rows_of(space, measured, table):  # type: ignore[no-untyped-def]
    keys = {table.key(r): r for r in range(len(table.grid))}
    for index in measured:
        p = space.point(index)
        yield keys[(p.mapping, tuple(p.setpoints.hz[d] for d in table.domains), p.groups)]


def test_mapping_and_group_filters_restrict_the_candidates() -> None:
    table = parse_table(_table_text(), "t.csv")
    space, rows = table.space(("gpu",), (2, 4))
    assert len(rows) == len(space.grid) == 96 and set(space.groups) == {2, 4}
    with pytest.raises(ReplayError, match=r"no rows for mapping\(s\) \['a57'\]"):
        table.space(("a57",))


def test_a_point_missing_from_the_table_is_an_error_not_a_guess() -> None:
    source = ReplaySource(parse_table(_table_text(), "t.csv"))
    point = ProfilePoint("gpu", Setpoints({"cpu": 345600000, "gpu": 114750000, "emc": 204000001}), 1)
    with pytest.raises(ReplayError, match="no row for gpu"):
        source.measure(point)
    assert source.served == []


def test_simulated_rows_stay_labelled_simulated() -> None:
    text = "gpu_hz,latency_ms,simulated\n100,1.5,true\n200,1.0,false\n"
    source = ReplaySource(parse_table(text, "sim.csv"))
    first = source.measure(ProfilePoint("default", Setpoints({"gpu": 100}), 1))
    second = source.measure(ProfilePoint("default", Setpoints({"gpu": 200}), 1))
    assert first.simulated and not second.simulated
    assert first.power_mw is None and first.latency_ms == 1.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("latency_ms\n1\n", "no frequency column"),
        ("gpu_hz,notes\n100,x\n", "no measured column"),
        ("gpu_hz,latency_ms\n100,fast\n", "line 2, column 'latency_ms': 'fast' is not a number"),
        ("gpu_hz,latency_ms\n100,1\n100,2\n", "lines 2 and 3 are the same operating point"),
        ("gpu_hz,gpu_khz,latency_ms\n100,1,1\n", "appears twice"),
        ("gpu_hz,groups,latency_ms\n100,1.5,1\n", "whole number"),
        ("gpu_hz,latency_ms\n-5,1\n", "frequency must be positive"),
        ("gpu_hz,latency_ms\n100,1,7\n", "line 2 has 3 cells"),
        ("gpu_hz,latency_ms,simulated\n100,1,maybe\n", "not true/false"),
        ("gpu_hz,latency_ms\n", "at least one row"),
    ],
)
def test_bad_tables_get_errors_that_say_where(text: str, message: str) -> None:
    with pytest.raises(ReplayError, match=message):
        parse_table(text, "bad.csv")


def test_non_positive_measurements_are_refused_when_served() -> None:
    source = ReplaySource(parse_table("gpu_hz,latency_ms\n100,0\n", "zero.csv"))
    with pytest.raises(ValueError, match="finite and positive"):
        source.measure(ProfilePoint("default", Setpoints({"gpu": 100}), 1))
