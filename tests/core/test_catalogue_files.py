"""Every catalogue file loads and says what the boards really have (figures from docs/boards.md sources)."""

from __future__ import annotations

import itertools

import pytest

from governor.drivers.catalogue import board_names, load_board, profiles_dir

BOARDS = board_names()
DEVICES = [n for n in BOARDS if n != "host"]


def test_the_catalogue_has_every_supported_board():
    assert set(BOARDS) >= {
        "host",
        "jetson-agx-orin",
        "jetson-nano",
        "jetson-orin-nano",
        "jetson-tx2",
        "jetson-xavier-nx",
        "odroid-xu3",
        "odroid-xu4",
    }


@pytest.mark.parametrize("name", BOARDS)
def test_each_file_loads_under_its_own_name(name):
    spec = load_board(name)
    assert spec.name == name
    assert (profiles_dir() / "boards" / f"{name}.toml").is_file()
    assert spec.board.sources, "every figure needs a source"


@pytest.mark.parametrize("name", DEVICES)
def test_cpus_units_and_hotplug_agree(name):
    spec = load_board(name)
    cpus = sorted(c for u in spec.units for c in u.cpus)
    assert cpus == list(range(spec.cpu_count)), "each cpu belongs to exactly one unit"
    assert 0 not in spec.hotplug_cpus and set(spec.hotplug_cpus) <= set(cpus)
    cpu_domains = {d.name for d in spec.domains if d.driver == "cpufreq"}
    assert {u.domain for u in spec.units if u.kind == "cpu"} == cpu_domains


@pytest.mark.parametrize("name", DEVICES)
def test_voltages_never_fall_as_frequency_rises(name):
    for domain in load_board(name).domains:
        assert all(a <= b for a, b in itertools.pairwise(domain.volts_mv)), domain.name


@pytest.mark.parametrize("name", DEVICES)
def test_power_total_uses_connected_rails_only(name):
    spec = load_board(name)
    connected = {r.name for r in spec.rails if r.connected}
    assert set(spec.power_total) <= connected
    if spec.power:
        assert spec.power_total, "boards with sensors must say what board power is"


def test_no_two_boards_claim_the_same_compatible_string():
    seen: dict[str, str] = {}
    for name in DEVICES:
        for compatible in load_board(name).identify.compatible:
            assert compatible not in seen, f"{compatible} is claimed by {seen.get(compatible)} and {name}"
            seen[compatible] = name


@pytest.mark.parametrize("name", DEVICES)
def test_the_example_device_tree_identifies_its_own_board(name):
    ident = load_board(name).identify
    by_compatible = set(ident.compatible) & set(ident.compatible_example)
    by_model = [m for m in ident.model if m.lower() in ident.model_example.lower()]
    assert by_compatible or by_model


def test_nano_tables_match_the_published_ones():
    spec = load_board("jetson-nano")
    cpu, gpu, emc = spec.domain("cpu"), spec.domain("gpu"), spec.domain("emc")
    assert (cpu.table[0], cpu.table[-1], len(cpu.table)) == (102000, 1479000, 15)
    assert (gpu.table[0], gpu.table[-1]) == (76_800_000, 921_600_000)
    assert all(b - a == 76_800_000 for a, b in itertools.pairwise(gpu.table))
    assert (emc.table[0], emc.table[-1]) == (204_000_000, 1_600_000_000)
    assert spec.power_total == ("POM_5V_IN",) and spec.board.limit_writes == "einval"


def test_odroid_xu3_clusters_mali_and_sensors():
    spec = load_board("odroid-xu3")
    a7, a15, gpu = spec.domain("cpu-a7"), spec.domain("cpu-a15"), spec.domain("gpu")
    assert a7.table == tuple(range(200_000, 1_400_001, 100_000))
    assert a15.table == tuple(range(200_000, 2_000_001, 100_000))
    assert gpu.driver == "mali-vendor" and gpu.unit == "MHz" and gpu.table == (177, 266, 350, 420, 480, 543, 600)
    assert len(gpu.volts_mv) == 7 and a15.volts_mv[-1] == 1312.5
    assert {p.path.rsplit("/", 1)[1] for p in spec.power} == {"3-0040", "3-0041", "3-0044", "3-0045"}
    assert all(p.update_interval_ms == pytest.approx(263.808) for p in spec.power)
    assert not any(d.kind == "emc" for d in spec.domains)


def test_odroid_xu4_has_devfreq_mali_and_no_power_sensors():
    spec = load_board("odroid-xu4")
    assert spec.power == () and spec.power_total == ()
    assert "power" in spec.board.notes
    gpu = spec.domain("gpu")
    assert (
        gpu.driver == "devfreq"
        and gpu.unit == "Hz"
        and gpu.table_hz == tuple(f * 10**6 for f in (177, 266, 350, 420, 480, 543, 600))
    )


def test_agx_orin_counts_module_rails_and_skips_nc_channels():
    spec = load_board("jetson-agx-orin")
    assert set(spec.power_total) == {"VDD_GPU_SOC", "VDD_CPU_CV", "VDDQ_VDD2_1V8AO"}
    second = spec.power[1]
    assert [r.connected for r in second.channels] == [False, True, False]
    assert [u.cpus for u in spec.units if u.kind == "cpu"] == [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9, 10, 11)]


def test_host_discovers_cpufreq_and_claims_nothing_else():
    spec = load_board("host")
    assert spec.discover_cpufreq and spec.domains == () and spec.power == () and spec.thermal == ()
    (unit,) = spec.units
    assert unit.kind == "cpu" and unit.cpus == ()
