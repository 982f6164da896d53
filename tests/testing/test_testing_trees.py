"""Fake trees of every catalogue board hold what the catalogue says, where its patterns say, as the kernel prints it."""

from __future__ import annotations

import errno
import re
import stat

import pytest

from governor.drivers._sysfs import SysfsError, SysfsRoot
from governor.drivers.catalogue import board_names, load_board
from governor.testing import FakeSysfsRoot, FakeTree, make_fake_tree, open_root

BOARDS = board_names()


@pytest.fixture(scope="module")
def trees(fake_module_dir) -> dict[str, FakeTree]:
    base = fake_module_dir
    return {name: make_fake_tree(load_board(name), base / name, hwmon_base=2, seed=3) for name in BOARDS}


@pytest.fixture(params=BOARDS)
def tree(request, trees) -> FakeTree:
    return trees[request.param]


def _devfreq_entry(sysfs, domain) -> str:
    hits = [
        e
        for p in domain.paths
        if p.startswith("sys/class/devfreq/")  # the class entry; a catalogue may list device paths first
        for e in sysfs.glob(p)
        if sysfs.read(f"{e}/device/of_node/name").rstrip("\0") in domain.of_node
    ]
    assert len(hits) == 1, hits
    return hits[0]


def test_cpufreq_policies_are_where_the_patterns_say(tree):
    sysfs, spec = tree.sysfs, tree.spec
    for domain in (d for d in spec.domains if d.driver == "cpufreq"):
        (policy, *_) = [h for p in domain.paths for h in sysfs.glob(p)]
        cpus = sorted(c for u in spec.units if u.domain == domain.name for c in u.cpus)
        assert sysfs.read(f"{policy}/scaling_available_frequencies") == "".join(f"{f} " for f in domain.table)
        assert sysfs.read(f"{policy}/related_cpus") == " ".join(map(str, cpus))
        assert sysfs.read_int(f"{policy}/cpuinfo_min_freq") == domain.table[0]
        assert sysfs.read_int(f"{policy}/cpuinfo_max_freq") == domain.table[-1]
        assert sysfs.read(f"{policy}/scaling_available_governors").split() == list(domain.governors)
        assert sysfs.read(f"{policy}/scaling_governor") == domain.default_governor
        idle = domain.table[-1] if domain.default_governor == "performance" else domain.table[0]
        assert sysfs.read_int(f"{policy}/scaling_cur_freq") == idle
        assert (sysfs.read_int(f"{policy}/scaling_min_freq"), sysfs.read_int(f"{policy}/scaling_max_freq")) == (
            domain.table[0],
            domain.table[-1],
        )
        assert sysfs.read(f"{policy}/scaling_setspeed") == "<unsupported>"
        assert stat.S_IMODE(sysfs.path(f"{policy}/cpuinfo_cur_freq").stat().st_mode) == 0o400
        for cpu in cpus:
            assert sysfs.realpath(f"sys/devices/system/cpu/cpu{cpu}/cpufreq") == sysfs.realpath(policy)


def test_devfreq_nodes_are_found_by_of_node_and_speak_hz(tree):
    sysfs = tree.sysfs
    for domain in (d for d in tree.spec.domains if d.driver == "devfreq"):
        entry = _devfreq_entry(sysfs, domain)
        assert entry.startswith("sys/class/devfreq/") and sysfs.realpath(entry) == domain.real_path
        assert sysfs.read_bytes(f"{entry}/device/of_node/name").endswith(b"\0")
        assert sysfs.read(f"{entry}/available_frequencies") == " ".join(map(str, domain.table))
        assert sysfs.read(f"{entry}/governor") == domain.default_governor
        assert sysfs.read_int(f"{entry}/cur_freq") == domain.table[0]
        assert not sysfs.exists(f"{entry}/userspace/set_freq")
        if domain.load_path:
            assert sysfs.read_bytes(domain.load_path) == b"0\n"


def test_jetson_emc_debugfs_nodes(tree):
    sysfs = tree.sysfs
    for domain in (d for d in tree.spec.domains if d.kind == "emc"):
        (node,) = sysfs.glob(domain.paths[0])
        if domain.driver == "tegra-emc-bpmp":
            assert [sysfs.read_int(f"{node}/{f}") for f in ("rate", "min_rate", "max_rate", "mrq_rate_locked")] == [
                domain.table[0],
                domain.table[0],
                domain.table[-1],
                0,
            ]
        else:
            assert sysfs.read(f"{node}/clk_state") == "0" and sysfs.exists(f"{node}/clk_update_rate")
            assert sysfs.read_int("sys/kernel/debug/tegra_bwmgr/emc_max_rate") == domain.table[-1]
            assert sysfs.read_int("sys/kernel/debug/clk/emc/clk_rate") == domain.table[0]


def test_vendor_mali_speaks_mhz(trees):
    sysfs = trees["odroid-xu3"].sysfs
    node = "sys/devices/11800000.mali"
    assert sysfs.read(f"{node}/dvfs_table").split() == ["600", "543", "480", "420", "350", "266", "177"]
    assert [sysfs.read(f"{node}/{f}") for f in ("clock", "dvfs", "dvfs_min_lock", "dvfs_max_lock")] == [
        "177",
        "1",
        "-1",
        "-1",
    ]


def test_power_devices_in_their_drivers_layout(tree):
    sysfs = tree.sysfs
    for device in tree.spec.power:
        (found,) = sysfs.glob(device.path)
        assert sysfs.realpath(found) == device.real_path
        names = [r.label or r.name for r in device.channels]
        if device.driver == "ina3221-iio":
            (iio,) = sysfs.glob(f"{found}/iio:device*")
            assert [sysfs.read(f"{iio}/rail_name_{n}") for n in range(3)] == names
            for n in range(3):
                mw, mv, ma = (sysfs.read_int(f"{iio}/in_{k}{n}_input") for k in ("power", "voltage", "current"))
                assert abs(mw - mv * ma / 1000) <= 1
        elif device.driver == "ina3221-hwmon":
            (hwmon,) = sysfs.glob(f"{found}/hwmon/hwmon*")
            assert [sysfs.read(f"{hwmon}/in{n}_label") for n in (1, 2, 3)] == names
            assert not sysfs.glob(f"{hwmon}/power*"), "the upstream ina3221 driver has no power file"
            for n, rail in enumerate(device.channels, start=1):
                assert (sysfs.read_int(f"{hwmon}/in{n}_input") > 1000) == rail.connected
        elif device.driver == "ina231":
            assert sysfs.read(f"{found}/sensor_name") == names[0]
            assert re.fullmatch(r"\d+ usec", sysfs.read(f"{found}/update_period"))
            assert sysfs.read_bytes(f"{found}/sensor_W") == b"0.000000\n" and sysfs.read(f"{found}/enable") == "0"


def test_thermal_zones_in_catalogue_order(tree):
    sysfs = tree.sysfs
    zones = sorted(sysfs.glob("sys/class/thermal/thermal_zone*"), key=lambda z: int(z.rsplit("zone", 1)[1]))
    assert [sysfs.read(f"{z}/type") for z in zones] == [z.type for z in tree.spec.thermal]
    release = re.search(r"\bR(\d+)", tree.spec.board.software)
    jetpack6 = release is not None and int(release[1]) >= 36
    for rel, zone in zip(zones, tree.spec.thermal, strict=True):
        if zone.disabled and jetpack6:  # a powered-off zone fails the read on L4T R36 (issue 21.3)
            with pytest.raises(SysfsError) as err:
                sysfs.read_int(f"{rel}/temp")
            assert err.value.errno == errno.EAGAIN
            continue
        temp = sysfs.read_int(f"{rel}/temp")
        assert temp == -256000 if zone.disabled else 20000 < temp <= 100000
        if zone.passive_trip_c:
            assert sysfs.read_int(f"{rel}/trip_point_0_temp") == zone.passive_trip_c * 1000
            assert sysfs.read(f"{rel}/trip_point_0_type") == "passive"


def test_cpu_lists_hotplug_files_and_proc_stat(tree):
    sysfs, spec = tree.sysfs, tree.spec
    n = spec.cpu_count or 4
    every = "0" if n == 1 else f"0-{n - 1}"
    assert [sysfs.read(f"sys/devices/system/cpu/{f}") for f in ("possible", "present", "online", "offline")] == [
        every,
        every,
        every,
        "",
    ]
    hotplug = sorted(int(p.split("/")[-2][3:]) for p in sysfs.glob("sys/devices/system/cpu/cpu*/online"))
    assert hotplug == sorted(spec.hotplug_cpus)
    stat_lines = [line.split()[0] for line in sysfs.read("proc/stat").splitlines() if line.startswith("cpu")]
    assert stat_lines == ["cpu", *(f"cpu{k}" for k in range(n))]


def test_identity_files(tree):
    sysfs, ident = tree.sysfs, tree.spec.identify
    if tree.spec.board.family == "host":
        assert not sysfs.exists("proc/device-tree")
        return
    assert sysfs.read_bytes("proc/device-tree/compatible").split(b"\0")[:-1] == [
        c.encode() for c in ident.compatible_example
    ]
    assert sysfs.read_bytes("proc/device-tree/model") == ident.model_example.encode() + b"\0"
    jetson = tree.spec.board.family == "jetson"
    assert sysfs.exists("etc/nv_tegra_release") == jetson
    if jetson:
        assert sysfs.read("etc/nv_tegra_release").startswith("# R3")


def test_hwmon_numbers_follow_hwmon_base(trees, fake_dir):
    spec = load_board("jetson-agx-orin")
    moved = make_fake_tree(spec, fake_dir / "b", hwmon_base=7).sysfs.glob("sys/class/hwmon/hwmon*")
    assert trees["jetson-agx-orin"].sysfs.glob("sys/class/hwmon/hwmon*") == [
        "sys/class/hwmon/hwmon2",
        "sys/class/hwmon/hwmon3",
    ]
    assert moved == ["sys/class/hwmon/hwmon7", "sys/class/hwmon/hwmon8"]


def test_seed_decides_the_readings(trees, fake_dir):
    spec = load_board("jetson-nano")
    same = make_fake_tree(spec, fake_dir / "a", hwmon_base=2, seed=3).snapshot_bytes()
    other = make_fake_tree(spec, fake_dir / "b", hwmon_base=2, seed=4).snapshot_bytes()
    assert same == trees["jetson-nano"].snapshot_bytes() and same != other
    assert ".governor-fake-tree.json" not in same


def test_open_root_tells_fake_trees_from_plain_directories(trees, tmp_path):
    fake = open_root(trees["jetson-nano"].root)
    assert isinstance(fake, FakeSysfsRoot) and fake.spec.name == "jetson-nano"
    plain = open_root(tmp_path)
    assert type(plain) is SysfsRoot


def test_variants(fake_dir):
    tmp_path = fake_dir
    nano = load_board("jetson-nano")
    bare = make_fake_tree(nano, tmp_path / "bare", variant="no-table")
    assert not bare.sysfs.exists("sys/devices/system/cpu/cpufreq/policy0/scaling_available_frequencies")
    gated = make_fake_tree(nano, tmp_path / "gated", variant="railgated")
    assert gated.sysfs.glob("sys/class/devfreq/*") == []
    gated.sysfs.write("sys/devices/gpu.0/railgate_enable", 0)
    assert _devfreq_entry(gated.sysfs, nano.domain("gpu")) == "sys/class/devfreq/57000000.gpu"
    with pytest.raises(ValueError, match="known"):
        make_fake_tree(nano, tmp_path / "x", variant="turbo")
    with pytest.raises(ValueError, match="needs a Jetson GPU"):
        make_fake_tree(load_board("odroid-xu4"), tmp_path / "y", variant="railgated")
    with pytest.raises(ValueError, match="not empty"):
        make_fake_tree(nano, tmp_path / "bare")


def test_rapl_and_mainline_ina231_layouts(fake_dir):
    """Drivers the shipped catalogue does not use yet still get their real layout (site copies may list them)."""
    data = load_board("host").model_dump(mode="json")
    data["power"] = [
        {
            "driver": "rapl",
            "path": "sys/class/powercap/intel-rapl:0",
            "real_path": "sys/devices/virtual/powercap/intel-rapl/intel-rapl:0",
            "channels": [{"name": "package", "label": "package-0"}],
        },
        {
            "driver": "ina2xx-hwmon",
            "path": "sys/bus/i2c/drivers/ina2xx/0-0040",
            "real_path": "sys/devices/platform/i2c-0/0-0040",
            "update_interval_ms": 2.2,
            "channels": [{"name": "VDD_ARM", "supplies": ["cpu"]}],
        },
    ]
    sysfs = make_fake_tree(type(load_board("host")).model_validate(data), fake_dir / "h", hwmon_base=4).sysfs
    zone = "sys/class/powercap/intel-rapl:0"
    assert sysfs.read(f"{zone}/name") == "package-0" and sysfs.read_int(f"{zone}/energy_uj") > 0
    assert stat.S_IMODE(sysfs.path(f"{zone}/energy_uj").stat().st_mode) == 0o400
    assert sysfs.read_int(f"{zone}/max_energy_range_uj") > sysfs.read_int(f"{zone}/energy_uj")
    (hwmon,) = sysfs.glob("sys/bus/i2c/drivers/ina2xx/0-0040/hwmon/hwmon*")
    assert hwmon.endswith("hwmon4") and sysfs.read(f"{hwmon}/name") == "ina231"
    uw, mv, ma = (sysfs.read_int(f"{hwmon}/{f}") for f in ("power1_input", "in1_input", "curr1_input"))
    assert uw == mv * ma and sysfs.read_int(f"{hwmon}/update_interval") == 2
