"""Thermal zones and load on hand-built trees: units, disabled zones, duplicates, proc/stat deltas."""

from __future__ import annotations

import pytest
from drivers_handmade import build

from governor.core.board import ComputeUnit
from governor.drivers._sysfs import SysfsRoot
from governor.drivers.base import ProbeResult
from governor.drivers.load import CpuLoad, GpuLoad, parse_proc_stat
from governor.drivers.thermal import ThermalZones

VIRTUAL = "sys/devices/virtual/thermal"


def _zones(tmp_path, zones):
    for n, (kind, milli) in enumerate(zones):
        build(tmp_path, {f"{VIRTUAL}/thermal_zone{n}/type": kind, f"{VIRTUAL}/thermal_zone{n}/temp": str(milli)},
              {f"sys/class/thermal/thermal_zone{n}": f"{VIRTUAL}/thermal_zone{n}"})


def test_zones_by_type_in_celsius_without_disabled_ones(tmp_path):
    _zones(tmp_path, [("GPU-therm", 41500), ("CV0-therm", -256000), ("acpitz", 30000), ("acpitz", 31000)])
    thermal = ThermalZones(SysfsRoot(tmp_path))
    assert thermal.probe().result is ProbeResult.SUCCESS
    assert thermal.read_c() == {"GPU-therm": 41.5, "acpitz": 30.0, "acpitz@thermal_zone3": 31.0}


def test_a_vanished_zone_is_reported_and_the_others_kept(tmp_path):
    _zones(tmp_path, [("GPU-therm", 41500), ("CPU-therm", 45000)])
    thermal = ThermalZones(SysfsRoot(tmp_path))
    thermal.probe()
    (tmp_path / VIRTUAL / "thermal_zone1" / "temp").unlink()
    part = thermal.read_partial()
    assert dict(part.values) == {"GPU-therm": 41.5} and "CPU-therm" in part.errors


def test_no_zones_fails_probe(tmp_path):
    assert ThermalZones(SysfsRoot(tmp_path)).probe().result is ProbeResult.FAIL


def _stat(rows: dict[str, tuple[int, int]]) -> str:
    """rows: cpuN -> (busy jiffies in user, idle jiffies)."""
    lines = [f"{name} {busy} 0 0 {idle} 0 0 0 0 0 0" for name, (busy, idle) in rows.items()]
    return "\n".join(lines) + "\nintr 12345\nctxt 999\n"


def test_cluster_load_is_busy_delta_over_total_delta(tmp_path):
    units = [ComputeUnit(name="big", kind="cpu", core="A15", cpus=(4, 5)),
             ComputeUnit(name="little", kind="cpu", core="A7", cpus=(0, 1)),
             ComputeUnit(name="all", kind="cpu", core="any")]
    build(tmp_path, {"proc/stat": _stat({"cpu": (0, 0), "cpu0": (0, 0), "cpu4": (0, 0), "cpu5": (0, 0)})})
    load = CpuLoad(SysfsRoot(tmp_path), units)
    assert load.probe().result is ProbeResult.SUCCESS
    build(tmp_path, {"proc/stat": _stat({"cpu": (90, 110), "cpu0": (10, 90), "cpu4": (80, 20), "cpu5": (0, 0)})})
    part = load.read_partial()
    assert part.values["big"] == pytest.approx(0.8)
    assert part.values["little"] == pytest.approx(0.1)
    assert part.values["all"] == pytest.approx(0.45)
    build(tmp_path, {"proc/stat": _stat({"cpu": (90, 110), "cpu0": (10, 90)})})
    part = load.read_partial()
    assert "offline" in part.errors["big"] and part.values["little"] == 0.0


def test_proc_stat_counts_iowait_as_idle():
    jiffies = parse_proc_stat("cpu0 10 0 5 80 5 0 0 0 3 0\n")
    assert jiffies["cpu0"] == (15, 100)


def test_gpu_load_is_per_mille(tmp_path):
    build(tmp_path, {"sys/devices/gpu.0/load": "735"})
    gpu = GpuLoad(SysfsRoot(tmp_path), "gpu", "sys/devices/gpu.0/load")
    assert gpu.probe().result is ProbeResult.SUCCESS
    assert gpu.read_util() == {"gpu": pytest.approx(0.735)}
