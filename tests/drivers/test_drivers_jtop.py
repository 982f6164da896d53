"""The jtop backend against a fake ``jtop`` module (dict shapes of boards.md §6) and real UNIX sockets."""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
from typing import ClassVar

import pytest

from governor.drivers.base import FreqDomain, LoadSensor, PowerSensor, ProbeResult, ThermalSensor
from governor.drivers.jtop import JtopSensors, JtopUnavailable, freqs_hz, jtop_available, util_fractions
from governor.drivers.tegrastats import SensorMapping

TX2 = SensorMapping(total_rails=("VDD_IN",), clusters={"a57": (0, 3, 4, 5), "denver": (1, 2)})


def _core(online, idle=None, cur_khz=None):
    if not online:  # offline cores are absent from /proc/stat: no user/idle keys (jtop core/cpu.py)
        return {"online": False, "governor": "schedutil", "freq": {"min": 345600, "max": 2035200, "cur": 345600}}
    return {
        "online": True, "governor": "schedutil", "model": "ARMv8 Processor rev 3 (v8l)",
        "freq": {"min": 345600, "max": 2035200, "cur": cur_khz},
        "info_freq": {"min": 345600, "max": 2035200, "cur": cur_khz},
        "idle_state": {"WFI": 0, "c7": 0}, "user": 100.0 - idle - 5.0, "nice": 0.0, "system": 5.0, "idle": idle,
    }


def _rail(mw, **extra):
    return {"type": "I2C", "status": "ok", "volt": 19000, "curr": mw * 1000 // 19000, "power": mw, "avg": mw,
            "warn": 32760, "crit": 32760, **extra}


# jetson-stats 4.x on a TX2: the input rail is moved out of 'rail' into 'tot' with its name (jtop core/power.py)
TX2_JTOP4 = {
    "power": {"rail": {"VDD_SYS_GPU": _rail(156), "VDD_SYS_SOC": _rail(470), "VDD_4V0_WIFI": _rail(0),
                       "VDD_SYS_CPU": _rail(706), "VDD_SYS_DDR": _rail(325)},
              "tot": {**_rail(2314), "name": "VDD_IN"}},
    "temperature": {"BCPU": {"online": True, "temp": 43.5}, "MCPU": {"online": True, "temp": 43.0},
                    "GPU": {"online": True, "temp": 42.0}, "PMIC": {"online": True, "temp": 50.0},
                    "thermal": {"online": True, "temp": 43.5}, "CV0": {"online": False, "temp": -256.0}},
    "gpu": {"gpu": {"type": "integrated",
                    "status": {"railgate": False, "tpc_pg_mask": False, "3d_scaling": True, "load": 13.0},
                    "freq": {"governor": "nvhost_podgov", "cur": 624750, "max": 1300500, "min": 114750,
                             "GPC": [624750]},
                    "power_control": "auto"}},
    "cpu": {"total": {"user": 40.0, "nice": 0.0, "system": 5.0, "idle": 55.0},
            "cpu": [_core(True, 10.0, 1420800), _core(True, 100.0, 345600), _core(False),
                    _core(True, 40.0, 1420800), _core(True, 70.0, 1420800), _core(True, 0.0, 1420800)]},
    "memory": {"RAM": {"tot": 8038396, "used": 1933312, "free": 6105084, "buffers": 0, "cached": 0, "lfb": 1027},
               "SWAP": {"tot": 4019196, "used": 0, "cached": 0},
               "EMC": {"cur": 800000, "max": 1866000, "min": 40800, "override": 0, "val": 1, "online": True}},
}

# jetson-stats 7.x on an AGX Orin: no input rail, so 'tot' is jtop's own unnamed sum; a rail can be offline
ORIN_JTOP7 = copy.deepcopy(TX2_JTOP4)
ORIN_JTOP7["power"] = {"rail": {"VDD_GPU_SOC": _rail(5139, online=True), "VDD_CPU_CV": _rail(3268, online=True),
                                "VIN_SYS_5V0": _rail(5500, online=True), "VDDQ_VDD2_1V8AO": _rail(900, online=False)},
                       "tot": {"power": 13907, "avg": 13907}}
ORIN_JTOP7["temperature"] = {"cpu": {"online": True, "temp": 52.9, "max": 105.0, "crit": 105.0},
                             "cv0": {"online": False, "temp": -256.0, "max": 105.0, "crit": 105.0},
                             "tj": {"online": True, "temp": 53.5, "max": 105.0, "crit": 105.0}}


class FakeJtopException(Exception):
    """Stands in for jtop.JtopException."""


class DictLike:
    """jtop's GenericInterface (e.g. ``.gpu``): keys/items/[] over the latest data, not a dict."""

    def __init__(self, data):
        self._data = data

    def keys(self):
        return self._data.keys()

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self):
        return len(self._data)


class FakeJtop:
    """The client class: ``jtop(interval=...)``, ``start()``, ``ok(spin)``, ``close()`` and five sections."""

    data: dict = TX2_JTOP4
    service_up = True
    instances: ClassVar[list[FakeJtop]] = []

    def __init__(self, interval=1.0):
        self.interval, self.closed, self.ok_error, self.read_error, self.stopped = interval, False, None, None, False
        FakeJtop.instances.append(self)

    def start(self):
        if not FakeJtop.service_up:
            raise FakeJtopException("The jtop.service is not active. Please run: sudo systemctl restart jtop.service")

    def ok(self, spin=False):
        if self.ok_error is not None:
            raise self.ok_error
        return not self.stopped

    def close(self):
        self.closed = True

    def _section(self, name):
        if self.read_error is not None:
            raise self.read_error
        return DictLike(self.data[name]) if name == "gpu" else self.data[name]

    power = property(lambda self: self._section("power"))
    temperature = property(lambda self: self._section("temperature"))
    gpu = property(lambda self: self._section("gpu"))
    cpu = property(lambda self: self._section("cpu"))
    memory = property(lambda self: self._section("memory"))


@pytest.fixture
def fake_jtop(monkeypatch):
    module = types.ModuleType("jtop")
    module.jtop = FakeJtop
    module.JtopException = FakeJtopException
    monkeypatch.setitem(sys.modules, "jtop", module)
    monkeypatch.setattr(FakeJtop, "data", TX2_JTOP4)
    monkeypatch.setattr(FakeJtop, "service_up", True)
    monkeypatch.setattr(FakeJtop, "instances", [])
    return FakeJtop


@pytest.fixture
def sock_dir():
    with tempfile.TemporaryDirectory(prefix="jt") as d:  # AF_UNIX paths must stay under ~100 bytes
        yield d


def _serve(path, greeting):
    """A UNIX socket server for one client: sends ``greeting`` (the jtop service's challenge) or stays silent."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def run():
        conn, _ = server.accept()
        if greeting:
            conn.sendall(greeting)
        time.sleep(0.5)
        conn.close()
        server.close()

    threading.Thread(target=run, daemon=True).start()


def test_importing_the_backend_does_not_import_jetson_stats():
    code = "import sys, governor.drivers.jtop, governor.drivers.tegrastats; assert 'jtop' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_jtop_available_needs_a_service_that_speaks(sock_dir):
    speaking, silent = os.path.join(sock_dir, "a.sock"), os.path.join(sock_dir, "b.sock")
    _serve(speaking, b"\x00\x00\x00\x1a#CHALLENGE#")
    _serve(silent, b"")
    assert jtop_available(1.0, speaking) is True
    started = time.monotonic()
    assert jtop_available(0.2, silent) is False
    assert time.monotonic() - started < 1.0
    assert jtop_available(0.2, os.path.join(sock_dir, "missing.sock")) is False
    plain = os.path.join(sock_dir, "file")
    open(plain, "w").close()
    assert jtop_available(0.2, plain) is False


def test_tx2_jtop4_readings_in_governor_units(fake_jtop):
    with JtopSensors(TX2) as sensors:
        assert sensors.available and fake_jtop.instances[-1].interval == 1.0
        assert sensors.read_mw() == {"VDD_SYS_GPU": 156.0, "VDD_SYS_SOC": 470.0, "VDD_4V0_WIFI": 0.0,
                                     "VDD_SYS_CPU": 706.0, "VDD_SYS_DDR": 325.0, "VDD_IN": 2314.0}
        assert sensors.total_mw() == 2314.0
        assert sensors.read_c() == {"BCPU": 43.5, "MCPU": 43.0, "GPU": 42.0, "thermal": 43.5}  # no PMIC, no -256
        util = sensors.read_util()
        assert util["a57"] == pytest.approx((90 + 60 + 30 + 100) / 400)
        assert util["denver"] == 0.0  # cpu1 idle 100 %, cpu2 offline
        assert util["gpu"] == pytest.approx(0.13) and util["emc"] == pytest.approx(0.01)
        assert sensors.read_freqs_hz() == {"a57": 1_420_800_000, "denver": 345_600_000, "gpu": 624_750_000,
                                           "emc": 800_000_000}
    assert fake_jtop.instances[-1].closed


def test_observe_packs_one_sweep(fake_jtop):
    sensors = JtopSensors(TX2, interval_s=2.0)
    assert sensors.start().result is ProbeResult.SUCCESS and fake_jtop.instances[-1].interval == 2.0
    obs = sensors.observe(t=7.5)
    assert obs.t == 7.5 and obs.unavailable == () and obs.simulated is False
    assert obs.total_power_mw == 2314.0 and obs.power_mw["VDD_SYS_CPU"] == 706.0
    assert dict(obs.temps_c) == {"BCPU": 43.5, "MCPU": 43.0, "GPU": 42.0, "thermal": 43.5}
    assert set(obs.util) == {"a57", "denver", "gpu", "emc"}


def test_orin_jtop7_unnamed_sum_is_not_taken_as_the_total(fake_jtop):
    fake_jtop.data = ORIN_JTOP7
    sensors = JtopSensors()
    sensors.start()
    assert sensors.read_mw() == {"VDD_GPU_SOC": 5139.0, "VDD_CPU_CV": 3268.0, "VIN_SYS_5V0": 5500.0}
    obs = sensors.observe(0.0)
    assert obs.total_power_mw is None and any("power_total" in p for p in obs.unavailable)
    assert dict(obs.temps_c) == {"cpu": 52.9, "tj": 53.5}
    assert set(obs.util) == {"cpu", "gpu", "emc"}  # no clusters given: one unit over all online cores
    module = JtopSensors(SensorMapping(total_rails=("VDD_GPU_SOC", "VDD_CPU_CV")))
    module.start()
    assert module.total_mw() == 5139.0 + 3268.0


def test_thor_gpu_without_load_is_reported_not_guessed(fake_jtop):
    thor = copy.deepcopy(TX2_JTOP4)
    del thor["gpu"]["gpu"]["status"]["load"]
    fake_jtop.data = thor
    sensors = JtopSensors(TX2)
    sensors.start()
    obs = sensors.observe(1.0)
    assert "gpu" not in obs.util and any("no GPU load" in p for p in obs.unavailable)
    assert sensors.read_freqs_hz()["gpu"] == 624_750_000


@pytest.mark.parametrize("failure", ["ok_raises", "ok_false", "read_raises"])
def test_service_going_away_mid_run_is_reported_not_raised(fake_jtop, failure):
    sensors = JtopSensors(TX2)
    sensors.start()
    assert sensors.observe(1.0).total_power_mw == 2314.0
    client = fake_jtop.instances[-1]
    if failure == "ok_raises":
        client.ok_error = FakeJtopException("Lost connection with jtop server")
    elif failure == "ok_false":
        client.stopped = True
    else:
        client.read_error = BrokenPipeError(32, "Broken pipe")
    obs = sensors.observe(2.0)
    assert obs.t == 2.0 and obs.total_power_mw is None and not obs.power_mw
    assert len(obs.unavailable) == 1 and "sudo systemctl restart jtop" in obs.unavailable[0]
    assert not sensors.available and client.closed
    with pytest.raises(JtopUnavailable, match="sudo systemctl restart jtop"):
        sensors.read_mw()
    assert "sudo systemctl restart jtop" in sensors.observe(3.0).unavailable[0]
    assert sensors.start().result is ProbeResult.SUCCESS  # the service is back: a new client reads again
    assert sensors.observe(4.0).total_power_mw == 2314.0


def test_service_down_at_start(fake_jtop):
    fake_jtop.service_up = False
    sensors = JtopSensors(TX2)
    probe = sensors.start()
    assert probe.result is ProbeResult.DEFER and "sudo systemctl restart jtop" in probe.detail
    assert "sudo systemctl restart jtop" in sensors.observe(0.0).unavailable[0]
    with pytest.raises(JtopUnavailable, match="restart jtop"):
        sensors.read_c()


def test_reading_before_start_says_to_start():
    with pytest.raises(JtopUnavailable, match=r"call start\(\) first"):
        JtopSensors().read_util()


def test_missing_jetson_stats_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "jtop", None)  # makes `import jtop` raise ImportError
    sensors = JtopSensors()
    for probe in (sensors.probe(), sensors.start()):
        assert probe.result is ProbeResult.FAIL and "dnn-governor[jetson]" in probe.detail
    assert "jetson" in sensors.observe(0.0).unavailable[0]


def test_probe_asks_the_socket(fake_jtop, sock_dir):
    path = os.path.join(sock_dir, "jtop.sock")
    assert JtopSensors(socket_path=path, probe_timeout_s=0.2).probe().result is ProbeResult.DEFER
    _serve(path, b"#CHALLENGE#")
    probe = JtopSensors(socket_path=path).probe()
    assert probe.result is ProbeResult.SUCCESS and path in probe.detail


def test_reads_only_and_says_where_setting_lives(fake_jtop):
    sensors = JtopSensors()
    assert isinstance(sensors, PowerSensor) and isinstance(sensors, ThermalSensor) and isinstance(sensors, LoadSensor)
    assert not isinstance(sensors, FreqDomain)
    assert not [n for n in dir(sensors) if n.startswith(("set", "pin", "write"))]
    assert "sysfs" in (JtopSensors.__doc__ or "")


def test_offline_cores_count_as_off_even_with_percentages():
    cpu = {"cpu": [_core(True, 50.0, 1000), {**_core(True, 0.0, 1000), "online": False}]}
    util, problems = util_fractions(cpu, {}, {}, SensorMapping())
    assert util == {"cpu": 0.5} and problems == []
    assert freqs_hz(cpu, {}, {}, SensorMapping()) == {"cpu": 1_000_000}
