"""Power monitors on hand-built trees: each driver's files and units, NC channels, intervals, totals."""

from __future__ import annotations

import pytest
from drivers_handmade import build

from governor.core.board import PowerDevice, Rail
from governor.drivers._sysfs import SysfsRoot
from governor.drivers.base import ProbeResult
from governor.drivers.power import Ina2xxHwmon, Ina231, Ina3221Hwmon, Ina3221Iio, Rapl, total_power_mw


def _device(driver: str, path: str, *rails: str, interval_ms: float = 1.0) -> PowerDevice:
    """Rails named ``NC...`` are unconnected channels (label NC, unique placeholder name)."""
    channels = tuple(Rail(name=r, label="NC" if r.startswith("NC") else "") for r in rails)
    return PowerDevice(driver=driver, path=path, channels=channels, update_interval_ms=interval_ms)


def test_ina3221_iio_reads_mw_under_the_catalogue_rail_names(tmp_path):
    real = "sys/devices/3160000.i2c/i2c-0/0-0041/iio:device1"
    build(tmp_path, {f"{real}/rail_name_0": "VDD_IN", f"{real}/in_power0_input": "4321",
                     f"{real}/rail_name_1": "VDD_SYS_CPU", f"{real}/in_power1_input": "987",
                     f"{real}/rail_name_2": "VDD_SYS_DDR", f"{real}/in_power2_input": "555"},
          {"sys/bus/i2c/drivers/ina3221x/0-0041": "sys/devices/3160000.i2c/i2c-0/0-0041"})
    sensor = Ina3221Iio(SysfsRoot(tmp_path), _device("ina3221-iio", "sys/bus/i2c/drivers/ina3221x/0-0041",
                                                    "VDD_IN", "VDD_SYS_CPU", "VDD_SYS_DDR"))
    assert sensor.probe().result is ProbeResult.SUCCESS
    assert sensor.read_mw() == {"VDD_IN": 4321.0, "VDD_SYS_CPU": 987.0, "VDD_SYS_DDR": 555.0}
    assert sensor.name == "ina3221-iio:0-0041"


def test_ina3221_hwmon_multiplies_mv_by_ma_and_skips_nc(tmp_path):
    hw = "sys/bus/i2c/drivers/ina3221/1-0041/hwmon/hwmon7"
    build(tmp_path, {f"{hw}/in1_label": "NC", f"{hw}/in1_input": "0", f"{hw}/curr1_input": "0",
                     f"{hw}/in2_label": "VDDQ_VDD2_1V8AO", f"{hw}/in2_input": "5000", f"{hw}/curr2_input": "250",
                     f"{hw}/in3_label": "NC", f"{hw}/in3_input": "0", f"{hw}/curr3_input": "0",
                     f"{hw}/in7_input": "99999", f"{hw}/curr4_input": "99999", f"{hw}/update_interval": "8"})
    sensor = Ina3221Hwmon(SysfsRoot(tmp_path), _device("ina3221-hwmon", "sys/bus/i2c/drivers/ina3221/1-0041",
                                                      "NC1", "VDDQ_VDD2_1V8AO", "NC3"))
    assert sensor.probe().result is ProbeResult.SUCCESS
    assert sensor.read_mw() == {"VDDQ_VDD2_1V8AO": 1250.0}
    assert sensor.update_interval_s == pytest.approx(0.008)


def test_ina231_enables_the_chip_parses_watts_and_restores_enable(tmp_path):
    dev = "sys/bus/i2c/drivers/INA231/3-0040"
    build(tmp_path, {f"{dev}/sensor_W": "1.234567", f"{dev}/enable": "0", f"{dev}/update_period": "263808 usec"})
    root = SysfsRoot(tmp_path)
    sensor = Ina231(root, _device("ina231", "sys/bus/i2c/drivers/INA231/*-0040", "VDD_ARM"))
    assert sensor.probe().result is ProbeResult.SUCCESS
    assert root.read(f"{dev}/enable") == "1"
    assert sensor.read_mw() == {"VDD_ARM": pytest.approx(1234.567)}
    assert sensor.update_interval_s == pytest.approx(0.263808)
    sensor.restore(sensor.snapshot())
    assert root.read(f"{dev}/enable") == "0"


def test_ina2xx_hwmon_converts_microwatts(tmp_path):
    hw = "sys/bus/i2c/devices/0-0044/hwmon/hwmon2"
    build(tmp_path, {f"{hw}/power1_input": "1500000", f"{hw}/update_interval": "35"})
    sensor = Ina2xxHwmon(SysfsRoot(tmp_path), _device("ina2xx-hwmon", "sys/bus/i2c/devices/*-0044", "VDD_G3D"))
    assert sensor.probe().result is ProbeResult.SUCCESS
    assert sensor.read_mw() == {"VDD_G3D": 1500.0}
    assert sensor.update_interval_s == pytest.approx(0.035)


def test_rapl_power_from_energy_deltas_across_a_wraparound(tmp_path):
    zone = "sys/class/powercap/intel-rapl:0"
    build(tmp_path, {f"{zone}/name": "package-0", f"{zone}/energy_uj": "999000000",
                     f"{zone}/max_energy_range_uj": "1000000000",
                     f"{zone}/intel-rapl:0:0/name": "core", f"{zone}/intel-rapl:0:0/energy_uj": "0"})
    now = [10.0]
    sensor = Rapl(SysfsRoot(tmp_path), _device("rapl", zone, "core", "package-0"), clock=lambda: now[0])
    assert sensor.probe().result is ProbeResult.SUCCESS
    now[0] = 12.0
    build(tmp_path, {f"{zone}/energy_uj": "1000000", f"{zone}/intel-rapl:0:0/energy_uj": "3000000"})
    # package: (1e9 - 999e6 + 1e6) uJ over 2 s = 1 W; core: 3e6 uJ over 2 s = 1.5 W
    assert sensor.read_mw() == {"package-0": pytest.approx(1000.0), "core": pytest.approx(1500.0)}
    assert sensor.read_mw() == {"package-0": pytest.approx(1000.0), "core": pytest.approx(1500.0)}


def test_a_vanished_rail_is_reported_and_the_others_kept(tmp_path):
    hw = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
    build(tmp_path, {f"{hw}/in{n}_label": name for n, name in ((1, "VDD_IN"), (2, "VDD_CPU_GPU_CV"))}
          | {f"{hw}/in{n}_input": "5000" for n in (1, 2)} | {f"{hw}/curr{n}_input": "100" for n in (1, 2)})
    sensor = Ina3221Hwmon(SysfsRoot(tmp_path), _device("ina3221-hwmon", "sys/bus/i2c/drivers/ina3221/1-0040",
                                                      "VDD_IN", "VDD_CPU_GPU_CV"))
    sensor.probe()
    (tmp_path / hw / "curr2_input").unlink()
    part = sensor.read_partial()
    assert dict(part.values) == {"VDD_IN": 500.0}
    assert "curr2_input does not exist" in part.errors["VDD_CPU_GPU_CV"]


def test_missing_device_fails_probe(tmp_path):
    device = _device("ina3221-hwmon", "sys/bus/i2c/drivers/ina3221/1-0040", "A")
    probe = Ina3221Hwmon(SysfsRoot(tmp_path), device).probe()
    assert probe.result is ProbeResult.FAIL and "1-0040" in probe.detail


@pytest.mark.parametrize(
    ("rails", "total", "expected"),
    [
        ({"VDD_IN": 5000.0, "VDD_SYS_CPU": 900.0}, ("VDD_IN",), 5000.0),
        ({"GPU": 1.0, "CPU": 2.0, "SOC": 3.0, "SYS5V": 4.0}, ("GPU", "CPU", "SOC"), 6.0),
        ({"POM_5V_IN": 3000.0, "POM_5V_GPU": 800.0}, (), 3000.0),
        ({"VDD_ARM": 1.5, "VDD_KFC": 0.5}, (), 2.0),
        ({"VDD_SYS_CPU": 900.0}, ("VDD_IN",), None),
        ({}, (), None),
    ],
)
def test_total_power_never_double_counts(rails, total, expected):
    assert total_power_mw(rails, total) == expected


def test_a_channel_the_kernel_labels_nc_is_skipped_even_if_the_catalogue_names_it(tmp_path):
    real = "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
    build(tmp_path, {f"{real}/rail_name_0": "POM_5V_IN", f"{real}/in_power0_input": "3000",
                     f"{real}/rail_name_1": "NC", f"{real}/in_power1_input": "0"})
    sensor = Ina3221Iio(SysfsRoot(tmp_path), _device("ina3221-iio", "sys/bus/i2c/drivers/ina3221x/6-0040",
                                                    "POM_5V_IN", "POM_5V_GPU"))
    sensor.probe()
    assert sensor.read_mw() == {"POM_5V_IN": 3000.0}
