"""Issue 21 items 1, 4, 5, 6: the Jetson EMC override, GPU load path, rail-gating and EMC cap
against what the L4T kernel and jetson_clocks do (see docs/boards.md, "Sources for the Jetson EMC
and GPU paths"), on fake trees that now behave that way."""

from __future__ import annotations

import os

from governor.core.types import Setpoints
from governor.drivers.board import open_board
from governor.drivers.catalogue import load_board
from governor.drivers.devfreq import Devfreq
from governor.drivers.emc import EMC_ISO_CAP, BpmpEmc, T210Emc
from governor.drivers.load import GpuLoad
from governor.testing import make_fake_tree

OVERRIDE = "sys/kernel/debug/clk/override.emc"
EMC_RATE = "sys/kernel/debug/clk/emc/clk_rate"


def _clock() -> float:
    return 1.0


def _nano_emc(tmp_path):
    spec = load_board("jetson-nano")
    tree = make_fake_tree(spec, tmp_path / "nano")
    return tree, T210Emc(tree.sysfs, spec.domain("emc"))


# -- item 1: T210 clk_update_rate reads the state; clk_state is a counted enable ----------------
def test_t210_pins_twice_then_restore_releases_the_override_and_leaves_the_tree_as_found(tmp_path):
    tree, emc = _nano_emc(tmp_path)
    before = tree.snapshot_bytes()
    baseline = emc.snapshot()
    emc.pin(800_000_000)
    emc.pin(1_600_000_000)
    assert tree.sysfs.read_int(EMC_RATE) == 1_600_000_000
    emc.restore(baseline)
    assert tree.sysfs.read(f"{OVERRIDE}/clk_state") == "0"  # one enable, one disable: the override is off
    assert tree.snapshot_bytes() == before


def test_t210_restore_puts_back_an_override_someone_else_held(tmp_path):
    tree, emc = _nano_emc(tmp_path)
    tree.sysfs.write(f"{OVERRIDE}/clk_update_rate", 1_600_000_000)  # jetson_clocks before we start
    tree.sysfs.write(f"{OVERRIDE}/clk_state", 1)
    baseline = emc.snapshot()
    assert "clk_update_rate" not in str(baseline.files)  # it reads 1 (the state), never a rate
    emc.pin(408_000_000)
    assert tree.sysfs.read_int(EMC_RATE) == 408_000_000
    emc.restore(baseline)
    assert tree.sysfs.read_int(EMC_RATE) == 1_600_000_000  # not 1 Hz, i.e. the bottom of the table
    tree.sysfs.write(f"{OVERRIDE}/clk_state", 0)  # the other holder's single release still releases
    assert tree.sysfs.read_int(EMC_RATE) == 204_000_000


def test_t210_full_range_releases_after_any_number_of_pins(tmp_path):
    tree, emc = _nano_emc(tmp_path)
    for hz in (408_000_000, 800_000_000, 1_331_200_000):
        emc.pin(hz)
    reading = emc.set_range(204_000_000, 1_600_000_000)
    assert reading.governor == "" and tree.sysfs.read_int(EMC_RATE) == 204_000_000


# -- item 6: nvpmodel's emc_iso_cap is the real top ---------------------------------------------
def test_bpmp_pins_at_the_nvpmodel_cap_not_the_catalogue_top(tmp_path):
    spec = load_board("jetson-xavier-nx")
    tree = make_fake_tree(spec, tmp_path / "nx")
    tree.set_file(EMC_ISO_CAP, "1600000000")
    emc = BpmpEmc(tree.sysfs, spec.domain("emc"))
    emc.set_range(204_000_000, 1_600_000_000)
    assert emc.read().max_hz == 1_600_000_000
    assert emc.pin(1_866_000_000).cur_hz == 1_600_000_000
    tree.set_file(EMC_ISO_CAP, "0")  # 0: no cap
    assert emc.pin(1_866_000_000).cur_hz == 1_866_000_000


# -- item 4: the GPU load file is probed at every candidate, and where it was found is kept ---------
def test_gpu_load_is_found_past_a_wrong_catalogue_path_and_says_where(tmp_path):
    tree = make_fake_tree(load_board("jetson-xavier-nx"), tmp_path / "nx")
    load = GpuLoad(tree.sysfs, "gpu", "sys/devices/17000000.gv11b/nowhere/load")
    probe = load.probe()
    assert probe.result.value == "success", probe.detail
    assert load.found_at == "sys/devices/gpu.0/load" and load.tried[0].endswith("nowhere/load")
    assert "platform/17000000.gv11b/load" in probe.detail and "not at" in probe.detail
    tree.set_file("sys/devices/platform/17000000.gv11b/load", "500")
    assert load.read_util() == {"gpu": 0.5}


def test_gpu_load_falls_back_to_the_platform_device_when_no_gpu0_link_exists(tmp_path):
    tree = make_fake_tree(load_board("jetson-xavier-nx"), tmp_path / "nx")
    for link in ("sys/devices/gpu.0", "sys/devices/platform/gpu.0"):
        os.unlink(tree.path(link))
    load = GpuLoad(tree.sysfs, "gpu", "sys/devices/gpu.0/load")
    assert load.probe().result.value == "success"
    assert load.found_at == "sys/devices/platform/17000000.gv11b/load"
    assert load.tried[:2] == ("sys/devices/gpu.0/load", "sys/devices/platform/gpu.0/load")


# -- item 5: rail-gating disabled like jetson_clocks, saved and restored ------------------------
def test_a_rail_gated_gpu_is_held_up_only_after_the_baseline_and_rail_gating_comes_back_on_restore(tmp_path):
    spec = load_board("jetson-nano")
    tree = make_fake_tree(spec, tmp_path / "nano", variant="railgated")
    railgate = "sys/devices/57000000.gpu/railgate_enable"
    found = tree.snapshot_bytes()
    board = open_board(spec, tree.sysfs, clock=_clock)
    assert tree.snapshot_bytes() == found  # probing writes nothing: `governor status` probes too
    assert "gpu" not in board.domains and "rail-gated" in board.unavailable["gpu"]
    assert "railgate_enable = 0" in board.probes["gpu"].detail  # says what serve will do
    baselines = board.snapshot()
    assert dict(next(b for b in baselines if b.owner == "railgate:gpu").files) == {railgate: "1\n"}
    notes = board.hold_power()
    assert "gpu" in board.domains and "gpu" not in board.unavailable, board.unavailable
    assert any("rail-gating disabled" in n and "joined" in n for n in notes), notes
    assert tree.sysfs.read(railgate) == "0"
    baselines = board.snapshot()  # taken again for the domain that joined: railgate_enable as found
    owners = {b.owner: dict(b.files) for b in baselines}
    assert owners["railgate:gpu"] == {railgate: "1\n"}
    assert any(rel.endswith("/max_freq") for rel in owners["devfreq:gpu"])
    assert board.apply(Setpoints({"gpu": 921_600_000}))["gpu"].max_hz == 921_600_000
    board.restore(baselines)
    now = tree.snapshot_bytes()
    # Every file we wrote is as found. The devfreq node stays (nvgpu registers it at the first power-up
    # and keeps it), and is_railgated is the kernel's own state, which the GPU's next idle sets again.
    assert [rel for rel in found if now.get(rel) != found[rel]] == ["sys/devices/57000000.gpu/is_railgated"]
    assert now[railgate] == b"1\n"


def test_rail_gating_left_off_by_a_crashed_daemon_is_saved_as_restored_not_as_probed(tmp_path):
    # A daemon killed with rail-gating off leaves railgate_enable = 0 and a state file saying 1. The next
    # daemon probes first, then puts the leftover back, then saves its own baseline: that baseline must say
    # 1 (what the restore wrote), not the 0 its probe saw, or its own exit turns rail-gating off for good.
    spec = load_board("jetson-tx2")
    tree = make_fake_tree(spec, tmp_path / "tx2")
    railgate = "sys/devices/17000000.gp10b/railgate_enable"
    first = open_board(spec, tree.sysfs, clock=_clock)
    left = first.snapshot()
    first.hold_power()
    assert tree.sysfs.read(railgate) == "0"  # ... and then the first daemon dies
    second = open_board(spec, tree.sysfs, clock=_clock)
    open_board(spec, tree.sysfs, clock=_clock).restore(left)  # restore_leftover's own board
    assert tree.sysfs.read(railgate) == "1"
    saved = dict(next(b for b in second.snapshot() if b.owner == "railgate:gpu").files)
    assert saved[railgate] == "1\n"


def test_pinning_a_powered_gpu_disables_rail_gating_first(tmp_path):
    spec = load_board("jetson-tx2")
    tree = make_fake_tree(spec, tmp_path / "tx2")
    gpu = Devfreq(tree.sysfs, spec.domain("gpu"))
    assert gpu.probe().result.value == "success" and gpu.gate is not None
    baseline, gate = gpu.snapshot(), gpu.gate.snapshot()
    gpu.pin(1_300_500_000)
    assert tree.sysfs.read("sys/devices/17000000.gp10b/railgate_enable") == "0"
    assert gpu.gate.snapshot() == gate  # taken after the write, it still says what was found
    gpu.restore(baseline)
    gpu.gate.restore(gate)
    assert tree.sysfs.read("sys/devices/17000000.gp10b/railgate_enable") == "1"
