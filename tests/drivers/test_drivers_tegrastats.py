"""The tegrastats parser against the three real TX2 logs (JetPack 4, tests/fixtures/tx2/tegrastats)."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import pytest

from governor.drivers.catalogue import load_board
from governor.drivers.tegrastats import (
    ClockedEngine,
    CpuCore,
    Memory,
    RailPower,
    SensorMapping,
    parse_tegrastats,
    read_tegrastats,
    sample_freqs_hz,
    to_observation,
)

# Real TX2 logs, copied into the repository with their source named (tests/fixtures/tx2/README.md).
DATA = Path(__file__).resolve().parents[1] / "fixtures" / "tx2" / "tegrastats"
LOGS = sorted(DATA.glob("tx2-*.txt"))
LINES = [(log.name, n, line) for log in LOGS for n, line in enumerate(log.read_text().splitlines(), 1)]
MEMBENCH = "tx2-membench_c_1420800_g_1300500000_m_1866000000.txt"
CPU_LOW = "tx2-cpubench_c_345600_g_114750000_m_40800000.txt"


def _line(name: str, number: int) -> str:
    return (DATA / name).read_text().splitlines()[number - 1]


def _mhz_hz(text: str) -> int:
    return int(text) * 1_000_000


def _derive(line: str) -> dict[str, object]:
    """Every field of a JP4 TX2 line by plain splitting, independent of the parser's regexes."""
    tok = line.split()
    assert tok[0] == "RAM" and tok[4] == "SWAP" and tok[8] == "CPU" and tok[2] == "(lfb" and tok[6] == "(cached"
    used, total = tok[1].removesuffix("MB").split("/")
    blocks, size = tok[3].removesuffix("MB)").split("x")
    sw_used, sw_total = tok[5].removesuffix("MB").split("/")
    cores = []
    for item in tok[9].strip("[]").split(","):
        pct, mhz = item.split("%@")
        cores.append(CpuCore(True, float(pct), _mhz_hz(mhz)))
    fields: dict[str, object] = {
        "ram": Memory(float(used), float(total), lfb_blocks=int(blocks), lfb_block_mb=float(size)),
        "swap": Memory(float(sw_used), float(sw_total), cached_mb=float(tok[7].removesuffix("MB)"))),
        "cpus": tuple(cores),
    }
    for key, name in (("emc", "EMC_FREQ"), ("gpu", "GR3D_FREQ")):
        pct, mhz = tok[tok.index(name) + 1].split("%@")
        fields[key] = ClockedEngine(True, float(pct), (_mhz_hz(mhz),))
    fields["engines"] = {"APE": ClockedEngine(True, None, (_mhz_hz(tok[tok.index("APE") + 1]),))}
    mts = tok.index("MTS")
    assert tok[mts + 1] == "fg" and tok[mts + 3] == "bg"
    fields["mts_fg_bg_pct"] = (int(tok[mts + 2].rstrip("%")), int(tok[mts + 4].rstrip("%")))
    rest = tok[mts + 5 :]
    fields["temps_c"] = {t.split("@")[0]: float(t.split("@")[1].rstrip("C")) for t in rest if "@" in t}
    names = [t for t in rest if "@" not in t and "/" not in t]
    values = [t for t in rest if "/" in t]
    fields["rails"] = {n: RailPower(*(float(v) for v in val.split("/"))) for n, val in zip(names, values, strict=True)}
    return fields


def test_the_three_real_logs_are_present_with_40_lines_each():
    assert [log.name for log in LOGS] == sorted(
        [MEMBENCH, CPU_LOW, "tx2-cpubench_c_1420800_g_624750000_m_800000000.txt"]
    )
    assert len(LINES) == 120


@pytest.mark.parametrize(("log", "number", "line"), LINES, ids=[f"{n[:14]}-{i}" for n, i, _ in LINES])
def test_every_real_line_parses_exactly_as_plain_splitting_reads_it(log, number, line):
    sample = parse_tegrastats(line)
    expected = _derive(line)
    for name, value in expected.items():
        got = getattr(sample, name)
        assert (dict(got) if name in ("temps_c", "rails", "engines") else got) == value, (log, number, name)
    assert sample.extra == ()
    assert sample.temps_off == ()
    assert sample.timestamp is None and sample.iram is None
    assert len(sample.rails) == 6 and len(sample.temps_c) == 8 and len(sample.cpus) == 6


def test_concrete_values_of_the_first_membench_line():
    s = parse_tegrastats(_line(MEMBENCH, 1))
    assert s.ram == Memory(2130.0, 7850.0, lfb_blocks=443, lfb_block_mb=4.0)
    assert s.swap == Memory(0.0, 3925.0, cached_mb=0.0)
    assert [c.load_pct for c in s.cpus] == [50.0, 0.0, 0.0, 27.0, 41.0, 45.0]
    assert [c.freq_hz for c in s.cpus] == [1_421_000_000, 345_000_000, 345_000_000] + [1_420_000_000] * 3
    assert s.emc == ClockedEngine(True, 5.0, (1_866_000_000,)) and s.emc.freq_hz == 1_866_000_000
    assert s.gpu == ClockedEngine(True, 0.0, (1_300_000_000,))
    assert s.engines["APE"].freq_hz == 150_000_000
    assert s.temps_c["Tdiode"] == 39.5 and s.temps_c["thermal"] == 40.9 and s.temps_c["PMIC"] == 50.0
    assert s.rails["VDD_IN"] == RailPower(3645.0, 3645.0) and s.rails["VDD_SYS_DDR"].cur_mw == 1092.0


def test_concrete_values_where_current_and_average_differ():
    s = parse_tegrastats(_line(CPU_LOW, 2))
    assert s.rails["VDD_4V0_WIFI"] == RailPower(0.0, 9.0)
    assert s.rails["VDD_IN"] == RailPower(2080.0, 2099.0)
    assert s.emc == ClockedEngine(True, 66.0, (40_000_000,))
    assert s.temps_c["GPU"] == 38.5 and s.ram.lfb_blocks == 1397
    last = parse_tegrastats(_line(MEMBENCH, 40))
    assert last.rails["VDD_SYS_CPU"] == RailPower(1410.0, 1419.0)
    assert last.cpus[0] == CpuCore(True, 100.0, 1_351_000_000)


@pytest.mark.parametrize("log", LOGS, ids=lambda p: p.name[:14])
def test_parsed_clocks_match_the_setpoints_in_the_file_name(log):
    cpu_khz, gpu_hz, emc_hz = map(int, re.search(r"c_(\d+)_g_(\d+)_m_(\d+)", log.name).groups())
    samples = read_tegrastats(log.read_text().splitlines())
    mapping = SensorMapping(clusters={"a57": (0, 3, 4, 5)})
    # tegrastats truncates to whole MHz: 624.75 MHz prints as 624, 40.8 MHz as 40
    assert {s.gpu.freq_hz for s in samples} == {gpu_hz // 1_000_000 * 1_000_000}
    assert {s.emc.freq_hz for s in samples} == {emc_hz // 1_000_000 * 1_000_000}
    a57 = statistics.median(sample_freqs_hz(s, mapping)["a57"] for s in samples)
    assert abs(a57 - cpu_khz * 1000) <= 1_000_000


def test_observation_from_a_real_line_with_the_tx2_catalogue_mapping():
    mapping = SensorMapping.from_board(load_board("jetson-tx2"))
    assert mapping.total_rails == ("VDD_IN",) and dict(mapping.clusters) == {"a57": (0, 3, 4, 5), "denver": (1, 2)}
    obs = to_observation(parse_tegrastats(_line(MEMBENCH, 1)), t=12.5, mapping=mapping)
    assert obs.t == 12.5 and obs.simulated is False and obs.unavailable == ()
    assert obs.total_power_mw == 3645.0
    assert dict(obs.power_mw) == {
        "VDD_SYS_GPU": 235.0, "VDD_SYS_SOC": 783.0, "VDD_4V0_WIFI": 0.0,
        "VDD_IN": 3645.0, "VDD_SYS_CPU": 784.0, "VDD_SYS_DDR": 1092.0,
    }
    assert dict(obs.util) == pytest.approx({"a57": (50 + 27 + 41 + 45) / 400, "denver": 0.0, "gpu": 0.0, "emc": 0.05})
    # zones under the catalogue's sysfs types (issue 21.9): BCPU -> BCPU-therm, thermal -> thermal-fan-est
    assert "PMIC-Die" not in obs.temps_c and obs.temps_c["BCPU-therm"] == 41.5 and len(obs.temps_c) == 7
    assert obs.temps_c["thermal-fan-est"] == 40.9 and obs.temps_c["Tboard_tegra"] == 38.0


def test_a_whole_real_log_reads_in_order():
    samples = read_tegrastats((DATA / MEMBENCH).read_text().splitlines(keepends=True))
    assert len(samples) == 40
    assert [s.rails["VDD_IN"].cur_mw for s in samples[:3]] == [3645.0, 3879.0, 4035.0]
