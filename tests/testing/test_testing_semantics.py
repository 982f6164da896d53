"""Writes through FakeSysfsRoot behave as the board's kernel: snapping, EINVAL vs clamp, read-only files, faults."""

from __future__ import annotations

import errno

import pytest

from governor.drivers._sysfs import SysfsMissing, SysfsPermission, SysfsRejected
from governor.drivers.catalogue import load_board
from governor.testing import FakeTree, make_fake_tree

NANO_CPU = "sys/devices/system/cpu/cpufreq/policy0"  # einval board, table 102000 .. 1479000 kHz
ORIN_CPU = "sys/devices/system/cpu/cpufreq/policy0"  # clamp board, table 115200 .. 1510400 kHz
NANO_GPU = "sys/class/devfreq/57000000.gpu"


@pytest.fixture
def nano(fake_dir) -> FakeTree:
    return make_fake_tree(load_board("jetson-nano"), fake_dir / "nano")


@pytest.fixture
def orin(fake_dir) -> FakeTree:
    return make_fake_tree(load_board("jetson-orin-nano"), fake_dir / "orin")


@pytest.fixture
def xu3(fake_dir) -> FakeTree:
    return make_fake_tree(load_board("odroid-xu3"), fake_dir / "xu3")


def _limits(tree: FakeTree, policy: str) -> tuple[int, int, int]:
    return tuple(tree.sysfs.read_int(f"{policy}/scaling_{f}_freq") for f in ("min", "max", "cur"))  # type: ignore[return-value]


def test_cpufreq_limits_clamp_into_cpuinfo_and_snap_to_the_table(nano):
    s = nano.sysfs
    s.write(f"{NANO_CPU}/scaling_max_freq", 1000000)  # between 921600 and 1036800: a max snaps down
    s.write(f"{NANO_CPU}/scaling_min_freq", 500000)  # between 403200 and 518400: a min snaps up
    assert _limits(nano, NANO_CPU) == (518400, 921600, 518400)
    s.write(f"{NANO_CPU}/scaling_max_freq", 9_999_999)
    s.write(f"{NANO_CPU}/scaling_min_freq", 1)
    assert _limits(nano, NANO_CPU) == (102000, 1479000, 102000)


def test_old_kernels_refuse_an_inverted_pair_and_change_nothing(nano):
    s = nano.sysfs
    s.write(f"{NANO_CPU}/scaling_max_freq", 921600)
    before = nano.snapshot_bytes()
    with pytest.raises(SysfsRejected) as caught:
        s.write(f"{NANO_CPU}/scaling_min_freq", 1036800)
    assert caught.value.errno == errno.EINVAL and "above the current max" in str(caught.value)
    s.write(f"{NANO_CPU}/scaling_min_freq", 921600)
    with pytest.raises(SysfsRejected, match="below the current min"):
        s.write(f"{NANO_CPU}/scaling_max_freq", 102000)
    assert _limits(nano, NANO_CPU) == (921600, 921600, 921600)
    assert before != nano.snapshot_bytes()


def test_new_kernels_clamp_and_max_wins(orin):
    s = orin.sysfs
    s.write(f"{ORIN_CPU}/scaling_max_freq", 729600)
    s.write(f"{ORIN_CPU}/scaling_min_freq", 1510400)
    assert _limits(orin, ORIN_CPU) == (729600, 729600, 729600)
    s.write(f"{ORIN_CPU}/scaling_max_freq", 192000)
    assert _limits(orin, ORIN_CPU) == (192000, 192000, 192000)


def test_governors_decide_the_current_frequency(nano):
    s = nano.sysfs
    with pytest.raises(SysfsRejected, match="scaling_available_governors"):
        s.write(f"{NANO_CPU}/scaling_governor", "turbo")
    with pytest.raises(SysfsRejected, match="userspace"):
        s.write(f"{NANO_CPU}/scaling_setspeed", 921600)
    s.write(f"{NANO_CPU}/scaling_governor", "performance")
    assert s.read_int(f"{NANO_CPU}/scaling_cur_freq") == 1479000
    s.write(f"{NANO_CPU}/scaling_governor", "userspace")
    assert s.read(f"{NANO_CPU}/scaling_setspeed") == "1479000"
    s.write(f"{NANO_CPU}/scaling_setspeed", 700000)
    assert s.read_int(f"{NANO_CPU}/scaling_cur_freq") == 710400 == s.read_int(f"{NANO_CPU}/cpuinfo_cur_freq")
    s.write(f"{NANO_CPU}/scaling_max_freq", 403200)
    assert s.read_int(f"{NANO_CPU}/scaling_cur_freq") == 403200
    s.write(f"{NANO_CPU}/scaling_governor", "schedutil")
    assert s.read(f"{NANO_CPU}/scaling_setspeed") == "<unsupported>"
    assert s.read_int(f"{NANO_CPU}/scaling_cur_freq") == 102000


def test_read_only_attributes_refuse_writes_even_for_root(nano):
    for rel in (
        f"{NANO_CPU}/cpuinfo_max_freq",
        f"{NANO_CPU}/scaling_available_frequencies",
        f"{NANO_GPU}/cur_freq",
        "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/in_power0_input",
        "proc/stat",
    ):
        with pytest.raises(SysfsPermission, match="udev rule"):
            nano.sysfs.write(rel, 1)


def test_devfreq_limits_governors_and_userspace(nano):
    s = nano.sysfs
    s.write(f"{NANO_GPU}/max_freq", 600_000_000)
    s.write(f"{NANO_GPU}/min_freq", 200_000_000)
    assert [s.read_int(f"{NANO_GPU}/{f}") for f in ("min_freq", "max_freq", "cur_freq")] == [
        230_400_000,
        537_600_000,
        230_400_000,
    ]
    with pytest.raises(SysfsRejected):
        s.write(f"{NANO_GPU}/min_freq", 600_000_000)
    s.write(f"{NANO_GPU}/governor", "userspace")
    assert s.read(f"{NANO_GPU}/userspace/set_freq") == "undefined"
    s.write(f"{NANO_GPU}/userspace/set_freq", 400_000_000)
    assert s.read_int(f"{NANO_GPU}/cur_freq") == 460_800_000 == s.read_int(f"{NANO_GPU}/target_freq")
    s.write(f"{NANO_GPU}/max_freq", 0)  # 0 lifts the limit
    assert s.read_int(f"{NANO_GPU}/max_freq") == 921_600_000
    s.write(f"{NANO_GPU}/governor", "nvhost_podgov")
    assert not s.exists(f"{NANO_GPU}/userspace")
    assert s.read_int(f"{NANO_GPU}/cur_freq") == 230_400_000


def test_bpmp_emc_rate_needs_the_lock(orin):
    s, emc = orin.sysfs, "sys/kernel/debug/bpmp/debug/clk/emc"
    s.write(f"{emc}/rate", 2133000000)
    assert s.read_int(f"{emc}/rate") == 204000000
    s.write(f"{emc}/mrq_rate_locked", 1)
    s.write(f"{emc}/rate", 700000000)
    assert s.read_int(f"{emc}/rate") == 2133000000  # snapped up to the next table rate
    s.write(f"{emc}/mrq_rate_locked", 0)
    assert s.read_int(f"{emc}/rate") == 204000000


def test_t210_emc_override(nano):
    s, emc = nano.sysfs, "sys/kernel/debug/clk/override.emc"
    s.write(f"{emc}/clk_update_rate", 1600000000)
    assert s.read_int(f"{emc}/clk_rate") == 204000000
    s.write(f"{emc}/clk_state", 1)
    assert s.read_int(f"{emc}/clk_rate") == 1600000000 == s.read_int("sys/kernel/debug/clk/emc/clk_rate")
    s.write(f"{emc}/clk_state", 0)
    assert s.read_int("sys/kernel/debug/clk/emc/clk_rate") == 204000000


def test_vendor_mali_locks(xu3):
    s, mali = xu3.sysfs, "sys/devices/11800000.mali"
    s.write(f"{mali}/dvfs_max_lock", 500)
    s.write(f"{mali}/dvfs_min_lock", 300)
    assert [s.read(f"{mali}/{f}") for f in ("dvfs_min_lock", "dvfs_max_lock", "clock")] == ["350", "480", "350"]
    with pytest.raises(SysfsRejected) as caught:
        s.write(f"{mali}/dvfs_min_lock", 543)
    assert caught.value.errno == errno.EINVAL
    with pytest.raises(SysfsRejected) as caught:
        s.write(f"{mali}/dvfs_max_lock", 1000)
    assert caught.value.errno == errno.ENOENT
    s.write(f"{mali}/dvfs_max_lock", 0)
    s.write(f"{mali}/dvfs_min_lock", 177)  # locking at the bottom is the same as unlocking
    assert [s.read(f"{mali}/{f}") for f in ("dvfs_min_lock", "dvfs_max_lock", "clock")] == ["-1", "-1", "177"]


def test_hotplug_updates_lists_policy_and_proc_stat(xu3):
    s = xu3.sysfs
    before = xu3.snapshot_bytes()
    s.write("sys/devices/system/cpu/cpu5/online", 0)
    assert s.read("sys/devices/system/cpu/online") == "0-4,6-7"
    assert s.read("sys/devices/system/cpu/offline") == "5"
    assert s.read("sys/devices/system/cpu/cpu4/cpufreq/affected_cpus") == "4 6 7"
    assert not s.exists("sys/devices/system/cpu/cpu5/cpufreq"), "3.10 drops the link of an offline cpu"
    assert "cpu5 " not in s.read("proc/stat")
    with pytest.raises(SysfsRejected):
        s.write("sys/devices/system/cpu/cpu5/online", 2)
    with pytest.raises(SysfsMissing):
        s.write("sys/devices/system/cpu/cpu0/online", 0)
    s.write("sys/devices/system/cpu/cpu5/online", 1)
    assert xu3.snapshot_bytes() == before


def test_ina231_enable_starts_conversions(xu3):
    s, sensor = xu3.sysfs, "sys/bus/i2c/drivers/INA231/3-0040"
    s.write(f"{sensor}/enable", 1)
    watts = s.read(f"{sensor}/sensor_W")
    assert watts != "0.000000" and len(watts.split(".")[1]) == 6 and float(watts) > 0
    s.write(f"{sensor}/enable", 0)
    assert s.read(f"{sensor}/sensor_W") == "0.000000"


def test_injected_faults(nano):
    s, rel = nano.sysfs, f"{NANO_CPU}/scaling_max_freq"
    nano.deny(rel)
    with pytest.raises(SysfsPermission):
        s.write(rel, 921600)
    assert s.read(rel) == "1479000", "deny blocks writes only"
    nano.deny(rel, reads=True)
    with pytest.raises(SysfsPermission):
        s.read(rel)
    nano.clear_faults()
    nano.fail_writes(rel, errno.EBUSY)
    with pytest.raises(SysfsRejected) as caught:
        s.write(rel, 921600)
    assert caught.value.errno == errno.EBUSY
    nano.clear_faults()
    nano.freeze(rel)
    s.write(rel, 921600)
    assert s.read(rel) == "1479000"
    assert nano.set_file(rel, "5") is False
    nano.clear_faults()
    nano.make_readonly(rel)
    with pytest.raises(SysfsPermission):
        s.write(rel, 921600)


def test_faults_apply_through_symlinks(nano):
    nano.freeze("sys/devices/system/cpu/cpu2/cpufreq/scaling_min_freq")
    nano.sysfs.write(f"{NANO_CPU}/scaling_min_freq", 921600)
    assert nano.sysfs.read_int(f"{NANO_CPU}/scaling_min_freq") == 102000


def test_vanish_removes_nodes_and_links_like_a_driver_unload(nano):
    device = "sys/bus/i2c/drivers/ina3221x/6-0040"
    removed = nano.vanish(device)
    assert removed == ["sys/devices/546c0000.i2c/i2c-6/6-0040"]
    assert not nano.sysfs.glob("sys/bus/i2c/devices/*") and not nano.sysfs.glob("sys/bus/iio/devices/*")
    with pytest.raises(SysfsMissing):
        nano.sysfs.read(f"{device}/iio:device0/in_power0_input")
    assert nano.set_file("sys/devices/546c0000.i2c/i2c-6/6-0040/iio:device0/in_power0_input", "9") is False
    nano.vanish("sys/class/thermal/thermal_zone*")
    assert not nano.sysfs.glob("sys/devices/virtual/thermal/*")
    nano.vanish(f"{NANO_CPU}/scaling_max_freq")
    with pytest.raises(SysfsMissing):
        nano.sysfs.write(f"{NANO_CPU}/scaling_max_freq", 921600)


def test_set_file_is_the_kernel_side(nano):
    load = "sys/devices/gpu.0/load"
    assert nano.set_file(load, "734") is True
    assert nano.sysfs.read_bytes(load) == b"734\n"
    with pytest.raises(SysfsPermission):
        nano.sysfs.write(load, 1)
    assert nano.set_file("sys/kernel/new_node", b"\x01\x02") is True
    assert nano.sysfs.read_bytes("sys/kernel/new_node") == b"\x01\x02"
    with pytest.raises(SysfsPermission):
        nano.sysfs.write("sys/kernel/new_node", 1)
