"""Jetson EMC overrides on hand-built debugfs trees: lock order, read-back, release, restore."""

from __future__ import annotations

from drivers_handmade import OldKernelRoot, build

from governor.core.board import Domain
from governor.drivers._sysfs import SysfsRoot
from governor.drivers.base import ProbeResult
from governor.drivers.emc import BpmpEmc, T210Emc

BPMP = "sys/kernel/debug/bpmp/debug/clk/emc"
T210 = "sys/kernel/debug/clk/override.emc"
TABLE = (204000000, 800000000, 1600000000)


def _spec(driver: str, path: str) -> Domain:
    return Domain(name="emc", kind="emc", driver=driver, unit="Hz", paths=(path,), table=TABLE)


def _bpmp(tmp_path) -> OldKernelRoot:
    build(tmp_path, {f"{BPMP}/rate": "1600000000", f"{BPMP}/min_rate": "204000000", f"{BPMP}/max_rate": "1600000000",
                     f"{BPMP}/mrq_rate_locked": "0", f"{BPMP}/state": "1"})
    return OldKernelRoot(tmp_path, {})


def test_bpmp_locks_before_writing_the_rate(tmp_path):
    root = _bpmp(tmp_path)
    emc = BpmpEmc(root, _spec("tegra-emc-bpmp", BPMP))
    assert emc.probe().result is ProbeResult.SUCCESS
    reading = emc.pin(790_000_000)
    assert root.writes == [(f"{BPMP}/mrq_rate_locked", "1"), (f"{BPMP}/rate", "800000000")]
    assert (reading.cur_hz, reading.min_hz, reading.max_hz, reading.governor) == (800e6, 800e6, 800e6, "locked")


def test_bpmp_full_range_releases_and_partial_range_holds_the_top(tmp_path):
    root = _bpmp(tmp_path)
    emc = BpmpEmc(root, _spec("tegra-emc-bpmp", BPMP))
    emc.set_range(204_000_000, 800_000_000)
    assert root.read(f"{BPMP}/rate") == "800000000" and root.read(f"{BPMP}/mrq_rate_locked") == "1"
    reading = emc.set_range(204_000_000, 1_600_000_000)
    assert root.read(f"{BPMP}/mrq_rate_locked") == "0"
    assert (reading.min_hz, reading.max_hz) == (204_000_000, 1_600_000_000)


def test_bpmp_restore_leaves_both_files_as_they_were(tmp_path):
    root = _bpmp(tmp_path)
    before = {leaf: (tmp_path / BPMP / leaf).read_bytes() for leaf in ("rate", "mrq_rate_locked")}
    emc = BpmpEmc(root, _spec("tegra-emc-bpmp", BPMP))
    baseline = emc.snapshot()
    emc.pin(204_000_000)
    emc.restore(baseline)
    assert {leaf: (tmp_path / BPMP / leaf).read_bytes() for leaf in before} == before


def test_t210_writes_the_rate_then_switches_the_override_on(tmp_path):
    build(tmp_path, {f"{T210}/clk_rate": "1600000000", f"{T210}/clk_update_rate": "0", f"{T210}/clk_state": "0",
                     "sys/kernel/debug/tegra_bwmgr/emc_min_rate": "204000000",
                     "sys/kernel/debug/tegra_bwmgr/emc_max_rate": "1600000000"})
    root = OldKernelRoot(tmp_path, {})
    emc = T210Emc(root, _spec("tegra-emc-t210", T210))
    baseline = emc.snapshot()
    emc.pin(800_000_000)
    assert root.writes == [(f"{T210}/clk_update_rate", "800000000"), (f"{T210}/clk_state", "1")]
    assert emc.read().governor == "locked"
    emc.restore(baseline)
    assert root.writes[2:] == [(f"{T210}/clk_state", "0")]  # no rate write: clk_update_rate reads a state
    assert (emc.read().min_hz, emc.read().max_hz) == (204_000_000, 1_600_000_000)


def test_missing_debugfs_fails_with_the_mount_hint(tmp_path):
    probe = BpmpEmc(SysfsRoot(tmp_path), _spec("tegra-emc-bpmp", BPMP)).probe()
    assert probe.result is ProbeResult.FAIL and "mount -t debugfs" in probe.detail
