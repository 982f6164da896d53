"""The tegrastats parser on the other JetPack spellings (synthetic fixtures), bad input and the mapping."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from governor.drivers.tegrastats import (
    ClockedEngine,
    CpuCore,
    RailPower,
    SensorMapping,
    cluster_util,
    parse_tegrastats,
    read_tegrastats,
    sample_freqs_hz,
    to_observation,
    total_power_mw,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tegrastats"
MHZ = 1_000_000


def _samples(name: str):
    return read_tegrastats((FIXTURES / name).read_text().splitlines())


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.synthetic.txt")), ids=lambda p: p.name)
def test_synthetic_fixtures_say_so_and_parse_without_leftovers(path):
    text = path.read_text()
    assert text.startswith("# SYNTHETIC")
    samples = read_tegrastats(text.splitlines())
    assert len(samples) == sum(1 for line in text.splitlines() if line and not line.startswith("#")) >= 2
    assert all(s.extra == () for s in samples)


def test_jp5_agx_orin_mw_rails_offline_zones_and_engines():
    first, second = _samples("jp5-agx-orin.synthetic.txt")
    assert first.timestamp is None and second.timestamp == datetime(2024, 2, 14, 10, 31, 7)
    assert first.rails["VDD_GPU_SOC"] == RailPower(2410.0, 2410.0)
    assert second.rails["VDDQ_VDD2_1V8AO"] == RailPower(1505.0, 903.0)
    assert set(first.temps_off) == {"CV0", "CV1", "CV2", "GPU"} and "GPU" not in first.temps_c
    assert second.temps_c["GPU"] == 52.312 and "GPU" not in second.temps_off
    assert first.cpus[4] == CpuCore(online=False) and sum(c.online for c in first.cpus) == 4
    assert first.engines["NVENC"] == ClockedEngine(on=False) and second.engines["NVDEC"].freq_hz == 1024 * MHZ
    assert second.gpu == ClockedEngine(True, 87.0, (1300 * MHZ,))
    assert second.emc == ClockedEngine(True, 21.0, (3199 * MHZ,))


def test_jp6_orin_nano_vdd_in_is_the_total():
    idle, busy = _samples("jp6-orin-nano.synthetic.txt")
    assert idle.timestamp == datetime(2025, 3, 1, 8, 0, 1)
    obs = to_observation(busy, t=3.0, mapping=SensorMapping(clusters={"a78ae": (0, 1, 2, 3, 4, 5)}))
    assert obs.total_power_mw == 9876.0 and obs.power_mw["VDD_SOC"] == 2390.0 and obs.unavailable == ()
    # cores 4 and 5 are off: the cluster's busy fraction is the mean over the four online ones
    assert obs.util["a78ae"] == pytest.approx((64 + 58 + 71 + 60) / 400)
    assert obs.util["gpu"] == 0.92 and obs.util["emc"] == 0.34
    assert obs.temps_c["tj"] == 57.125


def test_jp7_per_gpc_clocks_third_rail_field_and_slashed_temperatures():
    first, second = _samples("jp7-agx-orin.synthetic.txt")
    assert first.gpu == ClockedEngine(True, 12.0, (1300 * MHZ, 1300 * MHZ))
    assert second.gpu.freqs_hz == (1300 * MHZ, 1236 * MHZ) and second.gpu.freq_hz == 1300 * MHZ
    assert second.rails["VDD_GPU_SOC"] == RailPower(18211.0, 11675.0, 18211.0)
    assert second.temps_c["cpu"] == 61.25 and second.temps_c["gpu"] == 64.5
    assert len(first.cpus) == 12 and first.swap is None
    assert first.engines["PVA0_FREQ"] == ClockedEngine(on=False) and second.engines["VIC"].freq_hz == 115 * MHZ


def test_agx_orin_has_no_input_rail_so_the_total_needs_the_catalogue_rule():
    sample = _samples("jp7-agx-orin.synthetic.txt")[1]
    bare = to_observation(sample, t=0.0)
    assert bare.total_power_mw is None
    assert any("total power" in p and "power_total" in p for p in bare.unavailable)
    module_only = SensorMapping(total_rails=("VDD_GPU_SOC", "VDD_CPU_CV"))
    assert to_observation(sample, 0.0, module_only).total_power_mw == 18211.0 + 7012.0


def test_thor_has_clocks_but_no_gpu_load():
    first, second = _samples("thor.synthetic.txt")
    assert first.gpu == ClockedEngine(True, None, (1575 * MHZ,) * 3)
    assert second.gpu.freqs_hz == (1575 * MHZ, 1410 * MHZ, 1575 * MHZ)
    assert first.ram.lfb_block_mb == 0.5 and second.timestamp == datetime(2025, 12, 31, 23, 59, 59)
    obs = to_observation(second, t=1.0)
    assert obs.total_power_mw == 89500.0  # the carrier's VIN rail
    assert "gpu" not in obs.util and any(p.startswith("util gpu") for p in obs.unavailable)
    assert sample_freqs_hz(second)["gpu"] == 1575 * MHZ


def test_jp4_variants_nano_xavier_and_tx1():
    nano, xavier, tx1 = _samples("jp4-variants.synthetic.txt")
    assert nano.iram is not None and nano.iram.total_mb == pytest.approx(252 / 1024)
    assert nano.swap.cached_mb == 7.0 and nano.engines["NVENC"].freq_hz == 716 * MHZ
    assert to_observation(nano, 0.0).total_power_mw == 4520.0
    assert xavier.emc == ClockedEngine(True, 0.0, ()) and xavier.gpu == ClockedEngine(True, 0.0, ())
    assert xavier.rails["GPU"] == RailPower(0.0, 0.0) and xavier.temps_c["GPU"] == 36.5
    assert xavier.rails["SYS5V"].cur_mw == 1811.0
    assert [c.freq_hz for c in tx1.cpus] == [408 * MHZ] * 4 and [c.load_pct for c in tx1.cpus] == [17, 13, 29, 5]
    assert tx1.emc == ClockedEngine(True, 1.0, (408 * MHZ,)) and tx1.gpu.freq_hz == 76 * MHZ


def test_unknown_tokens_are_kept_and_known_ones_still_parse():
    s = parse_tegrastats("RAM 100/200MB WIDGET 3 things FOO_BAR 12%@[5,x] GR3D_FREQ 1%@2 weird@C VDD_IN 1/2")
    assert s.extra == ("things", "FOO_BAR", "12%@[5,x]", "weird@C")
    assert s.engines["WIDGET"].freq_hz == 3 * MHZ and "FOO_BAR" not in s.engines
    assert s.gpu == ClockedEngine(True, 1.0, (2 * MHZ,)) and s.rails["VDD_IN"] == RailPower(1.0, 2.0)
    broken_cpu = parse_tegrastats("RAM 1/2MB CPU [1%@3,??] EMC_FREQ 1%@3")
    assert broken_cpu.cpus == () and broken_cpu.extra == ("CPU", "[1%@3,??]")


def test_a_timestamp_that_is_not_a_date_is_kept_not_crashed_on():
    s = parse_tegrastats("13-45-2024 99:00:00 RAM 1/2MB")
    assert s.timestamp is None and s.extra == ("13-45-2024", "99:00:00")


@pytest.mark.parametrize("line", ["", "   ", "hello world", "tegrastats: command not found", "VDD_IN 1/2 CPU@3C"])
def test_lines_that_are_not_tegrastats_raise_and_say_what_was_expected(line):
    with pytest.raises(ValueError, match=r"not a tegrastats line: expected tokens like 'RAM used/totalMB'"):
        parse_tegrastats(line)


def test_a_log_with_a_bad_line_names_the_line():
    good = "RAM 1/2MB GR3D_FREQ 0%@76"
    assert len(read_tegrastats(["# provenance", "", good, good])) == 2
    with pytest.raises(ValueError, match=r"^line 3: not a tegrastats line.*remove or fix that line"):
        read_tegrastats([good, "", "Segmentation fault", good])


def test_samples_are_frozen():
    s = parse_tegrastats("RAM 1/2MB VDD_IN 1/2 CPU@40C")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.ram = None  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.rails["X"] = RailPower(0, 0)  # type: ignore[index]


def test_mapping_rules():
    assert total_power_mw({"POM_5V_IN": 900.0, "POM_5V_GPU": 10.0}, SensorMapping()) == 900.0
    assert total_power_mw({"GPU": 1.0, "CPU": 2.0}, SensorMapping()) is None
    assert total_power_mw({"GPU": 1.0, "CPU": 2.0}, SensorMapping(total_rails=("GPU", "CPU"))) == 3.0
    assert total_power_mw({"GPU": 1.0}, SensorMapping(total_rails=("GPU", "CPU"))) is None
    two = SensorMapping(clusters={"little": (0, 1), "big": (2, 3), "ghost": (8,)})
    util, problems = cluster_util([0.5, None, None, None], two)
    assert util == {"little": 0.5, "big": 0.0}  # all-off cluster is idle; unknown cpus are not guessed
    assert problems == ["util ghost: cpus [8] not all reported (only 4 cores)"]
    assert cluster_util([0.2, 0.4], SensorMapping())[0] == {"cpu": pytest.approx(0.3)}
    assert SensorMapping().keeps_temp("CPU", 40.0)
    assert not SensorMapping().keeps_temp("PMIC-Die", 100.0) and not SensorMapping().keeps_temp("GPU", -256.0)


def test_simulated_lines_stay_labelled():
    sample = parse_tegrastats("RAM 1/2MB VDD_IN 5/5")
    assert to_observation(sample, 1.0, simulated=True).simulated is True
    assert to_observation(sample, 1.0).simulated is False


_core = st.one_of(st.just(None), st.tuples(st.integers(0, 100), st.integers(1, 3000)))
_KEYWORDS = {"RAM", "SWAP", "IRAM", "MTS", "CPU"}
_name = st.from_regex(r"[A-Z][A-Z0-9_]{0,8}", fullmatch=True).filter(lambda n: n not in _KEYWORDS)


@settings(max_examples=60, deadline=None)
@given(
    cores=st.lists(_core, min_size=1, max_size=12),
    rails=st.dictionaries(_name, st.tuples(st.integers(0, 99999), st.integers(0, 99999)), max_size=6),
    temps=st.dictionaries(st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True), st.integers(-2560, 1200), max_size=6),
    gpcs=st.lists(st.integers(1, 3000), min_size=1, max_size=4),
    gpu_load=st.one_of(st.none(), st.integers(0, 100)),
    unit=st.sampled_from(["", "mW"]),
)
def test_generated_lines_round_trip(cores, rails, temps, gpcs, gpu_load, unit):
    cpu = ",".join("off" if c is None else f"{c[0]}%@{c[1]}" for c in cores)
    gr3d = ("" if gpu_load is None else f"{gpu_load}%") + "@[" + ",".join(map(str, gpcs)) + "]"
    parts = [f"RAM 10/20MB CPU [{cpu}] GR3D_FREQ {gr3d}"]
    parts += [f"{n}@{t / 10}C" for n, t in temps.items()]
    parts += [f"{n} {cur}{unit}/{avg}{unit}" for n, (cur, avg) in rails.items()]
    s = parse_tegrastats(" ".join(parts))
    assert s.extra == ()
    assert s.cpus == tuple(CpuCore(False) if c is None else CpuCore(True, c[0], c[1] * MHZ) for c in cores)
    assert s.gpu == ClockedEngine(True, None if gpu_load is None else float(gpu_load), tuple(g * MHZ for g in gpcs))
    assert dict(s.rails) == {n: RailPower(float(c), float(a)) for n, (c, a) in rails.items()}
    assert dict(s.temps_c) == {n: t / 10 for n, t in temps.items() if t > -2560}
    assert s.temps_off == tuple(n for n, t in temps.items() if t <= -2560)
