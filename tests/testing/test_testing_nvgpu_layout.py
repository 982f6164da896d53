"""Issue 21 items 1 and 7: the fake trees' T210 EMC override and nvgpu device layout, per JetPack."""

from __future__ import annotations

import stat

import pytest

from governor.drivers.catalogue import load_board
from governor.testing import make_fake_tree

OVERRIDE = "sys/kernel/debug/clk/override.emc"

# board -> (the nvgpu device, the links nvgpu_create_sysfs makes to it)
LAYOUTS = {
    "jetson-nano": ("sys/devices/57000000.gpu", ["sys/devices/gpu.0"]),  # JetPack 4, kernel 4.9
    "jetson-tx2": ("sys/devices/17000000.gp10b", ["sys/devices/gpu.0"]),  # JetPack 4, kernel 4.9
    "jetson-xavier-nx": (  # JetPack 5, kernel 5.10: the parent is devices/platform, links one level up too
        "sys/devices/platform/17000000.gv11b",
        ["sys/devices/platform/gpu.0", "sys/devices/gpu.0", "sys/devices/17000000.gv11b"],
    ),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_the_gpu_device_holds_devfreq_load_and_railgate_and_gpu0_links_to_it(name, fake_dir):
    spec = load_board(name)
    tree = make_fake_tree(spec, fake_dir / name)
    device, links = LAYOUTS[name]
    assert tree.path(device).is_dir() and not tree.path(device).is_symlink()
    for leaf in ("load", "railgate_enable", "enable_3d_scaling", f"devfreq/{device.rsplit('/', 1)[1]}/cur_freq"):
        assert tree.sysfs.exists(f"{device}/{leaf}"), leaf
    for link in links:
        assert tree.path(link).is_symlink() and tree.sysfs.realpath(link) == device, link
    entry = tree.sysfs.glob("sys/class/devfreq/*")[0]
    assert tree.sysfs.realpath(f"{entry}/device") == device  # jetson-stats finds the device this way
    assert tree.sysfs.realpath(spec.domain("gpu").load_path) == f"{device}/load"


def test_t210_clk_update_rate_is_write_only_and_reads_the_state(fake_dir):
    tree = make_fake_tree(load_board("jetson-nano"), fake_dir / "nano")
    s = tree.sysfs
    assert stat.S_IMODE(tree.path(f"{OVERRIDE}/clk_update_rate").stat().st_mode) == 0o200
    s.write(f"{OVERRIDE}/clk_update_rate", 1_600_000_000)
    assert s.read(f"{OVERRIDE}/clk_update_rate") == "0"  # not the rate: the override is still off
    s.write(f"{OVERRIDE}/clk_state", 1)
    assert s.read(f"{OVERRIDE}/clk_update_rate") == "1" and s.read_int(f"{OVERRIDE}/clk_rate") == 1_600_000_000


def test_t210_clk_state_counts_enables(fake_dir):
    tree = make_fake_tree(load_board("jetson-nano"), fake_dir / "nano")
    s = tree.sysfs
    s.write(f"{OVERRIDE}/clk_update_rate", 800_000_000)
    s.write(f"{OVERRIDE}/clk_state", 1)
    s.write(f"{OVERRIDE}/clk_state", 1, skip_same=False)  # what writing 1 on every pin did
    s.write(f"{OVERRIDE}/clk_state", 0)
    assert s.read(f"{OVERRIDE}/clk_state") == "1"  # two enables, one disable: still overridden
    assert s.read_int("sys/kernel/debug/clk/emc/clk_rate") == 800_000_000
    s.write(f"{OVERRIDE}/clk_state", 0)
    s.write(f"{OVERRIDE}/clk_state", 0, skip_same=False)  # disabling a disabled clock changes nothing
    assert s.read(f"{OVERRIDE}/clk_state") == "0"
    assert s.read_int("sys/kernel/debug/clk/emc/clk_rate") == 204_000_000
