"""CPU hotplug on a hand-built tree: up before down, read-back, discovery, restore."""

from __future__ import annotations

import pytest
from drivers_handmade import OldKernelRoot, build

from governor.drivers.base import ProbeResult
from governor.drivers.hotplug import CpuHotplug

CPU = "sys/devices/system/cpu"


def _root(tmp_path, online=(1, 2, 3)) -> OldKernelRoot:
    build(tmp_path, {f"{CPU}/cpu{k}/online": "1" if k in online else "0" for k in (1, 2, 3, 4)})
    build(tmp_path, {f"{CPU}/cpu0/cpufreq/.keep": ""})
    return OldKernelRoot(tmp_path, {})


def test_brings_cpus_up_before_taking_others_down(tmp_path):
    root = _root(tmp_path, online=(1, 2))
    hotplug = CpuHotplug(root, (1, 2, 3, 4))
    assert hotplug.probe().result is ProbeResult.SUCCESS
    assert hotplug.set_online({3, 4}) == {3, 4}
    assert root.writes == [(f"{CPU}/cpu3/online", "1"), (f"{CPU}/cpu4/online", "1"),
                           (f"{CPU}/cpu2/online", "0"), (f"{CPU}/cpu1/online", "0")]


def test_discovers_switchable_cpus_and_rejects_others(tmp_path):
    hotplug = CpuHotplug(_root(tmp_path))
    assert hotplug.cpus == (1, 2, 3, 4)
    with pytest.raises(ValueError, match="cannot be switched"):
        hotplug.set_online({0, 1})


def test_restore_brings_back_the_saved_mask(tmp_path):
    root = _root(tmp_path, online=(1, 3))
    hotplug = CpuHotplug(root, (1, 2, 3, 4))
    baseline = hotplug.snapshot()
    hotplug.set_online({2, 4})
    hotplug.restore(baseline)
    assert hotplug.online() == {1, 3}


def test_cpu_without_online_file_fails_probe(tmp_path):
    probe = CpuHotplug(_root(tmp_path), (0, 1)).probe()
    assert probe.result is ProbeResult.FAIL and "[0]" in probe.detail
