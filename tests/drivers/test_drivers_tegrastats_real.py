"""Real tegrastats lines from JetPack 3 to 6 (tests/fixtures/tegrastats/*.real.txt, sources in its README),
read with the catalogue's mapping: what issue 21 items 2 and 9 found wrong on them."""

from __future__ import annotations

from pathlib import Path

import pytest

from governor.drivers.catalogue import load_board
from governor.drivers.jtop import temps_c
from governor.drivers.tegrastats import (
    MHZ,
    SensorMapping,
    parse_tegrastats,
    read_tegrastats,
    sample_freqs_hz,
    snap_hz,
    to_observation,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tegrastats"
AGX_ORIN = SensorMapping.from_board(load_board("jetson-agx-orin"))


def _samples(name: str):
    return read_tegrastats((FIXTURES / name).read_text().splitlines())


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.real.txt")), ids=lambda p: p.name)
def test_every_real_line_parses_and_names_its_source(path):
    assert _samples(path.name)
    assert path.name in (FIXTURES / "README.md").read_text()


def test_jetpack6_agx_orin_total_power_without_the_unprinted_ddr_rail():
    r36_4_4, r36_4_7 = _samples("jp6-agx-orin.real.txt")
    for sample, gpu_soc, cpu_cv in ((r36_4_4, 2412.0, 1607.0), (r36_4_7, 3178.0, 794.0)):
        assert "VDDQ_VDD2_1V8AO" not in sample.rails
        obs = to_observation(sample, t=1.0, mapping=AGX_ORIN)
        assert obs.total_power_mw == gpu_soc + cpu_cv
        partial = [p for p in obs.unavailable if p.startswith("total power is partial")]
        assert len(partial) == 1 and "VDDQ_VDD2_1V8AO" in partial[0] and "JetPack 6" in partial[0]


def test_jetpack5_agx_orin_total_is_the_three_module_rails_and_the_two_nc_rails_stay_apart():
    sample = _samples("jp5-agx-orin.real.txt")[0]
    assert set(sample.rails) >= {"NC", "NC#2", "VDDQ_VDD2_1V8AO"} and sample.rails["NC#2"].cur_mw == 0.0
    obs = to_observation(sample, t=1.0, mapping=AGX_ORIN)
    assert obs.total_power_mw == 2399.0 + 400.0 + 301.0
    assert not any(name.startswith("NC") for name in obs.power_mw)  # unconnected channels are no rails
    assert not any("total power" in p for p in obs.unavailable)


def test_a_missing_rail_that_tegrastats_does_print_still_gives_no_total():
    line = "RAM 1/2MB CPU [1%@729] VDD_GPU_SOC 2000mW/2000mW VDDQ_VDD2_1V8AO 300mW/300mW"
    obs = to_observation(parse_tegrastats(line), t=0.0, mapping=AGX_ORIN)
    assert obs.total_power_mw is None and any("total power" in p for p in obs.unavailable)


def test_at_zero_is_no_clock_reading_not_zero_hz():
    gr3d2, per_gpc = _samples("jp5-agx-orin.real.txt")
    for sample in (gr3d2, per_gpc, _samples("jp6-agx-orin.real.txt")[0]):
        assert sample.gpu.freqs_hz == () and sample.gpu.freq_hz is None and sample.gpu.clock_unread
        notes: list[str] = []
        freqs = sample_freqs_hz(sample, AGX_ORIN, notes)
        assert "gpu" not in freqs and any("@0" in n and "gpu" in n for n in notes)
        assert to_observation(sample, t=0.0, mapping=AGX_ORIN).util["gpu"] == 0.0  # the load is real


def test_jetpack5_second_gpc_is_part_of_the_gpu():
    line = ("RAM 1282/62795MB CPU [0%@729] EMC_FREQ 0%@2133 GR3D_FREQ 40%@1300 GR3D2_FREQ 60%@1300 "
            "VDD_GPU_SOC 2399mW/2399mW")
    sample = parse_tegrastats(line)
    assert "GR3D2_FREQ" not in sample.engines and "GR3D2" not in sample.engines
    assert sample.gpu.load_pct == 50.0 and sample.gpu.freqs_hz == (1300 * MHZ, 1300 * MHZ)
    assert to_observation(sample, t=0.0, mapping=AGX_ORIN).util["gpu"] == 0.5
    assert "GR3D2_FREQ" not in _samples("jp5-agx-orin.real.txt")[0].engines


def test_non_root_line_says_memory_bus_utilisation_is_missing():
    obs = to_observation(_samples("jp6-agx-orin.real.txt")[1], t=0.0, mapping=AGX_ORIN)
    assert "emc" not in obs.util and obs.util["gpu"] == 0.0
    assert any(p.startswith("util emc") and "EMC_FREQ" in p and "root" in p for p in obs.unavailable)
    old = to_observation(parse_tegrastats("RAM 1/2MB CPU [1%@729] EMC_FREQ 1%@204"), t=0.0)
    assert any(p.startswith("util gpu") and "GR3D_FREQ" in p for p in old.unavailable)


def test_truncated_megahertz_are_snapped_to_the_table_and_said():
    r36_4_4 = _samples("jp6-agx-orin.real.txt")[0]
    notes: list[str] = []
    freqs = sample_freqs_hz(r36_4_4, AGX_ORIN, notes)
    assert freqs == {"a78ae0": 2_201_600_000, "a78ae1": 1_267_200_000, "a78ae2": 1_036_800_000, "emc": 2_133_000_000}
    assert len(notes) == 4  # three clusters snapped, the @[0,0] GPU; EMC 2133 MHz was exact
    assert any("a78ae1" in n and "1267 MHz" in n and "1267200000" in n for n in notes)
    nano = SensorMapping.from_board(load_board("jetson-nano"))
    for name in ("jp3-tx1.real.txt", "jp4-nano.real.txt"):
        notes = []
        assert sample_freqs_hz(_samples(name)[0], nano, notes)["gpu"] == 76_800_000
        assert any("gpu" in n and "76 MHz" in n and "truncated" in n for n in notes)


def test_snap_prefers_the_entry_the_truncation_came_from():
    table = (1_109_000_000 - 200_000, 1_109_600_000)  # 1108.8 is nearer to 1109.0, but printed 1109 means >= 1109
    assert snap_hz(1109 * MHZ, table) == 1_109_600_000
    assert snap_hz(1109 * MHZ, ()) == 1109 * MHZ
    assert snap_hz(1500 * MHZ, (1_000_000_000, 2_000_000_000)) == 1_000_000_000  # off-table: the nearest


def test_zone_names_become_the_catalogue_types():
    jp5, r36 = _samples("jp5-agx-orin.real.txt")[0], _samples("jp6-agx-orin.real.txt")[1]
    assert set(to_observation(r36, t=0.0, mapping=AGX_ORIN).temps_c) == {
        "cpu-thermal", "soc0-thermal", "soc1-thermal", "soc2-thermal", "tj-thermal"}
    temps = to_observation(jp5, t=0.0, mapping=AGX_ORIN).temps_c
    assert temps["cpu-thermal"] == 42.593 and temps["soc0-thermal"] == 39.375 and "gpu-thermal" not in temps
    assert temps["Tboard"] == 32.0  # no such zone in the catalogue: kept under tegrastats' name
    tx2 = SensorMapping.from_board(load_board("jetson-tx2"))
    assert tx2.zone_name("thermal") == "thermal-fan-est" and tx2.zone_name("Tdiode") == "Tdiode_tegra"
    assert tx2.zone_name("BCPU") == "BCPU-therm" and tx2.zone_name("AO") == "AO"
    jtop = {"cpu": {"online": True, "temp": 52.9}, "gpu": {"online": False, "temp": -256}, "tj": {"temp": 53.0}}
    assert temps_c(jtop, AGX_ORIN) == {"cpu-thermal": 52.9, "tj-thermal": 53.0}
