"""The Odroid vendor Mali driver on a hand-built tree: MHz locks, -1 = unlocked, order, restore."""

from __future__ import annotations

from drivers_handmade import OldKernelRoot, build

from governor.core.board import Domain
from governor.drivers.base import ProbeResult
from governor.drivers.mali import MaliVendor

MALI = "sys/devices/11800000.mali"
SPEC = Domain(name="gpu", kind="gpu", driver="mali-vendor", unit="MHz", paths=(MALI,),
              table=(177, 266, 350, 420, 480, 543, 600))


def _root(tmp_path, lo="-1", hi="-1") -> OldKernelRoot:
    build(tmp_path, {f"{MALI}/clock": "350", f"{MALI}/dvfs_min_lock": lo, f"{MALI}/dvfs_max_lock": hi,
                     f"{MALI}/dvfs": "1"})
    return OldKernelRoot(tmp_path, {})


def test_unlocked_reads_as_the_full_table_in_hz(tmp_path):
    gpu = MaliVendor(_root(tmp_path), SPEC)
    assert gpu.probe().result is ProbeResult.SUCCESS
    reading = gpu.read()
    assert (reading.cur_hz, reading.min_hz, reading.max_hz) == (350_000_000, 177_000_000, 600_000_000)


def test_pin_snaps_to_mhz_table_and_orders_the_locks(tmp_path):
    root = _root(tmp_path, lo="177", hi="266")
    gpu = MaliVendor(root, SPEC)
    gpu.pin(545_000_000)
    assert root.writes == [(f"{MALI}/dvfs_max_lock", "543"), (f"{MALI}/dvfs_min_lock", "543")]
    root.writes.clear()
    gpu.pin(177_000_000)
    assert [rel.rsplit("/", 1)[1] for rel, _ in root.writes] == ["dvfs_min_lock", "dvfs_max_lock"]


def test_restore_unlocks_with_zero_and_puts_back_a_single_lock(tmp_path):
    root = _root(tmp_path, lo="-1", hi="480")
    gpu = MaliVendor(root, SPEC)
    baseline = gpu.snapshot()
    gpu.pin(266_000_000)
    gpu.restore(baseline)
    assert root.read(f"{MALI}/dvfs_min_lock") == "0" and root.read(f"{MALI}/dvfs_max_lock") == "480"
    assert (gpu.read().min_hz, gpu.read().max_hz) == (177_000_000, 480_000_000)
